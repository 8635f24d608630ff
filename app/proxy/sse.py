"""Incremental Server-Sent Events parsing and encoding, over bytes.

Upstreams split their streams wherever TCP likes: mid-line, mid-UTF-8 character. The parser
keeps the tail and only yields whole events, without decoding what it does not need.
"""

from __future__ import annotations

import httpx
import orjson

# the most an upstream may send without ending an event (a Messages stream's events are a few kB);
# past it the stream is broken off instead of holding an ever longer tail
MAX_EVENT_BYTES = 16 << 20


def event_too_large(size: int) -> httpx.DecodingError:
    """What a stream that sent ``size`` bytes without ending an event is broken off with (an httpx
    error, so it ends like any broken stream: an ``error`` event to the client)."""
    return httpx.DecodingError(f"the upstream sent {size >> 20} MB without ending an event, more than "
                               f"Patchbay's limit of {MAX_EVENT_BYTES >> 20} MB")


class SSEParser:
    """Feed bytes, get ``(event_name, data_bytes)`` for each complete event.

    ``event_name`` is b"" when the event has no ``event:`` line; comments and ``id:``/``retry:``
    lines are ignored. ``data_bytes`` joins several ``data:`` lines with b"\\n".
    """

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False  # the last chunk ended in "\r": its "\n" may come next

    @property
    def idle(self) -> bool:
        """Nothing is held from earlier reads: the next read starts a fresh event."""
        return not self._buf and not self._cr

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        if not self._buf and not self._cr and chunk[-2:] == b"\n\n" and b"\r" not in chunk:
            # the usual read: whole events and nothing more (the parse below, without its copies)
            return _events(chunk[:-2].split(b"\n\n"))
        if self._cr:
            self._cr = False
            chunk = b"\r" + chunk
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                self._cr = True
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        end = buf.rfind(b"\n\n")
        if end < 0:
            if len(buf) > MAX_EVENT_BYTES:
                self._buf = b""
                raise event_too_large(len(buf))
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        return _events(buf[:end].split(b"\n\n"))


def _events(blocks: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Each block's (name, data); blocks with neither are left out."""
    out: list[tuple[bytes, bytes]] = []
    for block in blocks:
        if block[:6] == b"data: " and b"\n" not in block:  # one data line (OpenAI's chunks)
            out.append((b"", block[6:]))
            continue
        if block[:7] == b"event: ":  # an event line, then one data line (Anthropic's events)
            nl = block.find(b"\n")
            if nl > 0 and block[nl + 1:nl + 7] == b"data: " and block.find(b"\n", nl + 1) < 0:
                out.append((block[7:nl].strip(), block[nl + 7:]))
                continue
        if not block:
            continue
        name = b""
        data: bytes | None = None
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:]
                if value[:1] == b" ":
                    value = value[1:]
                data = value if data is None else data + b"\n" + value
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if data is not None or name:
            out.append((name, data if data is not None else b""))
    return out


def encode(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = b'event: ping\ndata: {"type":"ping"}\n\n'

