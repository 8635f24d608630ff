"""The response body of the gateway's upstream client (app/proxy/transport.py): fed by the
connection's parser callbacks, read by one consumer.

A consumer reads it one of three ways: ``take`` and ``wait`` (what has arrived, then a wait for
more), the async iterator (httpx's ``aiter_raw``), or ``pump``: each read handed to a sink from
the connection's ``data_received``, with no task woken per read (app/proxy/relay.py). Reading
pauses when more than ``HIGH_WATER`` bytes wait unread and resumes when the reader takes them.
The read timeout is one timer per body, re-armed only when it fires early.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx

__all__ = ["HIGH_WATER", "TIMED_OUT", "Source", "UpstreamBody", "expire", "raw_chunks", "stream_of"]

HIGH_WATER = 1 << 20  # unread body bytes that pause reading from the socket


class Source(Protocol):
    """What a body asks of the connection that feeds it."""

    loop: asyncio.AbstractEventLoop

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...


class UpstreamBody(httpx.AsyncByteStream):
    """A response body fed by the connection's parser callbacks and read by one consumer."""

    __slots__ = ("_conn", "_chunks", "_size", "_done", "_error", "_waiter", "_timeout", "_request",
                 "_paused", "_loop", "_timer", "_deadline", "sink", "whole")

    def __init__(self, conn: Source, timeout: float | None, request: httpx.Request) -> None:
        self._conn: Source | None = conn
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timeout = timeout
        self._request = request
        self._paused = False
        self._loop = conn.loop
        # the read timeout: one timer per body, re-armed only when it fires early (not a timer
        # made and cancelled per chunk: a paced stream pays that on every wake-up)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        # while ``pump`` runs: called from data_received with what each read brought (see pump)
        self.sink: Callable[[bytes], bool] | None = None
        # while ``pump`` runs, when given: offered a read's body first, from on_body (see pump)
        self.whole: Callable[[bytes], bool] | None = None

    # ---- producer side (called from the protocol)

    def offer(self, data: bytes, sole: bool) -> None:
        """A piece of the body from the parser. ``sole``: it is all its read brought but for the
        chunk framing; then, while ``pump`` runs with a ``whole`` and nothing is queued before it,
        ``whole`` may take it (see ``pump``). Otherwise it is queued for ``flush``, ``take`` or
        the iterator."""
        whole = self.whole
        if sole and whole is not None and not self._chunks and whole(data):
            if self._timeout is not None:  # taken: the read timeout counts from now, as flush would count it
                self._deadline = self._loop.time() + self._timeout
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()
        w = self._waiter
        if w is not None and self.sink is None and not w.done():
            w.set_result(None)

    def flush(self) -> None:
        """The end of a read (or of the body) while ``pump`` runs: what it brought, to the sink."""
        sink = self.sink
        if not self._chunks or sink is None:
            return
        data = self._dequeue()
        if self._timeout is not None:
            self._deadline = self._loop.time() + self._timeout
        if not sink(data):  # the sink wants its task: reading goes on into the queue
            self.sink = self.whole = None
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)

    def finish(self) -> None:
        self.flush()
        self._done = True
        self._stop_timer()
        self._conn = None  # the connection is released; nothing here may touch it again
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self._error = exc
        self._conn = None
        self._stop_timer()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ---- consumer side

    def take(self) -> bytes:
        """What has arrived and not been read yet (b"" for nothing); the body's error once all that
        came before it was read."""
        if self._chunks:
            return self._dequeue()
        if self._done and self._error is not None:
            raise self._error
        return b""

    def _dequeue(self) -> bytes:
        """The queued pieces as one; the queue emptied, reading resumed if it was paused."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if self._paused:
            self._paused = False
            if self._conn is not None:
                self._conn.resume_reading()
        return data

    @property
    def ended(self) -> bool:
        """Read to its end (or broken, its error already raised by ``take``)."""
        return self._done and not self._chunks

    async def wait(self) -> None:
        """Until more arrives, the body ends, or the read timeout passes (``httpx.ReadTimeout``)."""
        if self._chunks or self._done:
            return
        try:
            await self._wait()
        except BaseException:
            self._abandon()
            raise

    async def pump(self, sink: Callable[[bytes], bool], whole: Callable[[bytes], bool] | None = None) -> None:
        """Hand what each read brings to ``sink`` straight from the connection's ``data_received``,
        with no task woken per read, until ``sink`` answers False (it needs its task: the
        read is its to finish), the body ends or fails, or the read timeout passes
        (``httpx.ReadTimeout``). Returns at once when something waits to be ``take``n.

        ``whole``, when given, is offered a read first when the read brought one piece of the body
        and nothing else (one HTTP chunk, only its framing around it) and nothing is queued: True
        when it took the piece (it went to the client: nothing is queued, ``sink`` never sees it),
        False when it left it, untouched, for the queue and ``sink``. A paced stream's reads are
        such pieces; the parser's callback hands them over with no list, join or flush between."""
        if self._chunks or self._done:
            return
        self.sink = sink
        self.whole = whole
        try:
            await self._wait()
        except BaseException:
            self._abandon()
            raise
        finally:
            self.sink = self.whole = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                data = self.take()  # raises the body's error once all before it was read
                if data:
                    yield data
                elif self._done:
                    return
                else:
                    await self._wait()
        except BaseException:
            self._abandon()  # cancelled, timed out or broken: the connection cannot be reused
            raise

    async def _wait(self) -> None:
        loop = self._loop
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        if self._timeout is not None:
            self._deadline = loop.time() + self._timeout
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._on_timer)
        try:
            await fut
        finally:
            self._waiter = None
        if fut.result() is TIMED_OUT:
            raise httpx.ReadTimeout("The upstream sent nothing within the read timeout.", request=self._request)

    def _on_timer(self) -> None:
        """The read timer fired: expire the waiting reader if its deadline passed, else re-arm
        for the deadline the latest wait set (none waiting: the next wait arms a new timer)."""
        self._timer = None
        w = self._waiter
        if w is None or w.done() or self._done:
            return
        if self._loop.time() >= self._deadline:
            w.set_result(TIMED_OUT)
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _abandon(self) -> None:
        self._stop_timer()
        conn = self._conn
        if not self._done:
            self._done = True
            self._error = httpx.StreamClosed()
        self._chunks = []
        self._conn = None
        if conn is not None:
            conn.abort()

    async def aclose(self) -> None:
        if not self._done or self._conn is not None:
            self._abandon()


def stream_of(resp: httpx.Response) -> UpstreamBody | None:
    """``resp``'s body when this transport reads it and nobody has started to (marked consumed:
    the caller reads it with ``take``/``wait``/``pump`` or iterates it); None otherwise."""
    body: Any = resp.stream  # the transport's own answer (Backend.open), or httpx's wrapper of it
    if type(body) is not UpstreamBody:
        body = getattr(body, "_stream", None)
    if type(body) is UpstreamBody and not resp.is_stream_consumed and not resp.is_closed:
        resp.is_stream_consumed = True
        return body
    return None


def raw_chunks(resp: httpx.Response) -> AsyncIterator[bytes]:
    """``resp``'s body as it comes off the wire, like ``resp.aiter_raw()``. A body of this
    transport is read directly: httpx's ``aiter_raw`` (and, for a response that came through
    httpx's client, its ``BoundAsyncStream``) are more async generators to step through, and a
    chunker, per chunk, which a paced stream pays on every wake-up. Close ``resp`` afterwards."""
    body = stream_of(resp)
    return body.__aiter__() if body is not None else resp.aiter_raw()


TIMED_OUT: Any = object()


def expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(TIMED_OUT)
