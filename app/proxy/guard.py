"""Limits on what a client may hold: header size and count, time to send a request head, and
the number of open connections.

uvicorn's own limits do not cover the httptools parser the gateway uses: ``h11_max_incomplete_
event_size`` is for h11 only, ``timeout_keep_alive`` starts only after a first answer, and
``limit_concurrency`` answers a plain-text 503 only once a request's head has arrived (a client
that connects and sends half a head is never counted out). Without these, an 8 MB header or
100,000 headers are read into memory, and 300 half-sent requests under a 256-descriptor limit
(macOS's default) make the gateway refuse everyone, silently.

``GuardedHttpToolsProtocol`` is uvicorn's httptools protocol with:
- at most ``MAX_HEADERS`` headers and ``MAX_HEAD_BYTES`` of request line plus headers (431);
- ``HEAD_TIMEOUT_S`` to send a request head from the first byte, or from connecting (408);
- a cap on open connections (from the descriptor limit): at the cap the connection that has
  waited longest for its head (or sat idle longest) is closed to make room; when every
  connection is busy with a request the new one gets a 503. Each of these logs one line (at
  most every ``LOG_EVERY_S``).
The request body's own read timeout is in the gateway (``BODY_IDLE_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("patchbay.gateway")

MAX_HEADERS = 200
MAX_HEAD_BYTES = 256 * 1024
HEAD_TIMEOUT_S = 30.0
LOG_EVERY_S = 10.0
MAX_CONNECTIONS = 4096
_last_log: dict[str, float] = {}


def _note(kind: str, message: str, *args: Any) -> None:
    now = time.monotonic()
    if now - _last_log.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
        _last_log[kind] = now
        log.warning(message, *args)


def connection_cap() -> int:
    """Open connections the gateway allows: a margin below the descriptor limit (upstream
    connections, the ledger and log files need descriptors too)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # Windows
        return 1024
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, (soft - 32) // 2))


def raise_descriptor_limit(wanted: int = 8192) -> None:
    """Lift the soft descriptor limit towards the hard one (macOS starts at 256)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, OSError, ValueError):
        pass


def _answer(status: int, reason: bytes, error_type: str, message: str) -> bytes:
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body))) + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    cap: int | None = None  # set once per process from the descriptor limit

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refused = False
        self._head_bytes = 0
        self._head_count = 0
        self._in_head = True  # waiting for a request head (or idle between requests): may be closed for room
        self._idle = False  # between requests on a kept-alive connection (uvicorn's keep-alive timer runs)
        self._since = self.loop.time()
        self._head_timer: asyncio.TimerHandle | None = None
        cls = type(self)
        if cls.cap is None:
            cls.cap = connection_cap()
        if len(self.connections) >= cls.cap and not self._make_room():
            _note("cap", "refusing a connection: all %d connections the gateway allows are busy with requests "
                  "(the limit follows the open-file limit; raise it with ulimit -n)", cls.cap)
            transport.write(_answer(503, b"Service Unavailable", "overloaded_error",
                                    "Patchbay is serving as many connections as it can. Retry in a moment."))
            transport.close()
            self._refused = True
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head (or idled longest)."""
        victim: GuardedHttpToolsProtocol | None = None
        for conn in self.connections:
            if isinstance(conn, GuardedHttpToolsProtocol) and conn._in_head and not conn._refused and \
                    (victim is None or conn._since < victim._since):
                victim = conn
        if victim is None:
            return False
        _note("evict", "at the limit of %d open connections: closing the one that sent no complete request for "
              "%.0f s", type(self).cap, self.loop.time() - victim._since)
        victim._drop(408, b"Request Timeout", "The connection sent no complete request in time and was closed to "
                     "make room for others.")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._refused and self.transport is None:  # never registered with uvicorn
            return
        super().connection_lost(exc)

    # ---- the head timer

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        t = getattr(self, "_head_timer", None)
        if t is not None:
            t.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self._refused:
            _note("head", "closing a connection that took more than %.0f s to send a request head", HEAD_TIMEOUT_S)
            self._drop(408, b"Request Timeout",
                       f"The request head did not arrive within {HEAD_TIMEOUT_S:g} s. Send the whole request.")

    def _drop(self, status: int, reason: bytes, message: str) -> None:
        self._refused = True
        t = self.transport
        if t is not None and not t.is_closing():
            error_type = "request_too_large" if status == 431 else "invalid_request_error"
            t.write(_answer(status, reason, error_type, message))
            t.close()

    # ---- parsing

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._head_count = 0
        if self._idle:  # the next request on a kept-alive connection
            self._idle = False
            self._since = self.loop.time()
            self._arm_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._too_large()
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return  # the rest of a refused head is parsed but never kept
        self._head_count += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._head_count > MAX_HEADERS or self._head_bytes > MAX_HEAD_BYTES:
            self._too_large()
            return
        super().on_header(name, value)

    def _too_large(self) -> None:
        _note("large", "refusing a request with %d headers / %d bytes of head (limits: %d, %d)",
              self._head_count, self._head_bytes, MAX_HEADERS, MAX_HEAD_BYTES)
        self._cancel_head_timer()
        self._drop(431, b"Request Header Fields Too Large",
                   f"The request head is too large (more than {MAX_HEADERS} headers or {MAX_HEAD_BYTES // 1024} kB). "
                   "Send fewer or shorter headers.")

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._since = self.loop.time()  # idle from now; a kept-alive connection may be closed for room
        self._in_head = self._idle = True
