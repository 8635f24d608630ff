"""Streams relayed by push (app/proxy/relay.py): the gateway on a real port, fake upstreams
pacing their chunks, the official SDK (or a raw reader) as the client. Each upstream read is
translated and written from the upstream connection's callback (the request's task is not woken
per read); a client that reads slower than the upstream writes still gets every byte, in order."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from app.proxy import upstream_body
from tests.fakes.chunks import anthropic_text_events, openai_text_chunks
from tests.fakes.upstreams import AnthropicStream, FakeUpstream, OpenAIStream
from tests.gateway.conftest import TOKEN, config_text

USER = [{"role": "user", "content": "hello"}]
TEXT = "Paced streams cost one wake-up per chunk; the task need not be one of them. " * 3


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often a request's task waited for an upstream read (``UpstreamBody._wait``), and how often
    it handed reading over to push (``UpstreamBody.pump``, where it exists)."""
    counts = {"wait": 0, "pump": 0}
    real_wait = upstream_body.UpstreamBody._wait

    async def counted_wait(self: Any) -> None:
        counts["wait"] += 1
        await real_wait(self)

    monkeypatch.setattr(upstream_body.UpstreamBody, "_wait", counted_wait)
    real_pump = getattr(upstream_body.UpstreamBody, "pump", None)
    if real_pump is not None:
        async def counted_pump(self: Any, sink: Any, whole: Any = None) -> None:
            counts["pump"] += 1
            await real_pump(self, sink, whole)

        monkeypatch.setattr(upstream_body.UpstreamBody, "pump", counted_pump)
    return counts


def test_a_paced_openai_stream_wakes_the_task_once_not_per_chunk(two_backends, openai_up, waits):
    chunks = openai_text_chunks(TEXT, pieces=30, usage=(40, 30))
    openai_up.enqueue(OpenAIStream(chunks, delay_s=0.01))
    with two_backends.client().messages.stream(model="claude-sonnet-4-5", max_tokens=500, messages=USER) as s:
        msg = s.get_final_message()
    assert msg.content[0].text == TEXT and msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 30
    fin = two_backends.finished(1)[0]
    assert fin.status == 200 and fin.error_type is None and fin.ttft_ms is not None
    assert waits["wait"] <= 3, waits  # pulled, it was one per chunk (30+)


def test_a_paced_passthrough_is_forwarded_byte_for_byte_without_waking_the_task(
        anthropic_up: FakeUpstream, start_gateway, waits):  # type: ignore[no-untyped-def]
    events = anthropic_text_events(TEXT, pieces=30, usage=(12, 30, 0, 0))
    body = b"".join(AnthropicStream.frame(e) for e in events)
    anthropic_up.enqueue(AnthropicStream(events, delay_s=0.01))
    gw = start_gateway(config_text([{"id": "claude", "kind": "anthropic", "base_url": anthropic_up.url,
                                     "auth": "none"}], active="claude"), deltas=False)
    with httpx.Client(base_url=gw.url, timeout=10) as c, c.stream(
            "POST", "/v1/messages", headers={"x-api-key": TOKEN, "anthropic-version": "2023-06-01"},
            json={"model": "claude-fake", "max_tokens": 100, "messages": USER, "stream": True}) as r:
        got = b"".join(r.iter_raw())
    assert got == body  # the upstream's events, unchanged
    fin = gw.finished(1)[0]
    assert fin.status == 200 and fin.usage.output_tokens == 30 and fin.usage_counted is None
    assert waits["wait"] <= 3, waits


def _slow_read(url: str, body: dict[str, Any]) -> bytes:
    """POST ``body`` from a socket with a small receive buffer that reads nothing for a second,
    then slowly: the gateway's writes back up whatever the machine's socket buffer sizes."""
    import socket
    from urllib.parse import urlsplit

    import httptools

    u = urlsplit(url)
    raw = orjson.dumps(body)
    got: list[bytes] = []
    done: list[bool] = []

    class Parser:
        def on_body(self, data: bytes) -> None:
            got.append(data)

        def on_message_complete(self) -> None:
            done.append(True)

    p = httptools.HttpResponseParser(Parser())
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect((u.hostname, u.port))
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: " + u.netloc.encode() + b"\r\ncontent-type: application/json\r\n"
                     b"x-api-key: " + TOKEN.encode() + b"\r\nanthropic-version: 2023-06-01\r\n"
                     b"content-length: %d\r\n\r\n" % len(raw) + raw)
        time.sleep(0.5)
        sock.settimeout(30)
        while not done:
            data = sock.recv(8192)
            if not data:
                break
            p.feed_data(data)
            time.sleep(0.0002)
    return b"".join(got)


def test_a_slow_client_gets_a_large_stream_whole_and_in_order(two_backends, openai_up, monkeypatch):
    from app.proxy import direct_write

    lagged = []
    real_ready = direct_write.DirectWriter.ready

    def ready(self: Any) -> bool:
        ok = real_ready(self)
        if not ok:
            lagged.append(True)
        return ok

    monkeypatch.setattr(direct_write.DirectWriter, "ready", ready)
    piece = "".join(chr(0x41 + i % 26) for i in range(4000))
    text = "".join(f"<{i}>" + piece for i in range(1500))  # ~6 MB
    # still coming after the client caught up: the relay hands reading back to push then
    openai_up.enqueue(OpenAIStream(openai_text_chunks(text, pieces=1500, usage=(40, 1500)), delay_s=0.0005,
                                   split=4096))
    stream = _slow_read(two_backends.url, {"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": USER,
                                           "stream": True})
    assert stream[:200].startswith(b"event: message_start"), stream[:300]
    out = []
    for ev in stream.split(b"\n\n"):
        data = ev.partition(b"data: ")[2]
        obj = orjson.loads(data) if data else {}
        if obj.get("type") == "content_block_delta":
            out.append(obj["delta"]["text"])
    assert "".join(out) == text
    assert stream.endswith(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    fin = two_backends.finished(1)[0]
    assert fin.status == 200 and fin.usage.output_tokens == 1500
    assert lagged  # the client fell behind: the task wrote (awaiting the drain) instead of the callback


def test_the_head_and_message_start_leave_in_one_write(two_backends, openai_up, monkeypatch):
    """The client's first byte is the answer's first event, not a head alone: one write (one
    syscall and one wake-up of the client) sooner."""
    from uvicorn.protocols.http import httptools_impl

    writes: list[bytes] = []

    class Recorder:
        def __init__(self, real: Any) -> None:
            self._real = real

        def write(self, data: bytes) -> None:
            writes.append(bytes(data))
            self._real.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    real_init = httptools_impl.RequestResponseCycle.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        self.transport = Recorder(self.transport)

    monkeypatch.setattr(httptools_impl.RequestResponseCycle, "__init__", init)
    openai_up.enqueue(OpenAIStream(openai_text_chunks(TEXT, pieces=5, usage=(40, 5)), delay_s=0.01))
    with two_backends.client().messages.stream(model="claude-sonnet-4-5", max_tokens=500, messages=USER) as s:
        msg = s.get_final_message()
    assert msg.content[0].text == TEXT
    assert writes[0].startswith(b"HTTP/1.1 200") and b"event: message_start" in writes[0], writes[:2]
    assert b"".join(writes).count(b"HTTP/1.1") == 1


def test_a_passthrough_opens_with_its_first_event_and_ends_with_its_last(anthropic_up: FakeUpstream,
                                                                          start_gateway, monkeypatch):  # type: ignore[no-untyped-def]
    """Claude Code's usual path: the head goes out with message_start when the upstream sent them
    together, and message_stop with the body's end: two writes fewer to the client."""
    from uvicorn.protocols.http import httptools_impl

    writes: list[bytes] = []

    class Recorder:
        def __init__(self, real: Any) -> None:
            self._real = real

        def write(self, data: bytes) -> None:
            writes.append(bytes(data))
            self._real.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    real_init = httptools_impl.RequestResponseCycle.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        self.transport = Recorder(self.transport)

    monkeypatch.setattr(httptools_impl.RequestResponseCycle, "__init__", init)
    events = anthropic_text_events(TEXT, pieces=5, usage=(12, 5, 0, 0))
    body = b"".join(AnthropicStream.frame(e) for e in events)
    anthropic_up.enqueue(AnthropicStream(events, delay_s=0.005))  # the head with message_start, then paced
    gw = start_gateway(config_text([{"id": "claude", "kind": "anthropic", "base_url": anthropic_up.url,
                                     "auth": "none"}], active="claude"), deltas=False)
    with httpx.Client(base_url=gw.url, timeout=10) as c, c.stream(
            "POST", "/v1/messages", headers={"x-api-key": TOKEN, "anthropic-version": "2023-06-01"},
            json={"model": "claude-fake", "max_tokens": 100, "messages": USER, "stream": True}) as r:
        got = b"".join(r.iter_raw())
    assert got == body
    assert writes[0].startswith(b"HTTP/1.1 200") and b"event: message_start" in writes[0], writes[:1]
    assert writes[-1].endswith(b"0\r\n\r\n") and b"event: message_stop" in writes[-1], writes[-1:]
    assert gw.finished(1)[0].status == 200
