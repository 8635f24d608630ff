"""A small HTTP/1.1 transport for httpx on asyncio + httptools: the gateway's upstream client.

httpx's default transport (httpcore + h11 + anyio) costs about 4 ms of CPU per 50-chunk stream;
most of it is h11's pure-Python chunk parsing and httpcore's bookkeeping (docs/performance.md). This
transport keeps httpx's API (requests, ``httpx.Response``, the exception types) and replaces the
wire: an ``asyncio.Protocol`` per connection, llhttp (via httptools) for parsing, a keep-alive
pool per (scheme, host, port), and a body stream fed straight from ``data_received``.

    transport = HttptoolsTransport(limits=httpx.Limits(...))
    client = httpx.AsyncClient(transport=transport, timeout=...)

What it does not do: HTTP/2, proxies (see :func:`env_proxy_for`; a client that needs one keeps
httpx's own transport), decompression (``content-encoding`` passes through; httpx decodes in
``aiter_bytes``/``aread`` as usual), upgrades.

Rules it keeps:
- a connection goes back to the pool only once its response was read off the wire to its end
  and both sides wanted keep-alive; anything else (an error, a timeout, a cancelled or
  abandoned response, ``HEAD``) closes it;
- a request that fails on a reused connection before any byte of answer came back (the server
  closed an idle connection as we sent) is sent once more on a fresh connection, as browsers
  and Go's client do;
- reading pauses when more than ``_HIGH_WATER`` bytes of body wait unread, and resumes when the
  reader takes them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import httptools
import httpx

__all__ = ["HttptoolsTransport", "env_proxy_for", "raw_chunks", "stream_of"]

_HIGH_WATER = 1 << 20  # unread body bytes that pause reading from the socket
# the most bytes of a read around a body piece that is all it brought: a chunk's size line (up to
# 8 hex digits) and its two CRLFs, with room for the last chunk's "0\r\n\r\n" in the same read
_CHUNK_FRAMING = 17
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_CHUNKED = b"chunked"


def env_proxy_for(url: str | httpx.URL) -> str | None:
    """The proxy URL httpx would take from the environment (``HTTPS_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``, …) for ``url``, or None when it would connect directly."""
    target = httpx.URL(url)
    try:
        from httpx._utils import URLPattern, get_environment_proxies  # the rules httpx itself applies
    except ImportError:  # pragma: no cover - a future httpx moved them: assume any proxy applies
        import urllib.request

        env = urllib.request.getproxies()
        scheme = target.scheme
        return env.get(scheme) or env.get("all") or None
    mounts = sorted((URLPattern(k), v) for k, v in get_environment_proxies().items())
    for pattern, proxy in mounts:
        if pattern.matches(target):
            return proxy
    return None


# --------------------------------------------------------------------------- errors


class _OutOfStep(Exception):
    """A response began while no request was waiting for one."""


class _Retry(Exception):
    """The server closed a reused connection before answering: safe to send again."""


# --------------------------------------------------------------------------- the body stream


class _Body(httpx.AsyncByteStream):
    """A response body fed by the connection's parser callbacks and read by one consumer."""

    __slots__ = ("_conn", "_chunks", "_size", "_done", "_error", "_waiter", "_timeout", "_request",
                 "_paused", "_loop", "_timer", "_deadline", "sink", "whole")

    def __init__(self, conn: _Connection, timeout: float | None, request: httpx.Request) -> None:
        self._conn: _Connection | None = conn
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

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()
        w = self._waiter
        if w is not None and self.sink is None and not w.done():
            w.set_result(None)

    def flush(self) -> None:
        """The end of a read (or of the body) while ``pump`` runs: what it brought, to the sink."""
        chunks = self._chunks
        sink = self.sink
        if not chunks or sink is None:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if self._paused:
            self._paused = False
            if self._conn is not None:
                self._conn.resume_reading()
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
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = []
            self._size = 0
            if self._paused:
                self._paused = False
                if self._conn is not None:
                    self._conn.resume_reading()
            return data
        if self._done and self._error is not None:
            raise self._error
        return b""

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
        if fut.result() is _TIMED_OUT:
            raise httpx.ReadTimeout("The upstream sent nothing within the read timeout.", request=self._request)

    def _on_timer(self) -> None:
        """The read timer fired: expire the waiting reader if its deadline passed, else re-arm
        for the deadline the latest wait set (none waiting: the next wait arms a new timer)."""
        self._timer = None
        w = self._waiter
        if w is None or w.done() or self._done:
            return
        if self._loop.time() >= self._deadline:
            w.set_result(_TIMED_OUT)
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


def stream_of(resp: httpx.Response) -> _Body | None:
    """``resp``'s body when this transport reads it and nobody has started to (marked consumed:
    the caller reads it with ``take``/``wait``/``pump`` or iterates it); None otherwise."""
    body: Any = resp.stream  # the transport's own answer (Backend.open), or httpx's wrapper of it
    if type(body) is not _Body:
        body = getattr(body, "_stream", None)
    if type(body) is _Body and not resp.is_stream_consumed and not resp.is_closed:
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


_TIMED_OUT: Any = object()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(_TIMED_OUT)


# --------------------------------------------------------------------------- one connection


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes requests, parses responses, one exchange at a time."""

    def __init__(self, pool: _Pool, key: tuple[bytes, bytes, int], loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = True  # holds one of the pool's connection slots until forgotten
        self.reused = False
        self.idle_since = 0.0
        self.active = False  # an exchange is in progress
        self.reading_paused = False
        self.read_size = 0  # of the read being parsed (on_body: is a piece all it brought?)
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.request: httpx.Request | None = None
        self.head_waiter: asyncio.Future[httpx.Response] | None = None
        self.body: _Body | None = None
        self.read_timeout: float | None = None
        self.no_body = False  # HEAD
        self.close_after = False  # the request said Connection: close
        self.got_bytes = False
        self.informational = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.close_delimited = False

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active:  # bytes nobody asked for: the connection is out of step
            self.abort()
            return
        self.got_bytes = True
        self.read_size = len(data)
        try:
            self.parser.feed_data(data)
            body = self.body
            if body is not None and body.sink is not None:
                body.flush()  # one read, one hand-over (the body's end flushes in finish)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
            if cause is not None and not isinstance(cause, Exception):
                raise cause from exc
            if self.active:
                self._broken(httpx.RemoteProtocolError(f"The upstream sent malformed HTTP ({exc}).",
                                                       request=self.request))
            else:  # bytes after the end of a response
                self.abort()

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.active:
            if self.body is not None and self.close_delimited and exc is None:
                body, self.body = self.body, None
                self.active = False
                body.finish()  # a body without length ends when the connection does
            else:
                what = "before the response was complete" if self.got_bytes else "without sending a response"
                reason = f" ({exc})" if exc else ""
                self._broken(httpx.RemoteProtocolError(
                    f"The upstream closed the connection {what}{reason}.", request=self.request),
                    retry=self.reused and not self.got_bytes)
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)  # the writer sees ``closed`` and goes on to read the error from the head waiter

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    # ---- httptools callbacks

    def on_message_begin(self) -> None:
        if not self.active:
            raise _OutOfStep()
        self.headers = []
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.informational = True  # 100 Continue, 103 Early Hints: the real answer follows
            return
        self.informational = False
        self.status = status
        te = cl = False
        rows = []  # what httpx.Headers would hold, built in the loop that reads them anyway
        for name, value in self.headers:
            n = name.lower()
            rows.append((name, n, value))
            if n == b"transfer-encoding":
                te = value.lower().rstrip().endswith(_CHUNKED)
                if not te:
                    self.close_delimited = True
            elif n == b"content-length":
                cl = True
        if not te and not cl and status not in (204, 304) and not self.no_body:
            self.close_delimited = True
        body = self.body = _Body(self, self.read_timeout, self.request)  # type: ignore[arg-type]
        waiter = self.head_waiter
        self.head_waiter = None
        if waiter is not None and not waiter.done():
            version = b"HTTP/1.0" if self.parser.get_http_version() == "1.0" else b"HTTP/1.1"
            waiter.set_result(httpx.Response(
                status, headers=headers_of(rows), stream=body,
                extensions={"http_version": version, "reason_phrase": self.reason.strip()},
            ))
        if self.no_body:  # HEAD: llhttp cannot be told to skip the body, so this connection ends here
            self.body = None
            self.active = False
            body.finish()
            self.close()

    def on_body(self, data: bytes) -> None:
        body = self.body
        if body is None:
            return
        whole = body.whole
        # a piece that is all this read brought but for its chunk framing, nothing queued before it
        if whole is not None and self.read_size - len(data) <= _CHUNK_FRAMING and not body._chunks and whole(data):
            if body._timeout is not None:  # taken: the read timeout counts from now, as flush would
                body._deadline = self.loop.time() + body._timeout
            return
        body.feed(data)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        body = self.body
        if body is None:  # HEAD, already finished
            return
        keep = self.parser.should_keep_alive() and not self.close_after
        self.body = None
        self.active = False
        body.finish()
        if keep:
            self._reset_exchange()
            self.pool.release(self)
        else:
            self.close()

    # ---- used by the transport

    def pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def is_usable(self) -> bool:
        t = self.transport
        return not self.closed and t is not None and not t.is_closing()

    def close(self) -> None:
        """Close after flushing what is written (a finished exchange)."""
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (an unfinished exchange)."""
        was_active = self.active
        self.closed = True
        self.pool.forget(self)
        t = self.transport
        if t is not None and not t.is_closing():
            t.abort()
        if was_active:
            self._broken(httpx.StreamClosed(), retry=False)

    def _broken(self, exc: BaseException, retry: bool = False) -> None:
        if not self.active:
            return
        self.active = False
        waiter, body = self.head_waiter, self.body
        self.head_waiter = None
        self.body = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Retry() if retry else exc)
            waiter.exception()  # raised to whoever awaits it; never logged as unretrieved if nobody does
        if body is not None:
            body.fail(exc)
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    async def send(self, request: httpx.Request, head: bytes, body: bytes | None,
                   timeouts: dict[str, float | None]) -> httpx.Response:
        """Write the request and wait for the response head; the body streams afterwards."""
        transport = self.transport
        if transport is None or not self.is_usable():
            raise _Retry()
        self.active = True
        self.request = request
        self.read_timeout = timeouts.get("read")
        self.no_body = request.method == "HEAD"
        waiter: asyncio.Future[httpx.Response] = self.loop.create_future()
        self.head_waiter = waiter
        if body is not None:
            if len(body) < 65536:
                transport.write(head + body)  # one write, one segment
            else:
                transport.write(head)
                transport.write(body)
        else:
            transport.write(head)
            await self._write_stream(request, timeouts.get("write"))
        timer = None
        if self.read_timeout is not None:
            timer = self.loop.call_later(self.read_timeout, _expire, waiter)
        try:
            result = await waiter
        finally:
            if timer is not None:
                timer.cancel()
        if result is _TIMED_OUT:
            self.abort()
            raise httpx.ReadTimeout("The upstream did not answer within the read timeout.", request=request)
        return result

    async def _write_stream(self, request: httpx.Request, timeout: float | None) -> None:
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        transport = self.transport
        assert transport is not None
        async for part in request.stream:  # type: ignore[union-attr]
            if not part:
                continue
            if self.closed:
                break  # the head waiter holds the error
            transport.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if self._write_paused:
                await self._wait_drain(request, timeout)
        if chunked and not self.closed:
            transport.write(b"0\r\n\r\n")

    async def _wait_drain(self, request: httpx.Request, timeout: float | None) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()
        self._drain = fut
        timer = self.loop.call_later(timeout, _expire, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._drain = None
            if timer is not None:
                timer.cancel()
        if fut.result() is _TIMED_OUT:
            raise httpx.WriteTimeout("The upstream did not take the request body in time.", request=request)


# --------------------------------------------------------------------------- the pool


class _Pool:
    """Idle keep-alive connections per (scheme, host, port), and a cap on open connections."""

    def __init__(self, max_connections: int | None, max_keepalive: int | None, expiry: float | None) -> None:
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive
        self.expiry = expiry
        self.idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self.idle_count = 0
        self.open = 0  # connections holding a slot: connecting, active or idle
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def take_idle(self, key: tuple[bytes, bytes, int], now: float) -> _Connection | None:
        conns = self.idle.get(key)
        while conns:
            conn = conns.pop()
            self.idle_count -= 1
            if conn.is_usable() and (self.expiry is None or now - conn.idle_since < self.expiry):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def reserve(self, key: tuple[bytes, bytes, int], timeout: float | None) -> None:
        """Take a slot for a new connection, closing another host's idle one or waiting if full."""
        while self.max_connections is not None and self.open >= self.max_connections:
            if self.idle_count:
                self._close_oldest_idle()
                continue
            fut: asyncio.Future[None] = self.loop.create_future()  # type: ignore[union-attr]
            self.waiters.append(fut)
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except BaseException as exc:
                if fut.done() and not fut.cancelled():
                    self._wake()  # we were woken but leave: pass the turn on
                elif fut in self.waiters:
                    self.waiters.remove(fut)
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(
                        "Too many upstream connections are open and none came free in time; "
                        "raise the connection limit or send fewer requests at once.") from None
                raise
            conn = self.take_idle(key, self.loop.time())  # type: ignore[union-attr]
            if conn is not None:  # someone released one for this host meanwhile
                raise _Reuse(conn)
        self.open += 1

    def forget(self, conn: _Connection) -> None:
        if conn.counted:
            conn.counted = False
            self.open -= 1
            conns = self.idle.get(conn.key)
            if conns and conn in conns:
                conns.remove(conn)
                self.idle_count -= 1
            self._wake()

    def release(self, conn: _Connection) -> None:
        if self.closed or (self.max_keepalive is not None and self.idle_count >= self.max_keepalive):
            conn.close()
            return
        conn.reused = False
        conn.idle_since = conn.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)
        self.idle_count += 1
        if self.expiry is not None and self.sweeper is None:
            self.sweeper = conn.loop.call_later(self.expiry, self._sweep)
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _close_oldest_idle(self) -> None:
        oldest: _Connection | None = None
        for conns in self.idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is not None:
            oldest.close()

    def _sweep(self) -> None:
        self.sweeper = None
        if self.loop is None or self.expiry is None:
            return
        now = self.loop.time()
        soonest: float | None = None
        for conns in list(self.idle.values()):
            for conn in list(conns):
                age = now - conn.idle_since
                if age >= self.expiry:
                    conn.close()
                else:
                    soonest = age if soonest is None else max(soonest, age)
        if soonest is not None:
            self.sweeper = self.loop.call_later(self.expiry - soonest, self._sweep)

    def close_all(self) -> None:
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conns in list(self.idle.values()):
            for conn in list(conns):
                conn.close()
        self.idle.clear()
        self.idle_count = 0


class _Reuse(Exception):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn


# --------------------------------------------------------------------------- the transport


class HttptoolsTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for httpx over asyncio and httptools (see the module docstring).

    ``verify``: True (certifi's roots, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` with ``trust_env``,
    as httpx does), False, or an ``ssl.SSLContext``. ``limits``: ``max_connections`` caps open
    connections (a request waits up to the pool timeout for one), ``max_keepalive_connections``
    caps idle ones, ``keepalive_expiry`` closes idle ones after that many seconds.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool = True, trust_env: bool = True,
                 limits: httpx.Limits = httpx.Limits()) -> None:
        self._verify = verify
        self._trust_env = trust_env
        self._ssl: ssl.SSLContext | None = None
        self._limits = limits
        self._pool = self._new_pool()
        self._closed = False

    def _new_pool(self) -> _Pool:
        lim = self._limits
        return _Pool(lim.max_connections, lim.max_keepalive_connections, lim.keepalive_expiry)

    async def _ssl_context(self, loop: asyncio.AbstractEventLoop) -> ssl.SSLContext:
        if self._ssl is None:
            v = self._verify
            if isinstance(v, ssl.SSLContext):
                self._ssl = v
            else:  # loading the CA bundle takes 30-40 ms: once, on first https use, off the loop
                self._ssl = await loop.run_in_executor(
                    None, lambda: httpx.create_ssl_context(verify=v, trust_env=self._trust_env))
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("This transport is closed.")
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool.loop is not loop:
            if pool.loop is not None:  # used from a new event loop: the old connections belong to the old one
                pool = self._pool = self._new_pool()
            pool.loop = loop
        url = request.url
        scheme = url.raw_scheme
        port = url.port or _DEFAULT_PORTS.get(scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(
                f"Patchbay's upstream client speaks http and https, not {url.scheme!r}.", request=request)
        key = (scheme, url.raw_host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        head, close_after = _serialize_head(request)
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None

        attempts = 0
        while True:
            attempts += 1
            conn = pool.take_idle(key, loop.time())
            if conn is None:
                try:
                    await pool.reserve(key, timeouts.get("pool"))
                except _Reuse as r:
                    conn = r.conn
                else:
                    conn = await self._connect(loop, pool, key, url, request, timeouts.get("connect"))
            conn.close_after = close_after
            try:
                return await conn.send(request, head, body, timeouts)
            except _Retry:
                conn.abort()
                if body is None or attempts >= 3:
                    raise httpx.RemoteProtocolError(
                        "The upstream closed the connection without answering.", request=request) from None
                continue
            except BaseException:
                conn.abort()  # cancelled, timed out or broken: never back into the pool
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, pool: _Pool, key: tuple[bytes, bytes, int],
                       url: httpx.URL, request: httpx.Request, timeout: float | None) -> _Connection:
        host = url.host
        conn = _Connection(pool, key, loop)  # holds the slot reserve() took
        try:
            async with asyncio.timeout(timeout):
                tls = await self._ssl_context(loop) if key[0] == b"https" else None
                await loop.create_connection(lambda: conn, host, key[2], ssl=tls,
                                             server_hostname=host if tls is not None else None)
        except BaseException as exc:
            pool.forget(conn)  # gives the slot back (once, whether or not connection_lost came first)
            conn.closed = True
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"Connecting to {host}:{key[2]} timed out.", request=request) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
                raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
            raise
        return conn

    async def aclose(self) -> None:
        self._closed = True
        self._pool.close_all()

    async def __aenter__(self) -> HttptoolsTransport:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None = None, exc_value: BaseException | None = None,
                        traceback: TracebackType | None = None) -> None:
        await self.aclose()


def _serialize_head(request: httpx.Request) -> tuple[bytes, bool]:
    """The request line and headers, and whether the request asks to close the connection after."""
    url = request.url
    parts = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
    has_host = close_after = False
    for k, v in request.headers.raw:
        lower = k.lower()
        if lower == b"host":
            has_host = True
        elif lower == b"connection" and v.lower() == b"close":
            close_after = True
        if b"\n" in v or b"\r" in v or b"\n" in k or b"\r" in k or b":" in k:
            raise httpx.LocalProtocolError(
                f"The header {k.decode('latin-1')!r} has a line break or colon where none may be; "
                "fix it in the backend's headers.", request=request)
        parts += (k, b": ", v, b"\r\n")
    if not has_host:
        parts += (b"Host: ", url.netloc, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), close_after


def headers_of(rows: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    """``httpx.Headers`` holding ``rows`` (name as sent, name lowercased, value; all bytes) as they
    are: what ``httpx.Headers([(name, value), ...])`` makes, without two calls a header. An
    upstream answer's headers are built this way (an Anthropic answer has ~20), and the upstream
    request's (app/proxy/upstream_request.py). It fills httpx's private fields, so it does so only
    where a check at import found the installed httpx laid out as expected; else httpx's constructor."""
    if not FAST_HEADERS:
        return httpx.Headers([(name, value) for name, _, value in rows])
    return _filled(rows)


def _filled(rows: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    h = httpx.Headers.__new__(httpx.Headers)
    h._list = rows
    h._encoding = None
    return h


def _filled_headers_hold() -> bool:
    """``_filled`` gives what the installed httpx's constructor gives."""
    pairs = [(b"Content-Type", b"text/plain"), (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2")]
    try:
        ours, real = _filled([(k, k.lower(), v) for k, v in pairs]), httpx.Headers(pairs)
        return bool(ours.raw == real.raw and ours.multi_items() == real.multi_items() and ours == real
                    and ours.encoding == real.encoding and ours.get("set-cookie") == real.get("set-cookie"))
    except Exception:  # another httpx: its own constructor, always right
        return False


FAST_HEADERS = _filled_headers_hold()
