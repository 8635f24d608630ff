"""Which provider rules an OpenAI-compatible backend needs, as data: one table, no code branches.

Some providers refuse histories that every other provider accepts, and a tool loop dies on its
second request. Each rule below names one such demand; :data:`RULES` says who makes it, by the
base URL's host and/or the model's name. A backend's ``quirks = [...]`` in ``config.toml``
replaces what the table finds for it (``quirks = []`` turns every rule off). docs/protocol.md §7
lists the providers' own wording for each refusal.

Rules (the names ``quirks = [...]`` accepts):

- ``reasoning_content``: every assistant message with ``tool_calls`` carries ``reasoning_content``
  (DeepSeek's thinking models, Moonshot's Kimi K2.5/K2.6: 400 "Missing `reasoning_content`
  field…" / "thinking is enabled but reasoning_content is missing…"). The client's thinking
  block when it sent one, else the reasoning Patchbay saw for that tool call, else ``""``.
- ``foreign_reasoning``: reasoning that another provider produced may go back as this
  backend's ``reasoning_content`` (DeepSeek uses any; others have no use for another model's).
- ``reasoning_details``: OpenRouter's ``reasoning_details`` (Gemini 3's encrypted thought
  signatures) go back with each assistant tool-call message (else 400 "Provider returned error").
- ``tool_id_9``: tool-call ids are exactly nine letters and digits (Mistral's API, Devstral,
  Mistral models on vLLM: "Tool call id was … but must be a-z, A-Z, 0-9, with a length of 9.").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from app.config.model import BackendConfig

REASONING_CONTENT = "reasoning_content"
FOREIGN_REASONING = "foreign_reasoning"
REASONING_DETAILS = "reasoning_details"
TOOL_ID_9 = "tool_id_9"
NAMES: tuple[str, ...] = (REASONING_CONTENT, FOREIGN_REASONING, REASONING_DETAILS, TOOL_ID_9)


@dataclass(frozen=True)
class Rule:
    """``quirks`` apply where the base URL's host ends with ``host`` (when given) and the model
    name matches ``model`` (a regex searched in the lower-cased name, when given)."""

    who: str  # for people: the provider and the source of the fact
    quirks: frozenset[str]
    host: str | None = None
    model: str | None = None


def _rule(who: str, quirks: tuple[str, ...], host: str | None = None, model: str | None = None) -> Rule:
    return Rule(who, frozenset(quirks), host, model)


RULES: tuple[Rule, ...] = (
    # DeepSeek's thinking models, served by DeepSeek or anyone else under the same names
    _rule("DeepSeek thinking mode", (REASONING_CONTENT, FOREIGN_REASONING),
          model=r"(^|/)deepseek-(reasoner|v4)"),
    # DeepSeek uses any reasoning given back (formerly hard-coded in app.proxy.thinking)
    _rule("DeepSeek", (FOREIGN_REASONING,), host="deepseek.com"),
    _rule("DeepSeek models elsewhere", (FOREIGN_REASONING,), model=r"deepseek"),
    # Moonshot's Kimi K2.5 / K2.6 (and the K2 thinking models) with thinking on
    _rule("Moonshot Kimi thinking", (REASONING_CONTENT, FOREIGN_REASONING),
          model=r"(^|/)kimi-k2(\.[5-9]|-thinking)"),
    # OpenRouter serving Gemini 3 (OpenRouter's model names: google/gemini-3…): thought signatures
    # travel in reasoning_details. By name on any host: only details that very backend sent go back.
    _rule("OpenRouter Gemini 3", (REASONING_DETAILS,), model=r"^google/gemini-3"),
    # Mistral's own API, and Mistral models wherever they run (vLLM's mistral tokenizer checks too)
    _rule("Mistral API", (TOOL_ID_9,), host="mistral.ai"),
    _rule("Mistral models", (TOOL_ID_9,), model=r"mistral|devstral|magistral|codestral|ministral"),
)


def _host_matches(url: str, suffix: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == suffix or host.endswith("." + suffix)


@functools.lru_cache(maxsize=512)
def table_quirks(base_url: str, model: str) -> frozenset[str]:
    """The rules :data:`RULES` gives a backend at ``base_url`` serving ``model``. Cached: every
    request asks (two URL parses and up to five regex searches each time otherwise)."""
    name = model.lower()
    found: set[str] = set()
    for rule in RULES:
        if rule.host is not None and not _host_matches(base_url, rule.host):
            continue
        if rule.model is not None and not re.search(rule.model, name):
            continue
        found |= rule.quirks
    return frozenset(found)


def quirks_for(backend: BackendConfig, model: str) -> frozenset[str]:
    """The rules a request for ``model`` on ``backend`` follows: the backend's ``quirks`` from the
    config where written, else the table's."""
    if backend.quirks is not None:
        return frozenset(backend.quirks)
    if backend.kind != "openai":
        return frozenset()
    return table_quirks(backend.base_url, model)
