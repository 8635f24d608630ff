"""Relaying a streamed upstream body to the client: by push where it can, by pull where it must.

A paced stream costs one wake-up per upstream read, and that wake-up is most of its CPU
(docs/performance.md). Pulled, each read resolves a future, the loop turns once more to run the
request's task, and the task's coroutine chain (gateway → backend → body) resumes to translate,
then awaits the ASGI ``send``. Pushed, the backend's ``handle`` runs inside the upstream
connection's ``data_received`` and what it returns goes to the client's socket right there
(``Exchange.write_now``): no future, no task step, no extra loop turn.

Push needs nothing to wait for: the request's task takes over (pull) for whatever a callback
cannot do (a budget's meter to ask before a write, a client that reads slower than the upstream
writes, a server other than uvicorn's httptools one, a body of another transport), and hands
back to push when it can. Either way each read is handled once, in order, by ``handle``; errors
(the upstream cut, a read timeout, an event too large) are raised in the task, as a pulled read
would raise them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, Protocol

import httpx

from app.proxy.exchange import Exchange
from app.proxy.upstream_body import raw_chunks, stream_of


class Handler(Protocol):
    """A backend's reader of one streamed answer: each upstream read → the bytes for the client
    (b"" for none). ``complete`` turns True with the read that completes the answer (read no
    further); a plain attribute, not a call, as it is asked after every read."""

    complete: bool

    def __call__(self, chunk: bytes, /) -> bytes: ...


# A handler's short way for a read that is one whole event of its commonest kind (a paced
# stream's text chunk): that read's bytes for the client, the handler moved on as ``__call__``
# would; or None, nothing read. ``OpenAIStreamReader.by_skeleton`` is one.
Short = Callable[[bytes], bytes | None]


class Relayed(NamedTuple):
    chunks: AsyncIterator[bytes]  # what is left of the body, for draining (``backends.base.drain``)
    last: bytes  # the answer's last bytes, not yet written: the caller ends the stream with them


class _Pushed:
    """The sink a body calls from ``data_received`` (never raises: what goes wrong waits for the task)."""

    __slots__ = ("ex", "handle", "held", "error", "short")

    def __init__(self, ex: Exchange, handle: Handler, short: Short | None = None) -> None:
        self.ex = ex
        self.handle = handle
        self.held = b""  # translated, not yet written: the task writes it (or ends the answer with it)
        self.error: Exception | None = None
        self.short = short

    def __call__(self, chunk: bytes) -> bool:
        if self.error is not None:  # the lane failed on this read: the task raises it
            return False
        try:
            handle = self.handle
            out = handle(chunk)
            if handle.complete:  # the answer's last bytes: they go with its end, in one write
                self.held = out
                return False
            if out and not self.ex.write_now(out):
                self.held = out
                return False
            return True
        except Exception as exc:  # raised in the task (httpx errors end the stream as a cut would)
            self.error = exc
            return False

    def lane(self, piece: bytes) -> bool:
        """The body's ``whole`` (``UpstreamBody.pump``): a read that is one piece, written to the client
        here when ``short`` reads it and the client can take it now; False, nothing read or
        written, for the usual way (``__call__``). For that piece this is ``handle`` and then
        ``Exchange.write_now`` in one call, its checks made before ``short`` moves the reader on."""
        ex = self.ex
        short = self.short
        if short is None or ex.stop_reason is not None or not ex.can_write_now():
            return False  # the answer's end to note (write_now's hook), a meter to ask, a slow client
        direct = ex.direct
        assert direct is not None  # can_write_now said so
        try:
            out = short(piece)
            if out is None:
                return False
            direct.write(ex.outgoing(out))
            return True
        except Exception as exc:  # as in __call__: raised in the task, which the queued piece wakes
            self.error = exc
            return False


async def relay(resp: httpx.Response, ex: Exchange, handle: Handler,
                opening: tuple[int, list[tuple[bytes, bytes]]] | None = None, short: Short | None = None) -> Relayed:
    """Forward ``resp``'s body through ``handle`` until ``handle.complete`` or its end; the bytes of the read
    that completed the answer come back unwritten (``Relayed.last``). ``opening``: the answer's
    status and headers, when it is not started yet: sent with the first read if it is already here.
    ``short``: ``handle``'s short way for a read that is one event (see ``Short``), tried first
    on such reads while pushing."""
    body = stream_of(resp)
    if body is None:  # not this transport's body: pulled, as httpx gives it
        if opening is not None and not ex.started:
            await ex.start(*opening)
        chunks = raw_chunks(resp)
        async for chunk in chunks:
            out = handle(chunk)
            if handle.complete:
                return Relayed(chunks, out)
            if out:
                await ex.write(out)
        return Relayed(chunks, b"")
    if opening is not None:
        try:
            data = body.take()
            first = handle(data) if data else b""
        except BaseException:
            if not ex.started:  # a read that fails finds the answer open, as it always did
                await ex.start(*opening)
            raise
        await ex.open_with(opening[0], opening[1], first)  # the head and the first events: one write
        if handle.complete:
            return Relayed(body.__aiter__(), b"")
    sink = _Pushed(ex, handle, short)
    lane = sink.lane if short is not None and ex.direct is not None else None
    while True:
        data = body.take()  # what came while the task had it (raises a broken body's error)
        if data:
            out = handle(data)
            if handle.complete:
                return Relayed(body.__aiter__(), out)
            if out:
                await ex.write(out)
            continue
        if body.ended:
            return Relayed(body.__aiter__(), b"")
        if ex.can_write_now():
            await body.pump(sink, lane)
            if sink.error is not None:
                error, sink.error = sink.error, None
                raise error
            out, sink.held = sink.held, b""
            if handle.complete:
                return Relayed(body.__aiter__(), out)
            if out:
                await ex.write(out)
        else:
            await body.wait()
