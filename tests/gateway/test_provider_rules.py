"""Provider history rules on whole (unstreamed) answers: the official ``anthropic`` SDK through the
gateway to fakes that refuse what DeepSeek, OpenRouter's Gemini 3 and Mistral refuse
(tests/fakes/providers.py). The second request carries the history the way a resumed Claude Code
session does: the tool call and its result, no thinking block."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeUpstream
from tests.fakes.providers import DeepSeekThinking, MistralIds, OpenRouterGemini, tool_turns
from tests.gateway.conftest import Gateway, config_text

WRITE = {"name": "Write", "description": "Write a file",
         "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"},
                                                           "content": {"type": "string"}}}}


def _loop(gw: Gateway, model: str) -> tuple[Any, Any]:
    """A tool turn, then the turn with its result (the answer's thinking left out of the history)."""
    client = gw.client()
    user = {"role": "user", "content": "write the file"}
    first = client.messages.create(model=model, max_tokens=1000, tools=[WRITE], messages=[user])  # type: ignore[list-item]
    call = next(b for b in first.content if b.type == "tool_use")
    kept = [b.model_dump() for b in first.content if b.type != "thinking"]
    history = [user, {"role": "assistant", "content": kept},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "written"}]}]
    second = client.messages.create(model=model, max_tokens=1000, tools=[WRITE], messages=history)  # type: ignore[arg-type]
    return first, second


@pytest.mark.parametrize("make", [DeepSeekThinking, OpenRouterGemini, MistralIds])
def test_whole_answers_keep_the_rules(make: Callable[[Path], Any], tmp_path: Path, start_gateway: Any) -> None:
    provider = make(tmp_path)
    with FakeUpstream(provider.respond, wire="openai", guard=provider.guard) as up:
        gw = start_gateway(config_text([{"id": "p", "kind": "openai", "base_url": up.url + "/v1", "auth": "none",
                                         "models": [provider.model]}], active="p", model=provider.model))
        first, second = _loop(gw, provider.model)
    assert first.stop_reason == "tool_use" and second.stop_reason == "end_turn", provider.refused
    assert provider.refused == []
    sent = provider.served[-1]["messages"][tool_turns(provider.served[-1]["messages"])[0]]
    if isinstance(provider, DeepSeekThinking):
        assert sent["reasoning_content"] == DeepSeekThinking.REASONING
    if isinstance(provider, OpenRouterGemini):
        assert [d["type"] for d in sent["reasoning_details"]] == ["reasoning.text", "reasoning.encrypted"]
    if isinstance(provider, MistralIds):
        # the id Mistral made comes back to it, on the call and on its result
        assert sent["tool_calls"][0]["id"] == provider.issued[0] == provider.served[-1]["messages"][-1]["tool_call_id"]
