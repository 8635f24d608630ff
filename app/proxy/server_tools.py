"""Server tools (Anthropic runs them, not the client): where a request that offers them may go.

Claude Code's WebSearch sends its own request whose only tool is the server tool
``{"type": "web_search_20250305", "name": "web_search"}`` ("Perform a web search for the query:
…", request class ``auxiliary``); the results come back as ``server_tool_use`` and
``web_search_tool_result`` blocks that Anthropic's API produced. ``web_fetch_*`` and
``code_execution_*`` work the same way. An OpenAI-compatible backend has no such tools: the
translation must drop them, and the model then answers with text of its own, which Claude Code
hands back as the search results — invented. So a request that offers a server tool the model
may call never goes to an ``openai`` backend:

1. ``[routes] web_search`` takes it where it is set (a rule, see :mod:`app.proxy.routing`), also
   when the client pinned or named a backend (a pin decides the model, not who runs the search);
2. else the first configured Anthropic backend on Anthropic's own API that can pay for it: one
   with a stored key, or ``auth = "client"`` when the client brought its own Anthropic credential
   (rule ``server_tools``);
3. else a 400 the user sees at once (``x-should-retry: false``), saying what to configure.

Anthropic-format backends that are not Anthropic's API (Bedrock, an Ollama, a vendor's endpoint)
get the request as it is: they answer for themselves if they cannot run a tool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.config import BackendConfig
from app.proxy.routing import Refusal, Route, RoutingTable
from app.proxy.thinking import CLAUDE, signing_family

# server tool types, by prefix (a dated suffix follows: web_search_20250305)
SERVER_TOOL_PREFIXES = ("web_search_", "web_fetch_", "code_execution_")
# backend kinds whose translation drops server tools: they can never run one
CANNOT_RUN = frozenset({"openai"})
NO_RETRY = ((b"x-should-retry", b"false"),)


def server_tools(body: Mapping[str, Any]) -> list[str]:
    """The names of the server tools ``body`` lets the model call (none under ``tool_choice: none``)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or (isinstance(choice, dict) and choice.get("type") == "none"):
        return []
    out = []
    for t in tools:
        kind = t.get("type") if isinstance(t, dict) else None
        if isinstance(kind, str) and kind.startswith(SERVER_TOOL_PREFIXES):
            out.append(str(t.get("name") or kind))
    return out


def can_run(config: BackendConfig) -> bool:
    """Whether this backend can be sent server tools (it runs them, or answers for itself)."""
    return config.kind not in CANNOT_RUN


def place(table: RoutingTable, route: Route, body: Mapping[str, Any], has_own_key: bool,
          usable: Callable[[Route], bool]) -> Route | Refusal:
    """``route``, or where a request with server tools goes instead (see the module's docstring).
    ``has_own_key``: the client sent an Anthropic credential of its own (not the gateway token);
    ``usable(route)``: this request may use that route (the token, team policy)."""
    backend = table.backends.get(route.backend)
    if backend is None or can_run(backend):
        return route
    names = server_tools(body)
    if not names:
        return route
    target = table.routes.web_search
    if target is not None and target.backend in table.backends and can_run(table.backends[target.backend]):
        r = table.target_route(target, route.requested_model, "web_search")
        if usable(r):
            return r
    for b in table.backends.values():
        if b.kind == "anthropic" and signing_family(b) == CLAUDE and (b.auth not in ("client", "none") or
                                                                        (b.auth == "client" and has_own_key)):
            r = table.route_to(b, None, route.requested_model, "server_tools")
            if usable(r):
                return r
    return Refusal(
        400, "invalid_request_error",
        f"This request uses {', '.join(sorted(set(names)))}, a tool that only Anthropic's API runs (Claude Code's "
        f"WebSearch / WebFetch). The backend \"{route.backend}\" is OpenAI-compatible and cannot run it, so Patchbay "
        "did not send it there (its model would invent the results). Set `web_search = \"<an Anthropic backend>\"` "
        "in the [routes] section of Patchbay's config, or add an Anthropic backend with its own API key.",
        NO_RETRY)
