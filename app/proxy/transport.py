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
- reading pauses when more than ``upstream_body.HIGH_WATER`` bytes of body wait unread, and
  resumes when the reader takes them.
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType

import httptools
import httpx

from app.proxy.upstream_body import TIMED_OUT, UpstreamBody, expire
from app.proxy.upstream_pool import Pool

__all__ = ["HttptoolsTransport", "env_proxy_for", "headers_of"]

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


# --------------------------------------------------------------------------- one connection


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes requests, parses responses, one exchange at a time."""

    def __init__(self, pool: Pool[_Connection], key: tuple[bytes, bytes, int], loop: asyncio.AbstractEventLoop) -> None:
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
        self.body: UpstreamBody | None = None
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
        body = self.body = UpstreamBody(self, self.read_timeout, self.request)  # type: ignore[arg-type]
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
        if body is not None:
            body.offer(data, self.read_size - len(data) <= _CHUNK_FRAMING)

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
            timer = self.loop.call_later(self.read_timeout, expire, waiter)
        try:
            result = await waiter
        finally:
            if timer is not None:
                timer.cancel()
        if result is TIMED_OUT:
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
        timer = self.loop.call_later(timeout, expire, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._drain = None
            if timer is not None:
                timer.cancel()
        if fut.result() is TIMED_OUT:
            raise httpx.WriteTimeout("The upstream did not take the request body in time.", request=request)


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

    def _new_pool(self) -> Pool[_Connection]:
        lim = self._limits
        return Pool(lim.max_connections, lim.max_keepalive_connections, lim.keepalive_expiry)

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
                conn = await pool.reserve(key, timeouts.get("pool"))  # or one released meanwhile
                if conn is None:
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

    async def _connect(self, loop: asyncio.AbstractEventLoop, pool: Pool[_Connection], key: tuple[bytes, bytes, int],
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
