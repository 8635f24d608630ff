"""Self-tests of the fake upstreams: the bytes they send are what real upstreams send, and the
real ``anthropic`` SDK (a strict stream parser) accepts the Anthropic fake."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import (
    AnthropicStream,
    Drop,
    FakeUpstream,
    OpenAIJSON,
    OpenAIStream,
    Raw,
    anthropic_error,
    anthropic_text_events,
    anthropic_tool_use_events,
    openai_text_chunks,
    openai_tool_call_chunks,
)
from tests.fakes.chunks import split_text
from tests.fakes.upstreams import awkward_slices


def _sse_data(body: bytes) -> list[str]:
    return [line[len("data: "):] for line in body.decode().split("\n") if line.startswith("data: ")]


# --------------------------------------------------------------------------- pure builders


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.integers(1, 20))
def test_split_text_joins_back(text: str, pieces: int) -> None:
    parts = split_text(text, pieces)
    assert "".join(parts) == text
    assert len(parts) == (min(pieces, len(text)) if text else 0)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_awkward_slices_join_back(data: bytes) -> None:
    assert b"".join(awkward_slices(data)) == data


def test_awkward_split_cuts_mid_character_and_between_frame_newlines() -> None:
    frames = [OpenAIStream.frame(c) for c in openai_text_chunks("zürich → 東京", 3)]
    plan = OpenAIStream(openai_text_chunks("zürich → 東京", 3), split="awkward", done=False).plan
    # undo the chunked framing: the first write starts with the head; each is "<hex>\r\n<piece>\r\n"
    writes = [plan.writes[0].split(b"\r\n\r\n", 1)[1], *plan.writes[1:-1]]
    assert plan.writes[-1] == b"0\r\n\r\n"
    pieces = [w.split(b"\r\n", 1)[1][:-2] for w in writes]
    assert b"".join(pieces) == b"".join(frames)
    assert len(pieces) > 3 * len(frames)

    def broken_utf8(p: bytes) -> bool:
        try:
            p.decode("utf-8")
            return False
        except UnicodeDecodeError:
            return True

    assert any(broken_utf8(p) for p in pieces)
    assert any(p.endswith(b"\n") and not p.endswith(b"\n\n") for p in pieces)


def test_openai_tool_call_chunks_reassemble_per_index() -> None:
    calls = [("Write", {"file_path": "/tmp/a", "content": "x\n"}), ("Read", {"file_path": "/tmp/b"})]
    chunks = openai_tool_call_chunks(calls, pieces=4, interleave=True, ids=["call_a", "call_b"])
    args: dict[int, str] = {}
    heads: dict[int, tuple[str, str]] = {}
    order = []
    for c in chunks[:-1]:
        for tc in c["choices"][0]["delta"].get("tool_calls", []):
            i = tc["index"]
            if "id" in tc:
                heads[i] = (tc["id"], tc["function"]["name"])
            else:
                order.append(i)
            args[i] = args.get(i, "") + tc["function"]["arguments"]
    assert heads == {0: ("call_a", "Write"), 1: ("call_b", "Read")}
    assert [json.loads(args[i]) for i in (0, 1)] == [calls[0][1], calls[1][1]]
    assert order[:4] == [0, 1, 0, 1]  # interleaved fragments
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20


# --------------------------------------------------------------------------- the server


def test_openai_stream_awkward_over_the_wire_with_keepalive_and_chunked_request() -> None:
    chunks = openai_text_chunks("héllo wörld", 4, usage=(7, 3, 2))
    with FakeUpstream() as up:
        up.enqueue(OpenAIStream(chunks, split="awkward", delay_s=0.0005))
        up.enqueue(OpenAIJSON({"ok": True}))
        with httpx.Client(base_url=up.url) as client:
            with client.stream("POST", "/v1/chat/completions?x=1", content=iter([b'{"stream":', b"true}"]),
                               headers={"Authorization": "Bearer k"}) as r:
                reads = list(r.iter_raw())
            second = client.post("/v1/chat/completions", json={"stream": False})
        assert second.json() == {"ok": True}
        assert up.connections == 1  # keep-alive
        req = up.requests[0]
        assert (req.method, req.path, req.query, req.params) == ("POST", "/v1/chat/completions", "x=1", {"x": "1"})
        assert req.json == {"stream": True} and req.headers["authorization"] == "Bearer k"
        assert req.outcome == "sent"
    body = b"".join(reads)
    data = _sse_data(body)
    assert data[-1] == "[DONE]"
    assert [json.loads(d) for d in data[:-1]] == chunks
    assert len(reads) > len(chunks)  # arrived in many odd pieces


def test_cut_after_drops_the_connection_mid_stream() -> None:
    chunks = openai_text_chunks("abcdef", 6)
    with FakeUpstream() as up:
        up.enqueue(OpenAIStream(chunks, cut_after=3))
        got = b""
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", up.url + "/v1/chat/completions", json={"stream": True}) as r:
                for piece in r.iter_raw():
                    got += piece
        assert up.requests[0].outcome == "cut"
    assert [json.loads(d) for d in _sse_data(got)] == chunks[:3]


def test_queue_match_default_and_builtins() -> None:
    def responder(req):  # type: ignore[no-untyped-def]
        return Raw(200, {"content-type": "text/plain"}, "tools" if req.has_tools else "plain")

    with FakeUpstream(responder) as up:
        up.enqueue(Raw(529, body="overloaded"), match=lambda r: r.has_tools)
        up.enqueue(anthropic_error(429, "rate_limit_error", "slow down"))
        with httpx.Client(base_url=up.url) as c:
            assert c.get("/v1/models").json()["data"][0]["id"] == "fake-model"  # takes nothing queued
            assert c.post("/v1/messages/count_tokens", json={"messages": []}).json()["input_tokens"] >= 1
            r1 = c.post("/v1/chat/completions", json={"messages": []})  # no tools: first unmatched entry
            r2 = c.post("/v1/chat/completions", json={"tools": [{"x": 1}]})
            r3 = c.post("/v1/chat/completions", json={"tools": [{"x": 1}]})
            r4 = c.get("/nope")
    assert (r1.status_code, r1.json()["error"]["type"]) == (429, "rate_limit_error")
    assert (r2.status_code, r2.text) == (529, "overloaded")
    assert (r3.status_code, r3.text) == (200, "tools")
    assert r4.text == "plain"
    assert up.pending == 0
    assert [r.path for r in up.requests_to("/chat/completions")] == ["/v1/chat/completions"] * 3


def test_drop_closes_without_an_answer() -> None:
    with FakeUpstream() as up:
        up.enqueue(Drop())
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(up.url + "/v1/chat/completions", json={})
        # the next request on a fresh connection gets the stock answer
        assert httpx.post(up.url + "/v1/chat/completions", json={}).json()["object"] == "chat.completion"


def test_close_delimited_and_stop_releases_the_port() -> None:
    up = FakeUpstream().start()
    up.enqueue(OpenAIStream(openai_text_chunks("hi", 2), framing="close"))
    r = httpx.post(up.url + "/v1/chat/completions", json={"stream": True})
    assert r.headers["connection"] == "close" and _sse_data(r.content)[-1] == "[DONE]"
    port = up.port
    up.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_anthropic_fake_satisfies_the_real_sdk() -> None:
    calls = [("Write", {"file_path": "/tmp/x.txt", "content": "hi ✓\n"})]
    with FakeUpstream(wire="anthropic") as up:
        up.enqueue(AnthropicStream(anthropic_text_events("Grüße, world", 4, thinking="hmm", usage=(11, 6, 3, 2)),
                                   split="awkward"))
        up.enqueue(AnthropicStream(anthropic_tool_use_events(calls, pieces=5, text="ok", ids=["toolu_1"])))
        client = anthropic.Anthropic(base_url=up.url, api_key="k", max_retries=0)
        kwargs = dict(model="claude-fake", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
        with client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            text = "".join(s.text_stream)
            first = s.get_final_message()
        with client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            second = s.get_final_message()
        models = client.models.list()
        tokens = client.messages.count_tokens(model="claude-fake", messages=[{"role": "user", "content": "hi"}])
    assert text == "Grüße, world"
    assert [b.type for b in first.content] == ["thinking", "text"]
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.cache_read_input_tokens) == (11, 6, 3)
    assert second.stop_reason == "tool_use"
    tool = second.content[1]
    assert (tool.type, tool.id, tool.name, tool.input) == ("tool_use", "toolu_1", "Write", calls[0][1])
    assert [m.id for m in models.data] == ["fake-model"]
    assert tokens.input_tokens >= 1
    assert up.requests[0].headers["authorization"] == "Bearer k"


def test_paced_stream_takes_its_time() -> None:
    with FakeUpstream() as up:
        up.enqueue(OpenAIStream(openai_text_chunks("abcd", 4, usage=None), delay_s=0.02))
        with httpx.Client() as client:
            t0 = time.perf_counter()
            with client.stream("POST", up.url + "/v1/chat/completions", json={"stream": True}) as r:
                stamps = [time.perf_counter() - t0 for _ in r.iter_raw()]
    # 7 writes (head + role, 4 pieces, finish, [DONE] + end of body) with 20 ms between them
    assert stamps[0] < 0.05
    assert stamps[-1] - stamps[0] >= 0.1
