"""Pick a backend and model for one request.

A ``RoutingTable`` is immutable: switching backend builds a new one and swaps one reference,
so requests in flight finish where they started.

The first rule that applies decides, and its name is recorded (``Route.rule``, the ledger's
``route`` column):

1. ``pin`` — the ``x-patchbay-pin`` header, then a session pinned in the app (a pinned session
   goes where the pin says, or to the ``explicit`` model if it names one: no rule applies);
2. ``explicit`` — the model is written ``backend,model`` (Claude Code's ``/model deepseek,deepseek-chat``,
   which it keeps as the default for new sessions). It replaces the *main* model only: without a
   pin, rules 3–9 still apply (a subagent still goes to ``[routes] subagent``…), and it decides
   where no rule does;
3. ``web_search`` — the request offers a server tool of type ``web_search_*`` or ``web_fetch_*``
   (:mod:`app.proxy.server_tools` also keeps such requests off ``openai`` backends when pinned);
4. ``long_context`` — the estimated input tokens (``app.proxy.tokens``) exceed ``long_context_threshold``;
5. ``compaction`` — Claude Code says so (``x-claude-code-request-class: compaction``);
6. ``subagent`` — Claude Code says so (request class ``subagent``), or, without hints, the
   ``x-claude-code-agent-id`` header;
7. ``background`` — with Claude Code's hints: titles, summaries and other ``auxiliary`` work not
   marked ``main`` (:mod:`app.proxy.hints`); without them :func:`is_background`;
8. ``think`` — an explicit reasoning request: thinking ``enabled`` with a budget, or a high effort;
9. ``image`` — the turn being answered (the last user message) holds an image block, also inside
   a tool result: an image earlier in the history does not keep the session there;
10. ``active`` — the backend chosen in the app.

Rules 3–9 come from ``[routes]``; one whose target is unset is skipped (and costs nothing).
When the chosen backend fails before the client saw a byte, ``[routes] fallback`` is tried in
order (rule ``fallback:<n>``, counting from 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.config import BackendConfig, Config, RoutesConfig, RouteTarget
from app.proxy.hints import Hints, asks_for_reasoning, is_classifier_shape
from app.proxy.tokens import scan

BACKGROUND_MAX_TOKENS = 512


@dataclass(frozen=True, slots=True)
class Route:
    backend: str
    model: str  # what the upstream is asked for
    rule: str  # "active" | "explicit" | "pin" | a [routes] rule | "fallback:<n>" | "budget:<label>"
    requested_model: str


def is_background(body: Mapping[str, Any], subagent: bool) -> bool:
    """A side request or a small subagent: at least two of these four hints agree.

    - the request offers no tools (``tools`` absent or empty);
    - ``max_tokens`` ≤ 512;
    - the model name contains "haiku" (Claude Code's small fast model);
    - the ``x-claude-code-agent-id`` header is present (a subagent, ``subagent=True``).

    One hint alone is not enough: a user who runs the main loop on ``--model haiku`` (tools,
    large ``max_tokens``) is doing real work, and so is a subagent on the main model with tools;
    a conversation summary (no tools, large ``max_tokens``) needs a strong model. Title and
    topic requests (haiku, no tools), quota checks (``max_tokens`` 1, no tools), haiku
    subagents such as Explore (haiku + agent id) and tool-less side questions on the main model
    with a small ``max_tokens`` all score two or more. The auto-mode safety classifier (no tools,
    ``max_tokens`` 64, a haiku model) never is: security decisions are not for the weakest model.
    """
    tools = body.get("tools")
    mt = body.get("max_tokens")
    model = body.get("model")
    hints = (not tools) + (type(mt) is int and mt <= BACKGROUND_MAX_TOKENS) + subagent
    if hints < 2 and not (hints == 1 and isinstance(model, str) and "haiku" in model.lower()):
        return False
    return not is_classifier_shape(body)


def wants_thinking(body: Mapping[str, Any]) -> bool:
    """An explicit request for reasoning (``adaptive`` alone is not one: see :mod:`app.proxy.hints`)."""
    return asks_for_reasoning(body)


# the server tools the ``web_search`` rule takes (Claude Code's WebSearch and WebFetch)
WEB_TOOL_PREFIXES = ("web_search", "web_fetch")


def offers_web_search(body: Mapping[str, Any]) -> bool:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return False
    for t in tools:
        if isinstance(t, dict):
            kind = t.get("type")
            if isinstance(kind, str) and kind.startswith(WEB_TOOL_PREFIXES):
                return True
    return False


def last_turn(messages: list[Any]) -> dict[str, Any] | None:
    """The last message that is not a mid-conversation ``system`` one (Claude Code puts those
    after the user's turn), or None."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") != "system":
            return m
    return None


def image_in_turn(body: Mapping[str, Any]) -> bool:
    """Whether the turn being answered — the last message (past any ``system`` ones), when it is
    the user's — holds an image
    block, directly or inside one of its tool results. One screenshot earlier in the session does
    not: the model has seen it, and the session stays where the user put it."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    last = last_turn(messages)
    if last is None or last.get("role") != "user":
        return False
    content = last.get("content")
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "image":
            return True
        inner = block.get("content")
        if kind == "tool_result" and isinstance(inner, list):
            if any(isinstance(b, dict) and b.get("type") == "image" for b in inner):
                return True
    return False


def classify(body: Mapping[str, Any], subagent: bool, routes: RoutesConfig, hints: Hints | None = None) -> str | None:
    """The first ``[routes]`` rule (with a target set) that this request meets, or None.
    ``hints``: Claude Code's hint headers, where it sent them (they replace the guesses)."""
    if routes.web_search is not None and offers_web_search(body):
        return "web_search"
    if routes.long_context is not None and scan(body)[0] > routes.long_context_threshold:  # type: ignore[arg-type]
        return "long_context"
    if hints is not None:
        if routes.compaction is not None and hints.is_compaction:
            return "compaction"
        if routes.subagent is not None and hints.is_subagent:
            return "subagent"
        if routes.background is not None and hints.is_background:
            return "background"
    else:
        if routes.subagent is not None and subagent:
            return "subagent"
        if routes.background is not None and is_background(body, subagent):
            return "background"
    if routes.think is not None and wants_thinking(body):
        return "think"
    if routes.image is not None and image_in_turn(body):
        return "image"
    return None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer instead of a route (a budget block, an unknown backend)."""

    status: int
    error_type: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()  # e.g. a budget block's retry-after


@dataclass(frozen=True, slots=True)
class Pin:
    backend: str
    model: str | None = None


@dataclass(frozen=True)
class RoutingTable:
    backends: Mapping[str, BackendConfig]
    active_backend: str
    active_model: str | None
    pins: Mapping[str, Pin] = field(default_factory=lambda: MappingProxyType({}))
    routes: RoutesConfig = field(default_factory=RoutesConfig)

    @classmethod
    def from_config(cls, config: Config, pins: Mapping[str, Pin] | None = None) -> RoutingTable:
        return cls(
            MappingProxyType({b.id: b for b in config.backends}),
            config.active.backend,
            config.active.model,
            MappingProxyType(dict(pins or {})),
            config.routes,
        )

    def with_active(self, backend: str, model: str | None) -> RoutingTable:
        return RoutingTable(self.backends, backend, model, self.pins, self.routes)

    def with_pin(self, session_id: str, pin: Pin | None) -> RoutingTable:
        pins = dict(self.pins)
        if pin is None:
            pins.pop(session_id, None)
        else:
            pins[session_id] = pin
        return RoutingTable(self.backends, self.active_backend, self.active_model, MappingProxyType(pins),
                            self.routes)

    def model_for(self, backend: BackendConfig, wanted: str | None, requested: str) -> str:
        """The upstream model name: the one chosen, else the request's own for Anthropic-format
        backends (they understand Claude names), else the backend's first listed model."""
        if wanted:
            return wanted
        if backend.kind == "anthropic" or not backend.models:
            return requested
        if requested in backend.models:
            return requested
        return backend.models[0]

    def _named(self, spec: str, requested_model: str, rule: str, source: str) -> Route | Refusal:
        """A route to the ``backend[,model]`` that ``spec`` names, or a refusal naming ``source``."""
        bid, _, model = spec.partition(",")
        bid, model = bid.strip(), model.strip()
        backend = self.backends.get(bid)
        if backend is None:
            return Refusal(
                400,
                "invalid_request_error",
                f"Patchbay has no backend named {bid!r} (from {source}). "
                f"Configured backends: {', '.join(self.backends) or 'none'}.",
            )
        return Route(bid, self.model_for(backend, model or None, requested_model), rule, requested_model)

    def _target(self, target: RouteTarget, requested_model: str, rule: str) -> Route:
        # the config checked that the backend exists
        return self.route_to(self.backends[target.backend], target.model, requested_model, rule)

    def route_to(self, backend: BackendConfig, model: str | None, requested_model: str, rule: str) -> Route:
        """A route to ``backend`` (``model``, else :meth:`model_for` picks) that serves the request in
        place of the model the client named: for an explicit ``backend,model`` that is the model
        part, never the spec itself."""
        wanted = requested_model.partition(",")[2].strip() if "," in requested_model else requested_model
        return Route(backend.id, self.model_for(backend, model, wanted or requested_model), rule, requested_model)

    def target_route(self, target: RouteTarget, requested_model: str, rule: str) -> Route:
        """The route to a ``[routes]`` target."""
        return self._target(target, requested_model, rule)

    def fallbacks(self, route: Route) -> list[Route]:
        """The ``[routes] fallback`` targets to try after ``route`` failed, in order, without
        the one that just failed."""
        out = []
        for n, target in enumerate(self.routes.fallback, 1):
            if target.backend not in self.backends:
                continue
            r = self._target(target, route.requested_model, f"fallback:{n}")
            if (r.backend, r.model) != (route.backend, route.model):
                out.append(r)
        return out

    def resolve(self, requested_model: str, session_id: str | None, pin_header: str | None = None, *,
                body: Mapping[str, Any] | None = None, subagent: bool = False,
                hints: Hints | None = None, allow: Callable[[str, str, str], bool] | None = None) -> Route | Refusal:
        """Where this request goes. ``body`` (the parsed request), ``subagent`` (the
        x-claude-code-agent-id header is present) and ``hints`` (Claude Code's hint headers)
        feed the ``[routes]`` rules. ``allow(backend, model, requested)`` (team mode: what the
        caller's groups allow) skips a session pin or a rule whose target it refuses; a route the
        client named itself (explicit, the pin header) and the active one are returned as they are,
        for the gateway to refuse by name."""
        # "backend,model" (Claude Code's `/model deepseek,deepseek-chat`) replaces the main model
        explicit: Route | None = None
        if "," in requested_model:
            named = self._named(requested_model, requested_model, "explicit", f"the model {requested_model!r}")
            if isinstance(named, Refusal):
                return named
            explicit = named
        # `x-patchbay-pin: backend[,model]` pins one client (`patchbay claude --backend X` sends it through
        # ANTHROPIC_CUSTOM_HEADERS), so the pin lives exactly as long as that Claude Code process.
        if pin_header:
            return explicit or self._named(pin_header, requested_model, "pin",
                                           f"the x-patchbay-pin header {pin_header!r}")
        pinned = self._session_pin(session_id, requested_model, allow)
        if pinned is not None:
            return explicit or pinned
        if body is not None:
            rule = classify(body, subagent, self.routes, hints)
            if rule is not None:
                r = self._target(self.routes.target(rule), requested_model, rule)  # type: ignore[arg-type]
                if allow is None or allow(r.backend, r.model, requested_model):
                    return r
        if explicit is not None:
            return explicit
        backend = self.backends[self.active_backend]
        return Route(backend.id, self.model_for(backend, self.active_model, requested_model), "active",
                     requested_model)

    def _session_pin(self, session_id: str | None, requested_model: str,
                     allow: Callable[[str, str, str], bool] | None) -> Route | None:
        """The route of a session pinned in the app, where there is one and ``allow`` lets it be."""
        pin = self.pins.get(session_id) if session_id is not None else None
        if pin is None or pin.backend not in self.backends:
            return None
        backend = self.backends[pin.backend]
        r = Route(pin.backend, self.model_for(backend, pin.model, requested_model), "pin", requested_model)
        return r if allow is None or allow(r.backend, r.model, requested_model) else None
