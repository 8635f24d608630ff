"""Model ids in a comparable form: the same model under its Anthropic, Bedrock, Vertex and
OpenRouter names. Shared by the price table (app/catalog/prices.py) and the output limits
(app/catalog/output_limits.py), so the gateway can use it without importing a service."""

from __future__ import annotations

import re

_BRACKET_SUFFIX = re.compile(r"\[[^\]]*\]$")  # claude-opus-5-5[1m]
_BEDROCK = re.compile(r"^(?:[a-z]{2,6}\.)?(?:anthropic|meta|amazon|mistral|deepseek|openai|cohere|ai21)\.(.+)$")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
DIGIT_DOT = re.compile(r"(?<=\d)\.(?=\d)")
_OPENROUTER_VARIANT = re.compile(r":(?:beta|nitro|floor|extended|thinking|online|exacto)$")


def _unwrap(model: str) -> str:
    """Lower case without ``[1m]``, OpenRouter's ``:variant`` or Bedrock's region/version wrapping."""
    m = model.strip().lower()
    m = _BRACKET_SUFFIX.sub("", m)
    m = _OPENROUTER_VARIANT.sub("", m)
    b = _BEDROCK.match(m)
    if b:
        m = _BEDROCK_VERSION.sub("", b.group(1))
    return m


def light_model(model: str) -> str:
    """Lower case without vendor prefix, Bedrock wrapping or ``[1m]``; the date stays."""
    return DIGIT_DOT.sub("-", _unwrap(model).rsplit("/", 1)[-1])


def canonical_model(model: str) -> str:
    """The comparable form of a model id: lower case, with no vendor prefix, Bedrock wrapping,
    date or ``[1m]`` suffix, and dots between digits written as dashes.

    >>> canonical_model("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    'claude-sonnet-4-5'
    >>> canonical_model("anthropic/claude-sonnet-4.5")
    'claude-sonnet-4-5'
    """
    m = _unwrap(model).split("@", 1)[0]
    m = m.rsplit("/", 1)[-1]
    m = _DATE_SUFFIX.sub("", m)
    return DIGIT_DOT.sub("-", m)
