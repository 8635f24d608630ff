"""What a request is for, in Claude Code's own words, and the shapes that give it away without them.

Claude Code 2.1.273 and newer send hint headers when ``CLAUDE_CODE_GATEWAY_HINT_HEADERS=1``
(``patchbay connect`` and ``patchbay claude`` set it). ``docs/claude-code-requests.md`` lists what
each kind of request sends, recorded from the real CLI (``tests/fixtures/claude_code_requests.json``):

- ``x-claude-code-request-class``: ``main``, ``subagent``, ``workflow``, ``compaction``,
  ``auxiliary`` (titles, summaries, the auto-mode safety classifier, prompt suggestions…),
  ``side_reply``;
- ``x-claude-1p-request-class``: ``main``, ``blocking-subagent``, ``background-task``,
  ``summary-extraction`` (titles, summaries), ``followup-generation`` (prompt suggestions); the
  safety classifier is ``auxiliary`` here marked ``main``;
- ``x-claude-code-agent-type`` (subagents): the built-in agent's name, ``custom`` or ``teammate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUEST_CLASS = b"x-claude-code-request-class"
FIRST_PARTY_CLASS = b"x-claude-1p-request-class"
AGENT_TYPE = b"x-claude-code-agent-type"

# 1p classes that are side work a small model does well
_BACKGROUND_1P = frozenset({"summary-extraction", "followup-generation", "background-task"})
# the auto-mode safety classifier's first stage stops at this (read from the 2.1.332 binary)
_CLASSIFIER_STOP = "</block>"
_CLASSIFIER_MARK = "<block>"
HIGH_EFFORTS = frozenset({"high", "xhigh", "max"})


@dataclass(frozen=True, slots=True)
class Hints:
    """Claude Code's hint headers for one request (None: not sent)."""

    request_class: str | None = None
    first_party_class: str | None = None
    agent_type: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[bytes, bytes]) -> Hints | None:
        """The hints in ``headers`` (lower-case names), or None where the client sent none."""
        code = headers.get(REQUEST_CLASS)
        first = headers.get(FIRST_PARTY_CLASS)
        if code is None and first is None:
            return None
        agent = headers.get(AGENT_TYPE)
        return cls(_text(code), _text(first), _text(agent))

    @property
    def is_compaction(self) -> bool:
        return self.request_class == "compaction"

    @property
    def is_subagent(self) -> bool:
        return self.request_class == "subagent" or self.first_party_class == "blocking-subagent"

    @property
    def is_background(self) -> bool:
        """Titles, summaries, prompt suggestions: auxiliary work not marked ``main``. The safety
        classifier (``auxiliary`` + ``main``) stays with the main model: security decisions are
        not for the weakest model."""
        if self.request_class == "auxiliary":
            return self.first_party_class != "main"
        return self.request_class is None and self.first_party_class in _BACKGROUND_1P


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value.decode("latin-1").strip().lower()
    return text or None


def is_classifier_shape(body: Mapping[str, Any]) -> bool:
    """The auto-mode safety classifier, told by its shape (for clients that send no hints): its
    first stage stops at ``</block>``, and its system prompt asks for an answer in ``<block>``."""
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and _CLASSIFIER_STOP in stops:
        return True
    system = body.get("system")
    if isinstance(system, str):
        return _CLASSIFIER_MARK in system
    if isinstance(system, list):
        for block in system:
            if isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str) and _CLASSIFIER_MARK in text:
                    return True
    return False


def asks_for_reasoning(body: Mapping[str, Any]) -> bool:
    """An explicit request for deep reasoning: thinking ``enabled`` with a budget, or a high
    effort. ``adaptive`` alone is not one: Claude Code 2.1.332 sends it on every main turn."""
    t = body.get("thinking")
    if isinstance(t, dict) and t.get("type") == "enabled":
        budget = t.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            return True
    oc = body.get("output_config")
    if isinstance(oc, dict):
        effort = oc.get("effort")
        if isinstance(effort, str) and effort.lower() in HIGH_EFFORTS:
            return True
    return False
