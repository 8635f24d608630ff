"""Fakes of the gateway's network peers: scriptable upstream servers on loopback and builders
for the chunks and events real upstreams send. See ``upstreams.py`` for the server's API."""

from __future__ import annotations

from tests.fakes.chunks import (
    anthropic_message,
    anthropic_text_events,
    anthropic_tool_use_events,
    openai_completion,
    openai_text_chunks,
    openai_tool_call_chunks,
)
from tests.fakes.upstreams import (
    AnthropicJSON,
    AnthropicStream,
    Drop,
    FakeUpstream,
    JSONResponse,
    OpenAIJSON,
    OpenAIStream,
    Raw,
    ReceivedRequest,
    Response,
    ResponseFormatCheck,
    ThinkingSigner,
    anthropic_error,
    openai_error,
)

__all__ = [
    "AnthropicJSON", "AnthropicStream", "Drop", "FakeUpstream", "JSONResponse", "OpenAIJSON", "OpenAIStream",
    "Raw", "ReceivedRequest", "Response", "ResponseFormatCheck", "ThinkingSigner", "anthropic_error", "anthropic_message", "anthropic_text_events",
    "anthropic_tool_use_events", "openai_completion", "openai_error", "openai_text_chunks",
    "openai_tool_call_chunks",
]
