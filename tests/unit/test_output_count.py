"""The one count of a stream's delivered output (app/proxy/output_count.py): the row of a cut
stream and the budget's meter read the same count, and a passthrough stream nobody watches
parses none of its deltas until the count is read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.events import EventHub
from app.proxy import output_count
from app.proxy.backends import anthropic
from app.proxy.backends.anthropic import AnthropicTap
from app.proxy.exchange import Exchange, Incoming
from app.proxy.routing import Route
from app.proxy.tokens import text_tokens


def _exchange(hub: EventHub | None = None) -> Exchange:
    inc = Incoming(body={"model": "m", "messages": []}, raw=b"{}", api_key=None, bearer=None, authorization=None,
                   anthropic_version=None, anthropic_beta=None, user_agent=None, session_id=None, agent_id=None,
                   api_key_is_token=False, bearer_is_token=False)

    async def send(_msg: dict[str, Any]) -> None:
        return None

    return Exchange("req_1", Route("up", "m", "active", "m"), inc, True, send, hub or EventHub())


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PIECES = ["Hello", ", wor", "ld! ", "1234 ", "\u00e9t\u00e9 \u4e2d\u6587", "\n\n  end."]


def _stream() -> bytes:
    out = [_event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "usage": {"input_tokens": 10, "output_tokens": 1}}})]
    out.append(_event("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}}))
    for p in PIECES:
        out.append(_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": p}}))
    out.append(_event("content_block_start", {"type": "content_block_start", "index": 1,
                                              "content_block": {"type": "tool_use", "id": "t", "name": "Read",
                                                                "input": {}}}))
    out.append(_event("content_block_delta", {"type": "content_block_delta", "index": 1,
                                              "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'}}))
    return b"".join(out)  # cut here: no message_delta, no final usage


DELIVERED = "".join(PIECES) + '{"a": 1}'


def test_the_row_and_the_meter_read_one_count() -> None:
    ex = _exchange()
    ex.delta(0, "text", "Hello, ")
    ex.delta(1, "tool_use", "Read")  # a tool's name is shown, not counted
    ex.delta(1, "tool_input", '{"path": "/x"}')
    assert ex.streamed_chars == len("Hello, ") + len('{"path": "/x"}')
    assert ex.streamed_tokens == pytest.approx(text_tokens(b'Hello, {"path": "/x"}'))


def test_an_unwatched_passthrough_parses_no_delta_until_the_count_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    real = orjson.loads

    def counting(data: Any) -> Any:
        parsed.append(bytes(data))
        return real(data)

    # the same orjson, counted wherever the stream path calls it
    monkeypatch.setattr(anthropic, "orjson", type("O", (), {"loads": staticmethod(counting),
                                                           "dumps": staticmethod(orjson.dumps),
                                                           "JSONDecodeError": orjson.JSONDecodeError}))
    monkeypatch.setattr(output_count, "orjson", anthropic.orjson)
    ex = _exchange()
    tap = AnthropicTap(ex)
    raw = _stream()
    for i in range(0, len(raw), 37):  # split wherever TCP likes
        tap.feed(raw[i:i + 37])
    assert not any(b"content_block_delta" in d for d in parsed)
    assert ex.ttft is not None
    # the cut stream's row: the delivered output, counted when asked
    assert ex.streamed_tokens == pytest.approx(text_tokens(DELIVERED.encode()))
    assert ex.streamed_chars == len(DELIVERED)


def test_a_watched_stream_counts_each_delta_as_it_passes() -> None:
    hub = EventHub()
    seen: list[Any] = []
    hub.add(seen.append, deltas=True)
    ex = _exchange(hub)
    tap = AnthropicTap(ex)
    tap.feed(_stream())
    assert ex.streamed_chars == len(DELIVERED)
    assert ex.streamed_tokens == pytest.approx(text_tokens(DELIVERED.encode()))
    texts = [e.text for e in seen if type(e).__name__ == "ContentDelta"]
    assert texts == [*PIECES, "Read", '{"a": 1}']


def test_a_long_unwatched_stream_folds_its_events_as_it_goes() -> None:
    ex = _exchange()
    tap = AnthropicTap(ex)
    piece = "x" * 1000
    ev = _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": piece}})
    for _ in range(600):  # ~640 kB of events: never all kept unparsed
        tap.feed(ev)
        assert ex.output._event_bytes < 300_000
    assert ex.streamed_chars == 600 * 1000
