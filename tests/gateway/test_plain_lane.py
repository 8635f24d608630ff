"""The plain lane (``relay._Pushed.lane``): a paced OpenAI stream's plain text chunks go from the
upstream parser's callback to the client's socket in one call, and what the client, the live view,
the captured body and the ledger get is byte for byte what the usual way gives them.

Each stream runs twice through the gateway on a real port, in front of a fake OpenAI upstream that
writes one chunk per read: once as it is, once with the lane refusing every read. The two answers
must match but for the ids made new for each request."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.events import ContentDelta
from app.proxy import relay
from tests.fakes.upstreams import FakeUpstream, OpenAIStream
from tests.gateway.conftest import TOKEN, Gateway, config_text

MODEL = "gpt-fake"
BASE = {"id": "chatcmpl-lane", "object": "chat.completion.chunk", "created": 1760000000, "model": MODEL,
        "system_fingerprint": "fp_lane"}
ASK = {"model": "claude-sonnet-4-5", "max_tokens": 500, "stream": True,
       "messages": [{"role": "user", "content": "hello"}]}


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


def _text(t: str) -> dict[str, Any]:
    return _chunk({"content": t})


# what a provider streams: plain text (most of it), and everything the lane must leave alone
STREAM = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "Thinking first."}),
    _text("Hello"), _text(", wörld"), _text(' "quoted" \\ back\\slash'), _text("\n\nnew paragraph"),
    _text("emoji 🎛️ and \u2028 separators"),
    _text("a text that says event: error in it"),  # both ways write through Exchange.outgoing, which scrubs error events
    _chunk({"content": "same text, other fields", "refusal": None, "tool_calls": None}),
    _text("back to the first skeleton"),
    {**_text(" from another model"), "model": "gpt-other"},
    _text(" and again"),
    *[_text(f" piece {i}") for i in range(12)],
    _chunk({"content": "x", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                           "function": {"name": "read", "arguments": '{"path": "a"}'}}]}),
    _chunk({}, "tool_calls"),
    {**BASE, "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 31}},
]


@pytest.fixture
def lane_counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many reads the lane took and declined; ``counts["off"] = 1`` makes it decline all."""
    counts = {"took": 0, "declined": 0, "off": 0}
    real = relay._Pushed.lane

    def lane(self: Any, piece: bytes) -> bool:
        took = False if counts["off"] else real(self, piece)
        counts["took" if took else "declined"] += 1
        return took

    monkeypatch.setattr(relay._Pushed, "lane", lane)
    return counts


def _gateway(start_gateway: Any, up: FakeUpstream, *, capture: bool = False, deltas: bool = True) -> Gateway:
    gw: Gateway = start_gateway(config_text([
        {"id": "oai", "kind": "openai", "base_url": up.url + "/v1", "auth": "none",
         "models": [MODEL, "gpt-other"], "max_output_tokens": 1000},
    ], active="oai", extra='[ledger]\ncapture = "all"' if capture else ""), deltas=deltas)
    return gw


def _answer(gw: Gateway, up: FakeUpstream, chunks: list[Any], **stream: Any) -> bytes:
    up.enqueue(OpenAIStream(chunks, delay_s=0.004, **stream))  # one chunk a read, as a paced stream comes
    with httpx.Client(timeout=30.0) as c:
        r = c.post(gw.url + "/v1/messages", json=ASK, headers={"x-api-key": TOKEN})
    assert r.status_code == 200, r.text
    return _same_id(r.content)


def _same_id(data: bytes) -> bytes:
    """The answer with its message id and tool call ids (new for each request) made alike."""
    return re.sub(rb'"id":"(msg|toolu)_[A-Za-z0-9]+"', rb'"id":"\1_X"', data)


def _both_ways(gw: Gateway, up: FakeUpstream, counts: dict[str, int], chunks: list[Any],
               **stream: Any) -> tuple[bytes, bytes]:
    lane = _answer(gw, up, chunks, **stream)
    took = counts["took"]
    counts["off"] = 1
    usual = _answer(gw, up, chunks, **stream)
    counts["off"] = 0
    assert took > 0 and counts["took"] == took
    return lane, usual


def test_the_lane_gives_the_client_what_the_usual_way_gives(start_gateway, openai_up, lane_counts):
    gw = _gateway(start_gateway, openai_up)
    lane, usual = _both_ways(gw, openai_up, lane_counts, STREAM)
    assert lane == usual
    # it carried the plain text chunks that repeat the last one's skeleton, and nothing else
    assert lane_counts["took"] >= 14, lane_counts
    assert b"event: error in it" in lane and b'"name":"read"' in lane and b'"stop_reason":"tool_use"' in lane
    a, b = gw.finished(2)
    assert a.usage == b.usage and a.usage.output_tokens == 31 and a.status == b.status == 200
    assert a.stop_reason == b.stop_reason == "tool_use" and a.usage_counted is b.usage_counted is None


def test_the_live_view_and_the_captured_body_match_the_usual_way(start_gateway, openai_up, lane_counts):
    gw = _gateway(start_gateway, openai_up, capture=True)
    lane, usual = _both_ways(gw, openai_up, lane_counts, STREAM)
    assert lane == usual
    a, b = gw.finished(2)
    assert a.response_body is not None and _same_id(a.response_body) == lane
    assert b.response_body is not None and _same_id(b.response_body) == usual

    def shown(request_id: str) -> list[tuple[int, str, str]]:
        return [(e.index, e.kind, e.text) for e in gw.events() if isinstance(e, ContentDelta) and e.request_id == request_id]

    assert shown(a.request_id) == shown(b.request_id)
    assert "".join(t for _, kind, t in shown(a.request_id) if kind == "text").startswith("Hello, wörld")


def test_with_nobody_watching_the_lane_still_counts_what_a_cut_stream_is_charged(start_gateway, openai_up,
                                                                                lane_counts):
    """No live view, no meter: the translator has no delta callback. A stream the upstream cuts
    before its usage is charged for what reached the client, the same either way."""
    gw = _gateway(start_gateway, openai_up, deltas=False)
    chunks = [_chunk({"role": "assistant", "content": ""}), *(_text(f"word{i} ") for i in range(40))]
    lane, usual = _both_ways(gw, openai_up, lane_counts, chunks, cut_after=len(chunks))
    assert lane == usual and b"event: error" in lane and b"word39" in lane
    a, b = gw.finished(2)
    assert a.interrupted and b.interrupted and a.usage_counted == b.usage_counted == "streamed"
    assert a.usage.output_tokens == b.usage.output_tokens > 0


def test_a_write_that_fails_in_the_lane_is_not_blamed_on_the_upstream(start_gateway, openai_up, lane_counts,
                                                                      monkeypatch):
    """The client's socket refuses a write the lane makes (uvloop raises once the handle is
    closed, before uvicorn has noticed the client left): the stream ends as it would had the
    usual way's write failed: never as malformed HTTP from the upstream."""
    from app.proxy import direct_write

    real_write = direct_write.DirectWriter.write
    writes = {"n": 0}

    def write(self: Any, data: bytes) -> None:
        writes["n"] += 1
        if writes["n"] == 8:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")
        real_write(self, data)

    monkeypatch.setattr(direct_write.DirectWriter, "write", write)
    gw = _gateway(start_gateway, openai_up)
    chunks = [_chunk({"role": "assistant", "content": ""}), *(_text(f"word{i} ") for i in range(30))]
    openai_up.enqueue(OpenAIStream(chunks, delay_s=0.004))
    with httpx.Client(timeout=30.0) as c:
        c.post(gw.url + "/v1/messages", json=ASK, headers={"x-api-key": TOKEN})
    fin = gw.finished(1)[0]
    assert lane_counts["took"] >= 4 and writes["n"] >= 8
    said = fin.error_message or ""
    assert "malformed" not in said and "broke mid-stream" not in said, said
