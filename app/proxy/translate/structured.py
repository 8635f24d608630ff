"""Structured outputs: Anthropic's ``output_config.format`` ↔ OpenAI's ``response_format``.

Claude Code asks for session titles with ``output_config: {"format": {"type": "json_schema",
"schema": {...}}}``. An OpenAI-compatible upstream takes the same promise as
``response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``.
``strict`` is only claimed where the schema meets OpenAI's strict-mode rules (every object closed
with ``additionalProperties: false`` and every property required); otherwise the upstream is
asked for the schema without strict decoding rather than refused outright.

An upstream that cannot do it answers 400; :func:`explain_refusal` turns that into an error
that says so (the client asked for a JSON schema, this backend refuses it) instead of guessing
an answer in prose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]+")
DEFAULT_NAME = "response"
# what upstreams say when they refuse response_format (OpenAI, DeepSeek, vLLM, Groq…)
_REFUSAL_WORDS = ("response_format", "json_schema", "structured output", "json schema")


def requested_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema ``output_config.format`` asks for, or None."""
    oc = body.get("output_config")
    fmt = oc.get("format") if isinstance(oc, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def to_response_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` for the request's ``output_config.format``, or None."""
    schema = requested_schema(body)
    if schema is None:
        return None
    title = schema.get("title")
    name = _NAME_RE.sub("_", title).strip("_")[:64] if isinstance(title, str) else ""
    clean = {k: v for k, v in schema.items() if k != "$schema"}
    return {"type": "json_schema",
            "json_schema": {"name": name or DEFAULT_NAME, "schema": clean, "strict": is_strict(clean)}}


def is_strict(schema: Any) -> bool:
    """True when ``schema`` meets OpenAI's strict-mode rules: every object lists all its
    properties as required and allows no others (checked all the way down)."""
    if isinstance(schema, list):
        return all(is_strict(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    props = schema.get("properties")
    if kind == "object" or isinstance(props, dict):
        if schema.get("additionalProperties") is not False:
            return False
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        if set(props) != set(required if isinstance(required, list) else []):
            return False
    for key in ("properties", "$defs", "definitions"):
        sub = schema.get(key)
        if isinstance(sub, dict) and not all(is_strict(v) for v in sub.values()):
            return False
    for key in ("items", "anyOf", "oneOf", "allOf"):
        if key in schema and not is_strict(schema[key]):
            return False
    return True


def explain_refusal(status: int, message: str, body: Mapping[str, Any], backend_id: str) -> str | None:
    """The error message for a 400 that refuses the translated ``response_format``, or None when
    the request asked for no schema or the upstream refused something else."""
    if status != 400 or requested_schema(body) is None:
        return None
    lowered = message.lower()
    if not any(w in lowered for w in _REFUSAL_WORDS):
        return None
    return (f'The backend "{backend_id}" cannot answer in the JSON schema this request asks for '
            f"(output_config.format, sent to it as response_format json_schema): {message.strip()} "
            "Route these requests to a model that supports structured outputs (for Claude Code's session "
            "titles: [routes] background), or to an Anthropic-format backend.")
