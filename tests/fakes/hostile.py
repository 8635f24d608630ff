"""A hostile upstream on raw sockets (``asyncio.start_server``): one bad behaviour per answer.

Where :class:`tests.fakes.upstreams.FakeUpstream` plays a correct server with awkward framing,
this one breaks the rules a real upstream (or a captive portal, a proxy, an overloaded provider)
breaks: it sends a complete stream and never ends the body, cuts or stalls a body part-way,
answers 200 with an HTML page or an error object, sends OpenAI chunks of odd shapes, a quota error
inside a 200 stream, invalid UTF-8 inside a chunk, or a 401 that quotes the key it was sent.

    with HostileUpstream() as up:           # up.url == "http://127.0.0.1:PORT"
        up.behave("sse_unended")            # every request from now on
        ...
        up.requests                         # (head lines, body) per request

Each behaviour is a coroutine ``(writer, head, body)``; ``BEHAVIOURS`` lists them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from tests.fakes import chunks as _chunks

Writer = asyncio.StreamWriter
Behaviour = Callable[[Writer, dict[str, str], bytes], Awaitable[None]]

HANG_S = 3600.0  # "for ever", as far as any test is concerned


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)


def _head(status: int, ctype: str, *, chunked: bool = False, length: int | None = None,
          reason: str = "OK", encoding: str | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {ctype}"]
    if encoding is not None:
        lines.append(f"content-encoding: {encoding}")
    if chunked:
        lines.append("transfer-encoding: chunked")
    if length is not None:
        lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_events(text: str = "Hello from a hostile upstream.") -> list[bytes]:
    return [_sse(name, data) for name, data in _chunks.anthropic_text_events(text, 3)]


def openai_frames(chunks: list[Any]) -> list[bytes]:
    return [b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) + b"\n\n" for c in chunks]


def _text_chunk(text: str) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-fake",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def _finish_chunk() -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-fake",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}


# --------------------------------------------------------------------------- behaviours


async def sse_unended(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A whole Anthropic stream up to message_stop, then the body never ends (no 0-chunk)."""
    w.write(_head(200, "text/event-stream", chunked=True) + _chunked(anthropic_events()))
    await w.drain()
    await asyncio.sleep(HANG_S)


async def openai_done_unended(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A whole OpenAI stream up to ``[DONE]``, then the body never ends."""
    frames = openai_frames([_text_chunk("Hello "), _text_chunk("there."), _finish_chunk(), b"[DONE]"])
    w.write(_head(200, "text/event-stream", chunked=True) + _chunked(frames))
    await w.drain()
    await asyncio.sleep(HANG_S)


def _whole(h: dict[str, str]) -> bytes:
    if "/chat/completions" in h.get(":path", ""):
        return json.dumps(_chunks.openai_completion("A whole answer that never arrives complete.")).encode()
    return json.dumps(_chunks.anthropic_message("A whole answer that never arrives complete.")).encode()


async def cut_mid_body(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A whole (non-streamed) answer: Content-Length promised, a third sent, connection closed."""
    data = _whole(h)
    w.write(_head(200, "application/json", length=len(data)) + data[: len(data) // 3])
    await w.drain()
    w.transport.abort()


async def stall_mid_body(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A whole answer: Content-Length promised, a third sent, then silence."""
    data = _whole(h)
    w.write(_head(200, "application/json", length=len(data)) + data[: len(data) // 3])
    await w.drain()
    await asyncio.sleep(HANG_S)


def _fixed(status: int, ctype: str, data: bytes) -> Behaviour:
    async def send(w: Writer, h: dict[str, str], body: bytes) -> None:
        w.write(_head(status, ctype, length=len(data)) + data)
        await w.drain()
    return send


CAPTIVE_PAGE = b"<html><head><title>Hotel Wi-Fi</title></head><body>Please log in to continue.</body></html>"
INDEX_HTML = b'<!doctype html><html><head><script src="/app.js"></script></head><body><div id="root"></div></body></html>'
ERROR_200 = json.dumps({"error": {"message": "Upstream quota exhausted for this organisation.",
                                  "type": "insufficient_quota"}}).encode()

html_200 = _fixed(200, "text/html; charset=utf-8", CAPTIVE_PAGE)
index_html_200 = _fixed(200, "text/html", INDEX_HTML)
error_json_200 = _fixed(200, "application/json", ERROR_200)

ODD_CHUNKS: list[Any] = [
    {"choices": "x"}, {"choices": [5]}, {"choices": [None]}, {"choices": [{"index": 0, "delta": "x"}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": 1}}]}, {"choices": [{"index": 0, "delta": {"content": 5}}]},
    {"choices": [{"index": 0, "finish_reason": 7}]}, {"usage": "many"}, [1, 2], "text",
]


async def odd_openai_chunks(w: Writer, h: dict[str, str], body: bytes) -> None:
    """Text, then every odd chunk shape, then more text and a normal end."""
    frames = openai_frames([_text_chunk("Before "), *ODD_CHUNKS, _text_chunk("after."), _finish_chunk(), b"[DONE]"])
    w.write(_head(200, "text/event-stream", chunked=True) + _chunked(frames) + b"0\r\n\r\n")
    await w.drain()


QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."


async def quota_in_stream(w: Writer, h: dict[str, str], body: bytes) -> None:
    """200, some text, then an ``{"error": …}`` chunk (a provider's quota error), then the end."""
    frames = openai_frames([_text_chunk("Partial "),
                            {"error": {"message": QUOTA_MESSAGE, "type": "insufficient_quota", "code": 429}}])
    w.write(_head(200, "text/event-stream", chunked=True) + _chunked(frames) + b"0\r\n\r\n")
    await w.drain()


async def invalid_utf8(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A chunk whose text holds a byte that is not UTF-8."""
    bad = b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-fake","choices":[{"index":0,' \
          b'"delta":{"content":"caf\xe9 ok"},"finish_reason":null}]}'
    frames = openai_frames([_text_chunk("Start "), bad, _finish_chunk(), b"[DONE]"])
    w.write(_head(200, "text/event-stream", chunked=True) + _chunked(frames) + b"0\r\n\r\n")
    await w.drain()


async def echo_key_401(w: Writer, h: dict[str, str], body: bytes) -> None:
    """401 whose message quotes the key it was sent (as some gateways do)."""
    key = h.get("x-api-key") or h.get("authorization", "").removeprefix("Bearer ").strip()
    data = json.dumps({"type": "error", "error": {"type": "authentication_error",
                                                  "message": f"invalid x-api-key: {key} is not a valid key"}}).encode()
    w.write(_head(401, "application/json", length=len(data), reason="Unauthorized") + data)
    await w.drain()


@functools.cache
def gzip_bomb(inflated: int = 1 << 30, step: int = 8 << 20) -> bytes:
    """A valid gzip body of ~1 MB that inflates to ``inflated`` zero bytes (1 GiB), built in ~2 s:
    one 8 MiB block of zeros compressed after a full flush is the same bytes every time, so it is
    repeated, and the trailer's CRC and length are written for the whole."""
    zeros = bytes(step)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)[:-8]
    n = inflated // step
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    return first + again * (n - 1) + end + struct.pack("<II", crc, (n * step) & 0xFFFFFFFF)


async def gzip_bomb_200(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A whole answer gzipped although the request said ``accept-encoding: identity``: 1 MB that
    inflates to 1 GiB."""
    data = gzip_bomb()
    w.write(_head(200, "application/json", length=len(data), encoding="gzip") + data)
    await w.drain()


async def drip_200(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A JSON answer that promises 10 kB and sends one byte every 0.2 s (each read is quick, the
    whole never comes)."""
    w.write(_head(200, "application/json", length=10_000) + b"{")
    await w.drain()
    for _ in range(9_999):
        await asyncio.sleep(0.2)
        w.write(b" ")
        await w.drain()


HUGE_BYTES = 200 << 20
sent = {"huge_200": 0}  # bytes the last huge_200 answer got to write before the reader hung up


async def huge_200(w: Writer, h: dict[str, str], body: bytes) -> None:
    """A 200 MB JSON answer (Content-Length given), written 1 MB at a time."""
    sent["huge_200"] = 0
    w.write(_head(200, "application/json", length=HUGE_BYTES))
    piece = b" " * (1 << 20)
    for _ in range(HUGE_BYTES // len(piece)):
        w.write(piece)
        await w.drain()
        sent["huge_200"] += len(piece)


async def sse_no_boundary(w: Writer, h: dict[str, str], body: bytes) -> None:
    """An event stream that starts an event and never ends it: 300 MB of one ``data:`` line."""
    w.write(_head(200, "text/event-stream", chunked=True) + _chunked([b"event: content_block_delta\ndata: "]))
    piece = _chunked([b"x" * (1 << 20)])
    for _ in range(300):
        w.write(piece)
        await w.drain()
    w.write(b"0\r\n\r\n")
    await w.drain()


BEHAVIOURS: dict[str, Behaviour] = {
    "gzip_bomb_200": gzip_bomb_200, "drip_200": drip_200, "huge_200": huge_200, "sse_no_boundary": sse_no_boundary,
    "sse_unended": sse_unended, "openai_done_unended": openai_done_unended, "cut_mid_body": cut_mid_body,
    "stall_mid_body": stall_mid_body, "html_200": html_200, "index_html_200": index_html_200,
    "error_json_200": error_json_200, "odd_openai_chunks": odd_openai_chunks, "quota_in_stream": quota_in_stream,
    "invalid_utf8": invalid_utf8, "echo_key_401": echo_key_401,
}


# --------------------------------------------------------------------------- the server


class HostileUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.behaviour: Behaviour = sse_unended
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def behave(self, name: str) -> None:
        self.behaviour = BEHAVIOURS[name]

    def __enter__(self) -> HostileUpstream:
        self._thread = threading.Thread(target=self._run, name="hostile-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {":method": method, ":path": path}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.requests.append((headers, body))
                await self.behaviour(writer, headers, body)
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.transport.abort()
