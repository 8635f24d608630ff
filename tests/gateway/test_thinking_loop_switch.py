"""A tool loop that moves to Claude half-way (failover, a [routes] rule, `/model`) with
``thinking: {"type": "enabled"}``: Anthropic refuses an assistant turn that does not open with a
thinking block ("Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking`
is enabled, a final `assistant` message must start with a thinking block …") and says to disable
thinking instead. Real gateway, the anthropic SDK as client, an Anthropic fake that enforces that
rule (and the signature rule) with the API's wording."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes import (
    AnthropicStream,
    FakeUpstream,
    OpenAIStream,
    anthropic_tool_use_events,
    openai_error,
    openai_tool_call_chunks,
)
from tests.gateway.conftest import config_text

TOOLS = [{"name": "Read", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}]
THINK = {"type": "enabled", "budget_tokens": 2000}
CLEAR = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
ASK = {"role": "user", "content": "read a.txt"}


pytestmark = pytest.mark.usefixtures("fresh_book")


@pytest.fixture
def deep_then_claude(start_gateway, signer):  # type: ignore[no-untyped-def]
    """An OpenAI-compatible backend ("deep", active) with Claude ("claude") as its fallback."""
    with FakeUpstream(wire="anthropic", guard=signer.guard) as claude, FakeUpstream(wire="openai") as deep:
        gw = start_gateway(config_text([
            {"id": "deep", "kind": "openai", "base_url": deep.url + "/v1", "auth": "none", "models": ["deep-chat"]},
            {"id": "claude", "kind": "anthropic", "base_url": claude.url, "auth": "none"},
        ], active="deep") + '\n\n[routes]\nfallback = ["claude"]\n')
        yield gw, deep, claude


def loop_turn(gw: Any, messages: list[dict[str, Any]], **extra: Any) -> Any:
    with gw.client().messages.stream(model="claude-sonnet-4-5", max_tokens=8000, messages=messages, tools=TOOLS,
                                     thinking=THINK, extra_body={"context_management": CLEAR}, **extra) as s:
        return s.get_final_message()


def test_a_tool_loop_that_fails_over_to_claude_goes_on_without_thinking(deep_then_claude, signer):
    gw, deep, claude = deep_then_claude
    deep.enqueue(OpenAIStream(openai_tool_call_chunks([("Read", {"file_path": "a.txt"})], ids=["call_1"])))
    first = loop_turn(gw, [ASK])
    assert [b.type for b in first.content] == ["tool_use"]
    history = [ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id,
                                             "content": "hello"}]}]
    deep.enqueue(openai_error(503, "The server is overloaded", "server_error"))
    claude.enqueue(AnthropicStream(signer.text_events("the file says hello", "It says hello.")))
    second = loop_turn(gw, history)
    assert second.content[-1].text == "It says hello." and signer.refused == []
    sent = claude.requests_to("/v1/messages")[-1].json
    assert "thinking" not in sent and "context_management" not in sent  # for this one request only
    assert sent["messages"][1]["content"][0]["type"] == "tool_use"
    assert [(e.route, e.backend) for e in gw.finished(2)][-1] == ("fallback:1", "claude")


def test_a_loop_claude_opened_with_thinking_keeps_thinking(deep_then_claude, signer):
    gw, _deep, claude = deep_then_claude
    signed = {"type": "thinking", "thinking": "I should read it", "signature": signer.sign("I should read it")}
    history = [ASK, {"role": "assistant", "content": [signed, {"type": "tool_use", "id": "toolu_1", "name": "Read",
                                                                  "input": {"file_path": "a.txt"}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi"}]}]
    claude.enqueue(AnthropicStream(signer.text_events("done", "It says hi.")))
    loop_turn(gw, history, extra_headers={"x-patchbay-pin": "claude"})
    sent = claude.requests_to("/v1/messages")[-1].json
    assert sent["thinking"] == THINK and sent["context_management"] == CLEAR and signer.refused == []


def test_a_new_turn_after_the_loop_thinks_again(deep_then_claude, signer):
    gw, _deep, claude = deep_then_claude
    history = [ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "Read",
                                                        "input": {"file_path": "a.txt"}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "hi"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "It says hi."}]},
               {"role": "user", "content": "now read b.txt"}]
    claude.enqueue(AnthropicStream(anthropic_tool_use_events([("Read", {"file_path": "b.txt"})])))
    loop_turn(gw, history, extra_headers={"x-patchbay-pin": "claude"})
    sent = claude.requests_to("/v1/messages")[-1].json
    assert sent["thinking"] == THINK and signer.refused == []


def test_the_fake_refuses_like_the_real_api(signer):
    """The fake itself: Anthropic's wording for a tool loop without its thinking block, and for
    the clear_thinking edit without thinking."""
    body = {"model": "m", "max_tokens": 5000, "thinking": THINK, "messages": [
        ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}
    with FakeUpstream(wire="anthropic", guard=signer.guard) as up:
        r = httpx.post(up.url + "/v1/messages", json=body)
        r2 = httpx.post(up.url + "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": [ASK],
                                                       "context_management": CLEAR})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When "
        "`thinking` is enabled, a final `assistant` message must start with a thinking block")
    assert r2.status_code == 400
    assert r2.json()["error"]["message"] == "`clear_thinking_20251015` strategy requires `thinking` to be enabled"
