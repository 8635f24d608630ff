"""Provider rules (``app.config.providers``) applied to a translated OpenAI request's messages.

:func:`apply_quirks` runs after :func:`app.proxy.translate.request.to_openai_request` and changes
its (fresh) message list in place:

- ``reasoning_content``: each assistant message with ``tool_calls`` that has no
  ``reasoning_content`` (the client sent no thinking block for it) gets the reasoning noted for
  one of its calls (``app.proxy.reasoning_store``: this backend's own, or any backend's where
  ``foreign_reasoning`` applies), else ``""``, which DeepSeek and Kimi accept.
- ``reasoning_details``: each assistant tool-call message gets the ``reasoning_details`` this
  backend answered it with. Where none were noted (an answer older than the store remembers),
  the message goes without: OpenRouter may then refuse it, and that refusal reaches the client.
- ``tool_id_9``: every tool-call id (and each ``tool`` message's ``tool_call_id``) becomes nine
  letters and digits (:func:`app.proxy.translate.ids.nine_char_id`): deterministic, so history
  resent later, or after a restart, maps to the same ids.

Reasoning is looked up before ids are renamed: the notes are kept under the client's ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from app.config.providers import FOREIGN_REASONING, REASONING_CONTENT, REASONING_DETAILS, TOOL_ID_9
from app.proxy.reasoning_store import Recalled
from app.proxy.translate.ids import nine_char_id

Recall = Callable[[Iterable[str]], Mapping[str, Recalled]]


def apply_quirks(messages: list[dict[str, Any]], quirks: frozenset[str], backend_id: str, recall: Recall) -> None:
    if not quirks:
        return
    if REASONING_CONTENT in quirks or REASONING_DETAILS in quirks:
        _echo_reasoning(messages, quirks, backend_id, recall)
    if TOOL_ID_9 in quirks:
        _nine_char_ids(messages)


def _calls(msg: dict[str, Any]) -> list[str]:
    calls = msg.get("tool_calls") if msg.get("role") == "assistant" else None
    return [c["id"] for c in calls if isinstance(c, dict) and c.get("id")] if calls else []


def _echo_reasoning(messages: list[dict[str, Any]], quirks: frozenset[str], backend_id: str, recall: Recall) -> None:
    want_content = REASONING_CONTENT in quirks
    want_details = REASONING_DETAILS in quirks
    targets = [(m, ids) for m in messages if (ids := _calls(m))]
    if not targets:
        return
    lookup = [i for m, ids in targets if want_details or "reasoning_content" not in m for i in ids]
    notes = recall(lookup) if lookup else {}
    foreign_ok = FOREIGN_REASONING in quirks
    for msg, ids in targets:
        noted = [notes[i] for i in ids if i in notes]
        if want_content and "reasoning_content" not in msg:
            usable = [n.reasoning for n in noted if n.reasoning and (foreign_ok or n.backend == backend_id)]
            msg["reasoning_content"] = usable[0] if usable else ""
        if want_details and "reasoning_details" not in msg:
            details = [n.details for n in noted if n.details and n.backend == backend_id]
            if details:
                msg["reasoning_details"] = details[0]


def _nine_char_ids(messages: list[dict[str, Any]]) -> None:
    mapped: dict[str, str] = {}
    taken: set[str] = set()

    def short(tool_id: str) -> str:
        have = mapped.get(tool_id)
        if have is not None:
            return have
        salt = 0
        new = nine_char_id(tool_id)
        while new in taken:  # two ids of one history with the same answer: another, still deterministic
            salt += 1
            new = nine_char_id(tool_id, salt)
        mapped[tool_id] = new
        taken.add(new)
        return new

    for msg in messages:
        role = msg.get("role")
        if role == "assistant" and msg.get("tool_calls"):
            for call in msg["tool_calls"]:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    call["id"] = short(call["id"])
        elif role == "tool" and isinstance(msg.get("tool_call_id"), str):
            msg["tool_call_id"] = short(msg["tool_call_id"])
