"""Thinking blocks across backends: which provider signed a block, and which blocks a backend may see.

A ``thinking`` block carries a ``signature`` from the provider that produced it. Anthropic
(and Bedrock and Vertex: Claude's signatures are valid across the three) answers 400
``messages.N.content.M: Invalid signature in thinking block`` to a block it did not sign, so a
session that switches backend mid-way (``/model anth,…`` after an ``openai`` backend reasoned)
must not carry foreign blocks there:

- Reasoning an ``openai`` backend produced reaches the client signed
  ``patchbay:<backend id>`` (:func:`reasoning_signature`), so it is recognisable later.
- Signatures an Anthropic-format backend sends are noted as they stream past
  (:data:`BOOK`, bounded, in memory), with the *signing family* of that backend: Claude itself
  (Anthropic's API, Bedrock, Vertex) is one family; any other Anthropic-format server (Ollama,
  LM Studio, a vendor's endpoint) is its own.
- :func:`for_anthropic_format` drops, before a request goes to an Anthropic-format backend,
  every thinking block that is unsigned, signed by Patchbay for another backend's reasoning, or
  noted as signed by another family. Blocks that family signed — and blocks nobody noted (a
  gateway restarted since) — go unchanged; ``redacted_thinking`` always does. When nothing is
  dropped the request body is not touched at all (passthrough stays byte-exact).
- A tool loop that started elsewhere (an ``openai`` backend, a failover, a ``[routes]`` rule)
  reaches Claude with an assistant turn that does not open with a thinking block. With
  ``thinking: {"type": "enabled"}`` Anthropic refuses that (400 "messages.N.content.0.type:
  Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a
  final `assistant` message must start with a thinking block …"), and says how to avoid it:
  disable thinking. :func:`fit_thinking_mode` does that for that one request (the next turn,
  after the loop ends, thinks again), with the ``clear_thinking_*`` context edit that needs
  thinking on. ``adaptive`` thinking is optional for the model, so a turn without a thinking
  block is valid there and is left alone.

The other direction: an ``openai`` backend gets thinking back as ``reasoning_content`` only for
its own reasoning (DeepSeek's thinking mode needs it back on turns with tool calls), for blocks
of unknown origin (unsigned), and — for backends that use it, DeepSeek — for other providers'
reasoning too (:func:`wants_foreign_reasoning`, a rule of ``app.config.providers``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from app.config import BackendConfig
from app.config.providers import FOREIGN_REASONING, quirks_for

TAG = "patchbay:"
CLAUDE = "claude"  # the family of Anthropic's API, Bedrock and Vertex
_CLAUDE_HOSTS = ("anthropic.com",)
_KEEP = 8192  # signatures remembered


def reasoning_signature(backend_id: str) -> str:
    """The signature Patchbay gives reasoning that ``backend_id`` (an ``openai`` backend) produced."""
    return TAG + backend_id


def signing_family(config: BackendConfig) -> str:
    """Who signs this backend's thinking blocks: ``claude`` for Claude itself, else the backend."""
    if config.kind in ("bedrock", "vertex"):
        return CLAUDE
    if config.kind == "anthropic":
        host = (urlsplit(config.base_url).hostname or "").lower()
        if any(host == h or host.endswith("." + h) for h in _CLAUDE_HOSTS):
            return CLAUDE
        return "backend:" + config.id
    return "backend:" + config.id


class SignatureBook:
    """Which family signed which signature (the last ``keep`` seen); thread-safe."""

    def __init__(self, keep: int = _KEEP) -> None:
        self.keep = keep
        self._seen: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(signature: str) -> bytes:
        return hashlib.blake2b(signature.encode("utf-8", "replace"), digest_size=16).digest()

    def note(self, signature: str, family: str) -> None:
        if not signature or signature.startswith(TAG):
            return
        key = self._key(signature)
        with self._lock:
            self._seen[key] = family
            self._seen.move_to_end(key)
            while len(self._seen) > self.keep:
                self._seen.popitem(last=False)

    def family_of(self, signature: str) -> str | None:
        with self._lock:
            return self._seen.get(self._key(signature))

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


BOOK = SignatureBook()


def _foreign(block: Mapping[str, Any], family: str) -> bool:
    """A thinking block that ``family`` cannot have signed."""
    sig = block.get("signature")
    if not isinstance(sig, str) or not sig.strip() or sig.startswith(TAG):
        return True
    seen = BOOK.family_of(sig)
    return seen is not None and seen != family


def for_anthropic_format(body: dict[str, Any], family: str) -> dict[str, Any]:
    """``body`` made valid for ``family``'s thinking rules: without the thinking blocks it did not
    sign, and without thinking where the tool loop being answered has none to send back
    (:func:`fit_thinking_mode`: Anthropic's rule, which servers that copy its API copy too). The same object when nothing changes (the caller may then forward
    the client's bytes), else a new body (the client's messages are never changed)."""
    out = _without_foreign(body, family)
    return fit_thinking_mode(out)


def _opens_with_thinking(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list) or not content:
        return False
    first = content[0]
    return isinstance(first, dict) and first.get("type") in ("thinking", "redacted_thinking")


def loop_start(messages: list[Any]) -> int | None:
    """The index of the assistant message that opened the tool loop being answered: the request
    ends with tool results (and perhaps ``system`` messages), and this is the first assistant message after the user's last own
    words. None when the request is not inside a tool loop."""
    end = len(messages)
    while end and isinstance(messages[end - 1], dict) and messages[end - 1].get("role") == "system":
        end -= 1  # Claude Code's mid-conversation system messages come after the turn
    if not end or not _is_tool_results(messages[end - 1]):
        return None
    start = None
    for i in range(end - 1, -1, -1):
        m = messages[i]
        if not isinstance(m, dict):
            return start
        if m.get("role") == "assistant":
            start = i
        elif m.get("role") != "system" and not _is_tool_results(m):
            return start
    return start


def _is_tool_results(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("role") != "user":
        return False
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                             for b in content)


def fit_thinking_mode(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with thinking switched off when it is ``enabled`` but the tool loop being answered
    opened without a thinking block (Anthropic's documented way out: "To avoid this requirement,
    disable `thinking`"); the ``clear_thinking_*`` context edits go with it (Anthropic: "strategy
    requires `thinking` to be enabled"). The same object otherwise."""
    thinking = body.get("thinking")
    messages = body.get("messages")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled" or type(messages) is not list:
        return body
    start = loop_start(messages)
    if start is None or _opens_with_thinking(messages[start]):
        return body
    out = {k: v for k, v in body.items() if k != "thinking"}
    cm = body.get("context_management")
    if isinstance(cm, dict) and isinstance(cm.get("edits"), list):
        edits = [e for e in cm["edits"] if not (isinstance(e, dict) and str(e.get("type", "")).startswith(
            "clear_thinking"))]
        if edits:
            out["context_management"] = dict(cm, edits=edits)
        else:
            out.pop("context_management")
    return out


def _without_foreign(body: dict[str, Any], family: str) -> dict[str, Any]:
    """``body`` without the thinking blocks ``family`` did not sign (an assistant message left
    empty goes too); the same object when there are none.

    A plain walk over the assistant messages: about 1.5 µs for a 20 KB subagent request without
    thinking blocks, cheaper than searching the raw bytes (bench/routing_bench.py)."""
    messages = body.get("messages")
    if type(messages) is not list:
        return body
    out: list[Any] | None = None
    for i, msg in enumerate(messages):
        foreign = False
        if type(msg) is dict and msg.get("role") == "assistant":
            content = msg.get("content")
            if type(content) is list:
                for b in content:
                    if type(b) is dict and b.get("type") == "thinking" and _foreign(b, family):
                        foreign = True
                        break
        if not foreign:
            if out is not None:
                out.append(msg)
            continue
        if out is None:
            out = list(messages[:i])
        kept = [b for b in msg["content"]
                if not (type(b) is dict and b.get("type") == "thinking" and _foreign(b, family))]
        if kept:
            out.append(dict(msg, content=kept))
    if out is None:
        return body
    return dict(body, messages=out)


def note_signature(family: str, signature: Any) -> None:
    if isinstance(signature, str):
        BOOK.note(signature, family)


def note_message(family: str, message: Mapping[str, Any]) -> None:
    """Note the signatures of a whole (unstreamed) Anthropic message."""
    content = message.get("content")
    if isinstance(content, list):
        for b in content:
            if isinstance(b, dict) and b.get("type") == "thinking":
                note_signature(family, b.get("signature"))


def wants_foreign_reasoning(config: BackendConfig, model: str) -> bool:
    """Whether an ``openai`` backend uses other providers' reasoning given back as
    ``reasoning_content`` (the ``foreign_reasoning`` rule of ``app.config.providers``: DeepSeek's
    thinking mode requires reasoning on turns with tool calls, wherever it came from; other
    upstreams have no use for another model's reasoning, and some refuse the field)."""
    return FOREIGN_REASONING in quirks_for(config, model)


def keep_reasoning(config: BackendConfig, model: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate: may this thinking block go to the ``openai`` backend ``config`` as reasoning?"""
    own = reasoning_signature(config.id)
    foreign_ok = wants_foreign_reasoning(config, model)

    def keep(block: Mapping[str, Any]) -> bool:
        sig = block.get("signature")
        if not isinstance(sig, str) or not sig or sig == own:
            return True
        return foreign_ok

    return keep
