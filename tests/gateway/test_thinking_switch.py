"""Switching backend in the middle of a session after reasoning (issue: thinking blocks an
``openai`` backend produced broke the switch to Anthropic with 400 "Invalid signature in
thinking block"). Real gateway, the anthropic SDK as client, an Anthropic fake that signs its own
thinking and refuses blocks it did not sign, as the real API does."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.proxy.backends.bedrock import bedrock_body
from tests.fakes import (
    AnthropicStream,
    FakeUpstream,
    OpenAIStream,
    ThinkingSigner,
    anthropic_text_events,
    openai_text_chunks,
)
from tests.gateway.conftest import config_text

USER = {"role": "user", "content": "think about it"}


pytestmark = pytest.mark.usefixtures("fresh_book")


@pytest.fixture
def three(start_gateway, signer):  # type: ignore[no-untyped-def]
    """A Claude-signing Anthropic fake ("claude"), another Anthropic-format server that signs with
    its own key ("local", like an Ollama), and an OpenAI-compatible one ("oai") that reasons."""
    other = ThinkingSigner(b"another-server")
    with FakeUpstream(wire="anthropic", guard=signer.guard) as claude, \
            FakeUpstream(wire="anthropic", guard=other.guard) as local, FakeUpstream(wire="openai") as oai:
        gw = start_gateway(config_text([
            {"id": "claude", "kind": "anthropic", "base_url": claude.url, "auth": "none"},
            {"id": "local", "kind": "anthropic", "base_url": local.url, "auth": "none"},
            {"id": "oai", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none", "models": ["gpt-fake"]},
            {"id": "deep", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none",
             "models": ["deepseek-reasoner"]},
        ], active="oai"))
        yield gw, claude, local, oai, other


def turn(gw: Any, model: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One streamed turn; the assistant content as the client keeps it for the next turn."""
    with gw.client().messages.stream(model=model, max_tokens=2000, messages=messages) as s:
        msg = s.get_final_message()
    return [b.model_dump(exclude_none=True) for b in msg.content]


def test_reasoning_from_an_openai_backend_never_reaches_anthropic(three, signer):
    gw, claude, _local, oai, _other = three
    oai.enqueue(OpenAIStream(openai_text_chunks("It is 4.", reasoning="2 plus 2 makes 4")))
    first = turn(gw, "oai,gpt-fake", [USER])
    assert first[0]["type"] == "thinking" and first[0]["thinking"] == "2 plus 2 makes 4"
    assert first[0]["signature"] == "patchbay:oai"  # recognisable later as not Anthropic's

    # /model claude,… : the history goes to the Anthropic fake, which refuses unsigned blocks
    claude.enqueue(AnthropicStream(signer.text_events("deeper", "Still 4.")))
    history = [USER, {"role": "assistant", "content": first}, {"role": "user", "content": "sure?"}]
    second = turn(gw, "claude,claude-fake", history)
    assert [b["type"] for b in second] == ["thinking", "text"] and signer.refused == []
    sent = claude.requests_to("/v1/messages")[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "content": [{"type": "text", "text": "It is 4."}]}

    # a block the Anthropic upstream signed goes back to it unchanged, and the client's bytes with it
    claude.enqueue(AnthropicStream(anthropic_text_events("ok", thinking=None)))
    history += [{"role": "assistant", "content": second}, {"role": "user", "content": "thanks"}]
    raw = orjson.dumps({"model": "claude-fake", "max_tokens": 100, "messages": history[3:]})
    resp = gw.http().post("/v1/messages", content=raw, headers={"x-api-key": "pb-test-token",
                                                               "x-patchbay-pin": "claude",
                                                               "content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert claude.requests_to("/v1/messages")[-1].body == raw  # passthrough stays byte-exact
    assert signer.refused == []


def test_without_the_fix_the_fake_refuses_like_the_real_api(signer):
    """The fake itself: the wording PROTOCOL.md gives, for an unsigned block."""
    with FakeUpstream(wire="anthropic", guard=signer.guard) as up:
        import httpx

        body = {"model": "m", "max_tokens": 5, "messages": [
            USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": ""},
                                                    {"type": "text", "text": "y"}]},
            {"role": "user", "content": "z"}]}
        r = httpx.post(up.url + "/v1/messages", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == {"type": "invalid_request_error",
                                 "message": "messages.1.content.0: Invalid signature in thinking block"}


def test_blocks_another_anthropic_format_server_signed_are_dropped_for_claude(three, signer):
    gw, claude, local, _oai, other = three
    local.enqueue(AnthropicStream(other.text_events("local thoughts", "local answer")))
    first = turn(gw, "local,qwen3", [USER])
    assert first[0]["signature"] == other.sign("local thoughts")  # passed through unchanged
    claude.enqueue(AnthropicStream(signer.text_events("mine", "claude answer")))
    second = turn(gw, "claude,claude-fake", [USER, {"role": "assistant", "content": first},
                                             {"role": "user", "content": "and?"}])
    assert signer.refused == [] and second[-1]["text"] == "claude answer"
    # and back: the local server keeps its own block, Claude's goes
    local.enqueue(AnthropicStream(anthropic_text_events("fine")))
    turn(gw, "local,qwen3", [USER, {"role": "assistant", "content": first}, {"role": "user", "content": "and?"},
                             {"role": "assistant", "content": second}, {"role": "user", "content": "ok"}])
    sent = local.requests_to("/v1/messages")[-1].json["messages"]
    assert sent[1]["content"][0]["signature"] == other.sign("local thoughts")
    assert [b["type"] for b in sent[3]["content"]] == ["text"]
    assert other.refused == []


def test_redacted_thinking_and_an_assistant_turn_of_only_reasoning(three, signer):
    gw, claude, _local, _oai, _other = three
    claude.enqueue(AnthropicStream(signer.text_events("t", "fine")))
    history = [USER,
               {"role": "assistant", "content": [{"type": "thinking", "thinking": "only this", "signature": ""}]},
               {"role": "user", "content": "go on"},
               {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                                                 {"type": "text", "text": "said"}]},
               {"role": "user", "content": "more"}]
    turn(gw, "claude,claude-fake", history)
    sent = claude.requests_to("/v1/messages")[-1].json["messages"]
    # the reasoning-only turn goes (empty content is refused); redacted_thinking stays as it was
    assert [m["role"] for m in sent] == ["user", "user", "assistant", "user"]
    assert sent[2]["content"][0] == {"type": "redacted_thinking", "data": "EmwKAhgBEgy"}


def test_anthropic_thinking_goes_to_openai_backends_only_where_they_use_it(three, signer):
    gw, claude, _local, oai, _other = three
    claude.enqueue(AnthropicStream(signer.text_events("claude reasons", "claude says")))
    first = turn(gw, "claude,claude-fake", [USER])
    history = [USER, {"role": "assistant", "content": first}, {"role": "user", "content": "next"}]
    oai.enqueue(OpenAIStream(openai_text_chunks("plain")))
    turn(gw, "oai,gpt-fake", history)
    sent = oai.requests_to("/chat/completions")[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "content": "claude says"}  # another model's reasoning: not sent
    oai.enqueue(OpenAIStream(openai_text_chunks("deep")))
    turn(gw, "deep,deepseek-reasoner", history)
    sent = oai.requests_to("/chat/completions")[-1].json["messages"]
    assert sent[1]["reasoning_content"] == "claude reasons"  # DeepSeek's thinking mode wants it back


def test_bedrock_and_vertex_bodies_drop_unsigned_thinking():
    body = {"model": "m", "max_tokens": 10, "messages": [
        USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "patchbay:oai"},
                                                {"type": "thinking", "thinking": "y", "signature": "EqQBCkgI"},
                                                {"type": "text", "text": "t"}]},
        {"role": "user", "content": "u"}]}
    out = bedrock_body(body, [], None)
    assert [b.get("signature") for b in out["messages"][1]["content"]] == ["EqQBCkgI", None]
    assert len(body["messages"][1]["content"]) == 3  # the client's request is not changed
