"""Anthropic SDK → gateway → fake OpenAI-compatible upstream, over real loopback sockets."""

from __future__ import annotations

import json

import anthropic
import pytest

from app.events import ContentDelta, RequestFinished, RequestStarted
from tests.fakes.chunks import openai_completion, openai_text_chunks, openai_tool_call_chunks
from tests.fakes.upstreams import Drop, OpenAIJSON, OpenAIStream, Raw, openai_error

USER = [{"role": "user", "content": "hello"}]


def test_text_stream_with_reasoning_and_cached_usage(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(
        openai_text_chunks("The answer is 42.", pieces=6, reasoning="Let me think.", usage=(120, 30, 100)),
        split="awkward"))
    client = two_backends.client()
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=500, messages=USER) as s:
        msg = s.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "Let me think."
    assert msg.content[1].text == "The answer is 42."
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 20 and msg.usage.cache_read_input_tokens == 100
    assert msg.usage.output_tokens == 30
    # what went upstream: translated, the active model, usage asked for, max_tokens clamped
    body = openai_up.requests[-1].json
    assert openai_up.requests[-1].path == "/v1/chat/completions"
    assert body["model"] == "gpt-fake" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 500
    fin = two_backends.finished(1)[0]
    assert fin.backend == "oai" and fin.route == "active" and fin.requested_model == "claude-sonnet-4-5"
    assert (fin.usage.input_tokens, fin.usage.cache_read_input_tokens, fin.usage.output_tokens) == (20, 100, 30)
    assert fin.error_type is None and fin.status == 200 and fin.ttft_ms is not None
    kinds = {e.kind for e in two_backends.events() if isinstance(e, ContentDelta)}
    assert kinds == {"thinking", "text"}


def test_max_tokens_is_clamped_to_the_backend_limit(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("ok")))
    two_backends.client().messages.create(model="x", max_tokens=64000, messages=USER, stream=True).close()
    assert openai_up.requests[-1].json["max_tokens"] == 1000


def test_parallel_tool_calls_interleaved_and_split(two_backends, openai_up):
    calls = [("Read", {"file_path": "/tmp/a.py"}), ("Grep", {"pattern": "def \\w+", "path": "src/"}),
             ("Write", {"file_path": "/tmp/é.txt", "content": "line1\nline2 ☃"})]
    openai_up.enqueue(OpenAIStream(openai_tool_call_chunks(calls, pieces=5, interleave=True, text="Working."),
                                   split="awkward"))
    with two_backends.client().messages.stream(model="m", max_tokens=100, messages=USER,
                                               tools=[{"name": n, "description": n, "input_schema": {"type": "object"}}
                                                      for n, _ in calls]) as s:
        msg = s.get_final_message()
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].type == "text" and msg.content[0].text == "Working."
    tools = [b for b in msg.content if b.type == "tool_use"]
    assert [(t.name, t.input) for t in tools] == [(n, a) for n, a in calls]
    ids = [t.id for t in tools]
    assert len(set(ids)) == 3 and all(i.startswith("toolu_") for i in ids)
    sent = openai_up.requests[-1].json
    assert [t["function"]["name"] for t in sent["tools"]] == ["Read", "Grep", "Write"]


def test_tool_results_go_back_as_tool_messages(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("done")))
    messages = [
        {"role": "user", "content": "read both"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "need files", "signature": "patchbay:oai"},  # its own reasoning
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a"}},
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"file_path": "b"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": True},
            {"type": "text", "text": "thanks"}]},
    ]
    two_backends.client().messages.create(model="m", max_tokens=50, messages=messages,
                                          system=[{"type": "text", "text": "be brief",
                                                   "cache_control": {"type": "ephemeral"}}],
                                          stream=True).close()
    sent = openai_up.requests[-1].json["messages"]
    roles = [m["role"] for m in sent]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    assert sent[0]["content"] == "be brief"
    assert sent[2]["reasoning_content"] == "need files"
    assert [c["id"] for c in sent[2]["tool_calls"]] == ["toolu_1", "toolu_2"]
    assert sent[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "A"}
    assert sent[4]["tool_call_id"] == "toolu_2" and "no such file" in sent[4]["content"]


def test_non_streaming_request(two_backends, openai_up):
    openai_up.enqueue(OpenAIJSON(openai_completion("plain answer", tool_calls=[("Read", {"file_path": "x"})],
                                                   usage=(50, 7, 10))))
    msg = two_backends.client().messages.create(model="m", max_tokens=50, messages=USER)
    assert msg.content[0].text == "plain answer"
    assert msg.content[1].type == "tool_use" and msg.content[1].input == {"file_path": "x"}
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (40, 10, 7)
    assert openai_up.requests[-1].json["stream"] is False
    fin = two_backends.finished(1)[0]
    assert fin.usage.output_tokens == 7 and not fin.stream


def test_upstream_error_keeps_its_wording_and_status(two_backends, openai_up):
    openai_up.enqueue(openai_error(429, "Rate limit reached for gpt-fake in organization org-1 on tokens.",
                                   error_type="rate_limit_exceeded"))
    with pytest.raises(anthropic.RateLimitError) as info:
        two_backends.client().messages.create(model="m", max_tokens=50, messages=USER, stream=True)
    assert info.value.status_code == 429
    assert "Rate limit reached for gpt-fake in organization org-1" in str(info.value)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "rate_limit_error"
    fin = two_backends.finished(1)[0]
    assert fin.status == 429 and fin.error_type == "rate_limit_error"


def test_upstream_dies_mid_stream_ends_with_an_error_event(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("one two three four five six", pieces=6), cut_after=4))
    with pytest.raises(anthropic.APIStatusError) as info:
        with two_backends.client().messages.stream(model="m", max_tokens=50, messages=USER) as s:
            s.get_final_message()
    assert "mid-stream" in str(info.value) or "before" in str(info.value)
    fin = two_backends.finished(1)[0]
    assert fin.error_type == "api_error" and fin.status == 200


def test_raw_stream_grammar(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("abc", pieces=3, usage=(10, 3, 4)), split="awkward"))
    with two_backends.http() as http:
        r = http.post("/v1/messages", headers={"x-api-key": "pb-test-token"},
                      json={"model": "m", "max_tokens": 10, "stream": True, "messages": USER})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in r.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    usage = events[0][1]["message"]["usage"]
    assert set(usage) >= {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
    assert events[0][1]["message"]["id"].startswith("msg_")
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn" and "stop_sequence" in final["delta"]
    assert final["usage"]["cache_read_input_tokens"] == 4 and final["usage"]["input_tokens"] == 6


def test_no_content_still_yields_a_content_block(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("", pieces=1)))
    with two_backends.client().messages.stream(model="m", max_tokens=50, messages=USER) as s:
        msg = s.get_final_message()
    assert len(msg.content) >= 1


def test_unreachable_backend_is_a_clear_502(start_gateway):
    from tests.gateway.conftest import config_text

    gw = start_gateway(config_text([{"id": "gone", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                     "auth": "none", "models": ["m"]}], active="gone"))
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client().messages.create(model="m", max_tokens=5, messages=USER)
    assert info.value.status_code == 502
    assert 'The backend "gone" at http://127.0.0.1:9/v1 is not answering' in str(info.value)
    assert info.value.response.headers["x-should-retry"] == "false"  # no retry helps: Claude Code stops at once


def test_request_started_names_session_and_route(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("hi")))
    client = two_backends.client(default_headers={"X-Claude-Code-Session-Id": "sess-1"})
    client.messages.create(model="m", max_tokens=5, stream=True, messages=USER,
                           system="You are Claude Code.\nWorking directory: /home/me/project\n").close()
    started = [e for e in two_backends.events() if isinstance(e, RequestStarted)][0]
    assert started.session_id == "sess-1" and started.backend == "oai" and started.model == "gpt-fake"
    assert started.cwd == "/home/me/project" and started.prompt == "hello"
    fin = two_backends.finished(1)[0]
    assert isinstance(fin, RequestFinished) and fin.session_id == "sess-1"


def test_session_from_metadata_user_id(two_backends, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("hi")))
    uid = json.dumps({"device_id": "d", "account_uuid": "", "session_id": "0b7c-meta"})
    two_backends.client().messages.create(model="m", max_tokens=5, stream=True, messages=USER,
                                          metadata={"user_id": uid}).close()
    assert two_backends.finished(1)[0].session_id == "0b7c-meta"


def test_slow_upstream_gets_pings(start_gateway, openai_up):
    from tests.gateway.conftest import config_text

    gw = start_gateway(config_text([{"id": "o", "kind": "openai", "base_url": openai_up.url + "/v1",
                                     "auth": "none", "models": ["m"]}], active="o").replace(
        "ping_interval_s = 10.0", "ping_interval_s = 0.2"))
    openai_up.enqueue(OpenAIStream(openai_text_chunks("slow answer", pieces=2), delay_s=0.5, ttfb_s=0.5))
    with gw.http() as http:
        r = http.post("/v1/messages", headers={"x-api-key": "pb-test-token"},
                      json={"model": "m", "max_tokens": 10, "stream": True, "messages": USER})
    assert r.status_code == 200
    assert "event: ping" in r.text
    assert r.text.rstrip().endswith('{"type":"message_stop"}')


def test_upstream_garbage_status_text(two_backends, openai_up):
    openai_up.enqueue(Raw(status=502, body=b"<html>Bad Gateway</html>", headers={"content-type": "text/html"}))
    with pytest.raises(anthropic.APIStatusError) as info:
        two_backends.client().messages.create(model="m", max_tokens=5, messages=USER, stream=True)
    assert info.value.status_code == 502 and "Bad Gateway" in str(info.value)


def test_upstream_drops_connection_before_answering(two_backends, openai_up):
    openai_up.enqueue(Drop())
    with pytest.raises(anthropic.APIStatusError) as info:
        two_backends.client().messages.create(model="m", max_tokens=5, messages=USER, stream=True)
    assert info.value.status_code == 502
