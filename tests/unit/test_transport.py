"""The httptools transport against real loopback servers: the fake upstreams, a tiny scripted
server for wire oddities, and a TLS server with a certificate made at test time."""

from __future__ import annotations

import asyncio
import datetime
import gc
import gzip
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import BackendConfig, GatewaySettings
from app.host.secrets import resolve_backend_key
from app.proxy.backends.base import Backend
from app.proxy.transport import HttptoolsTransport, env_proxy_for
from app.proxy.upstream_body import HIGH_WATER, raw_chunks
from tests.fakes.chunks import anthropic_text_events, openai_text_chunks
from tests.fakes.upstreams import AnthropicStream, Drop, FakeUpstream, OpenAIStream, Raw

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows
    uvloop = None  # type: ignore[assignment]

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])
Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs an async test body on the default loop and on uvloop (the gateway's)."""

    def runner(fn: Callable[[], Awaitable[Any]]) -> Any:
        if request.param == "uvloop":
            return uvloop.run(fn())
        return asyncio.run(fn())

    return runner


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def client(**kw: Any) -> httpx.AsyncClient:
    timeout = kw.pop("timeout", 5.0)
    return httpx.AsyncClient(transport=HttptoolsTransport(**kw), timeout=timeout)


def stream_bytes(chunks: list[Any], done: bool = True) -> bytes:
    return b"".join(OpenAIStream.frame(c) for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


CHUNKS = openai_text_chunks("The quick brown fox — jumps over the lazy dog. " * 6, pieces=40)
BODY = stream_bytes(CHUNKS)


async def post_stream(c: httpx.AsyncClient, url: str) -> tuple[httpx.Response, bytes]:
    async with c.stream("POST", url + "/v1/chat/completions", json={"stream": True}) as r:
        data = b"".join([part async for part in r.aiter_raw()])
    return r, data


# --------------------------------------------------------------------------- bodies and reuse


@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
def test_bodies_arrive_byte_exact_and_keep_alive_reuses_one_connection(run: Runner, up: FakeUpstream,
                                                                       framing: str) -> None:
    for _ in range(3):
        up.enqueue(OpenAIStream(CHUNKS, split="awkward", framing=framing))

    async def go() -> None:
        async with client() as c:
            for _ in range(3):
                r, data = await post_stream(c, up.url)
                assert r.status_code == 200
                assert r.headers["content-type"] == "text/event-stream"
                assert r.http_version == "HTTP/1.1" and r.reason_phrase == "OK"
                assert data == BODY

    run(go)
    # close-delimited bodies end with the connection, so each needs a new one
    assert up.connections == (3 if framing == "close" else 1)
    assert [r.outcome for r in up.requests] == ["sent"] * 3


def test_anthropic_stream_split_awkwardly(run: Runner, up: FakeUpstream) -> None:
    events = anthropic_text_events("Grüße, 世界! " * 10, pieces=25)
    up.enqueue(AnthropicStream(events, split=1))
    expected = b"".join(AnthropicStream.frame(e) for e in events)

    async def go() -> bytes:
        async with client() as c:
            return (await post_stream(c, up.url))[1]

    assert run(go) == expected


def test_no_body_answers_do_not_wait_for_one_and_keep_the_connection(run: Runner, up: FakeUpstream) -> None:
    # 304 and 204 never have a body, whatever their headers say; a JSON answer in between
    up.enqueue(Raw(304, headers={"content-length": "12", "etag": '"x"'}))
    up.enqueue(Raw(204, headers={"transfer-encoding": "chunked"}))
    up.enqueue(Raw(200, headers={"content-type": "application/json"}, body=b'{"ok": true}'))

    async def go() -> None:
        async with client(timeout=2.0) as c:
            r = await c.post(up.url + "/a", content=b"{}")
            assert (r.status_code, r.content, r.headers["etag"]) == (304, b"", '"x"')
            r = await c.post(up.url + "/b", content=b"{}")
            assert (r.status_code, r.content) == (204, b"")
            r = await c.post(up.url + "/c", content=b"{}")
            assert r.json() == {"ok": True}
            r = await c.get(up.url + "/v1/models")
            assert r.json()["data"][0]["id"] == "fake-model"

    run(go)
    assert up.connections == 1


def test_head_answer_has_no_body_even_with_a_length(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(Raw(200, headers={"content-length": "100", "x-size": "100"}), match=lambda r: r.method == "HEAD")

    async def go() -> None:
        async with client(timeout=2.0) as c:
            r = await c.head(up.url + "/file")
            assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "100")
            r = await c.get(up.url + "/v1/models")  # the connection after a HEAD is not trusted
            assert r.status_code == 200

    run(go)
    assert [r.method for r in up.requests] == ["HEAD", "GET"]


def test_server_connection_close_header_is_honoured(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(Raw(200, headers={"connection": "close"}, body=b"bye", framing="length"))
    up.enqueue(Raw(200, body=b"hello"))

    async def go() -> None:
        async with client() as c:
            assert (await c.post(up.url + "/x", content=b"1")).content == b"bye"
            assert (await c.post(up.url + "/x", content=b"2")).content == b"hello"

    run(go)
    assert up.connections == 2


def test_content_encoding_passes_through_undecoded(run: Runner, up: FakeUpstream) -> None:
    packed = gzip.compress(b"x" * 5000)
    up.enqueue(Raw(200, headers={"content-encoding": "gzip"}, body=packed, split=100))

    async def go() -> None:
        async with client() as c:
            async with c.stream("POST", up.url + "/x", content=b"{}") as r:
                raw = b"".join([p async for p in r.aiter_raw()])
            assert r.headers["content-encoding"] == "gzip"
            assert raw == packed

    run(go)


def test_request_bodies_whole_large_and_streamed(run: Runner, up: FakeUpstream) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: head and body go out as two writes

    async def parts() -> Any:
        for i in range(5):
            await asyncio.sleep(0)
            yield b"part-%d;" % i

    async def go() -> None:
        async with client() as c:
            r = await c.post(up.url + "/big", content=big, headers={"content-type": "application/octet-stream"})
            assert r.status_code == 200
            r = await c.post(up.url + "/streamed", content=parts())
            assert r.status_code == 200
            r = await c.get(up.url + "/v1/models?x=1&y=%20")
            assert r.status_code == 200

    run(go)
    big_req, streamed, models = up.requests
    assert big_req.body == big and big_req.headers["content-length"] == str(len(big))
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.body == b"part-0;part-1;part-2;part-3;part-4;"
    assert models.query == "x=1&y=%20"
    assert models.headers["host"] == f"127.0.0.1:{up.port}"
    assert up.connections == 1


def test_expect_100_continue_is_skipped(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(Raw(200, body=b"final"))

    async def go() -> None:
        async with client() as c:
            r = await c.post(up.url + "/x", content=b"{}", headers={"expect": "100-continue"})
            assert (r.status_code, r.content) == (200, b"final")

    run(go)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_upstream_cut_mid_body_raises_remote_protocol_error(run: Runner, up: FakeUpstream, framing: str) -> None:
    if framing == "length":  # a length that promises more than is sent
        up.enqueue(Raw(200, headers={"content-length": "1000"}, body=b"x" * 300, cut=True))
    else:
        up.enqueue(OpenAIStream(CHUNKS, cut_after=5, framing=framing))
    up.enqueue(OpenAIStream(CHUNKS))

    async def go() -> None:
        async with client() as c:
            got = bytearray()
            with pytest.raises(httpx.RemoteProtocolError, match="closed the connection"):
                async with c.stream("POST", up.url + "/v1/chat/completions", content=b"{}") as r:
                    async for part in r.aiter_raw():
                        got += part
            assert got  # what came before the cut was delivered
            _, data = await post_stream(c, up.url)  # and the client goes on working
            assert data == BODY

    run(go)
    assert up.connections == 2


def test_upstream_closing_without_an_answer(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(Drop())

    async def go() -> None:
        async with client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await c.post(up.url + "/x", content=b"{}")

    run(go)


def test_read_timeouts_before_the_head_and_mid_body(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(OpenAIStream(CHUNKS[:3], ttfb_s=1.0))
    up.enqueue(OpenAIStream(CHUNKS[:3], delay_s=1.0))

    async def go() -> None:
        async with client(timeout=httpx.Timeout(5.0, read=0.15)) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.post(up.url + "/v1/chat/completions", content=b"{}")
            with pytest.raises(httpx.ReadTimeout):
                async with c.stream("POST", up.url + "/v1/chat/completions", content=b"{}") as r:
                    async for _ in r.aiter_raw():
                        pass

    run(go)
    assert up.connections == 2  # a timed-out connection is never reused


def test_a_stream_outlasting_the_read_timeout_in_short_gaps_arrives_whole(run: Runner, up: FakeUpstream) -> None:
    """The read timeout is per gap, not per body: one timer per body, re-armed when it fires
    early, must neither cut a live stream nor outlive it (and raw_chunks reads the same bytes)."""
    up.enqueue(OpenAIStream(CHUNKS[:12], delay_s=0.05))  # ~0.6 s in all, 0.05 s gaps
    up.enqueue(OpenAIStream(CHUNKS[:12], delay_s=0.05))
    up.enqueue(OpenAIStream(CHUNKS[:3], delay_s=0.6))  # then a gap longer than the timeout

    async def go() -> None:
        async with client(timeout=httpx.Timeout(5.0, read=0.2)) as c:
            for reader in (lambda r: r.aiter_raw(), raw_chunks):
                async with c.stream("POST", up.url + "/v1/chat/completions", content=b"{}") as r:
                    data = b"".join([part async for part in reader(r)])
                assert data == stream_bytes(CHUNKS[:12])
                assert [h for h in _pending_timers(asyncio.get_running_loop()) if "UpstreamBody" in repr(h)] == []
            with pytest.raises(httpx.ReadTimeout):
                async with c.stream("POST", up.url + "/v1/chat/completions", content=b"{}") as r:
                    async for _ in raw_chunks(r):
                        pass

    run(go)


def test_connect_refused_raises_connect_error(run: Runner) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def go() -> None:
        async with client() as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://127.0.0.1:{port}/")

    run(go)


def test_connect_timeout_covers_the_tls_handshake(run: Runner) -> None:
    async def go() -> None:
        accepted: list[asyncio.StreamWriter] = []
        silent = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)  # never speaks TLS
        port = silent.sockets[0].getsockname()[1]
        try:
            async with client(timeout=httpx.Timeout(5.0, connect=0.2)) as c:
                with pytest.raises(httpx.ConnectTimeout):
                    await c.get(f"https://127.0.0.1:{port}/")
        finally:
            for w in accepted:
                w.close()
            silent.close()

    run(go)


def test_unsupported_scheme(run: Runner) -> None:
    async def go() -> None:
        transport = HttptoolsTransport()
        with pytest.raises(httpx.UnsupportedProtocol):
            await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))

    run(go)


def test_malformed_response_raises_remote_protocol_error(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(Raw(200, headers={"transfer-encoding": "chunked"}, body=b"zz\r\nnot hex\r\n", framing="length"))

    async def go() -> None:
        async with client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await c.post(up.url + "/x", content=b"{}")

    run(go)


# --------------------------------------------------------------------------- cancellation


def _pending_timers(loop: asyncio.AbstractEventLoop) -> list[Any]:
    scheduled = getattr(loop, "_scheduled", None)  # the default loop's timer heap; uvloop keeps its own
    return [h for h in scheduled or () if not h.cancelled()]


def test_cancelling_mid_stream_closes_the_connection(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(OpenAIStream(CHUNKS, delay_s=0.02))

    async def go() -> None:
        async with client() as c:
            first = asyncio.Event()

            async def consume() -> None:
                async with c.stream("POST", up.url + "/v1/chat/completions", content=b"{}") as r:
                    async for _ in r.aiter_raw():
                        first.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(300):  # the fake notices when its next writes fail
                if up.requests[0].outcome != "pending":
                    break
                await asyncio.sleep(0.01)
            assert up.requests[0].outcome == "peer-closed"
            assert asyncio.all_tasks() == {asyncio.current_task()}
            assert _pending_timers(asyncio.get_running_loop()) == []
            _, data = await post_stream(c, up.url)  # a fresh connection, not the cancelled one
            assert data.endswith(b"data: [DONE]\n\n")

    run(go)
    assert up.connections == 2


def test_cancelling_while_waiting_for_the_head(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(OpenAIStream(CHUNKS, ttfb_s=0.3))

    async def go() -> None:
        async with client() as c:
            task = asyncio.create_task(c.post(up.url + "/v1/chat/completions", content=b"{}"))
            up_seen = asyncio.get_running_loop().run_in_executor(None, up.wait_for_requests, 1)
            await up_seen
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _pending_timers(asyncio.get_running_loop()) == []
            r = await c.get(up.url + "/v1/models")
            assert r.status_code == 200

    run(go)
    assert up.connections == 2


def test_abandoning_a_response_unread_closes_it(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(OpenAIStream(CHUNKS, delay_s=0.01))

    async def go() -> None:
        async with client() as c:
            async with c.stream("POST", up.url + "/v1/chat/completions", content=b"{}") as r:
                assert r.status_code == 200
            with pytest.raises(httpx.StreamClosed):
                await r.aread()
            assert (await c.get(up.url + "/v1/models")).status_code == 200

    run(go)
    assert up.connections == 2


# --------------------------------------------------------------------------- the pool


def test_many_concurrent_streams(run: Runner, up: FakeUpstream) -> None:
    up.set_default(OpenAIStream(CHUNKS, split="awkward"))

    async def go() -> None:
        async with client() as c:
            results = await asyncio.gather(*(post_stream(c, up.url) for _ in range(40)))
            assert all(data == BODY for _, data in results)
            # the connections went back to the pool: a second wave opens no new ones
            before = up.connections
            results = await asyncio.gather(*(post_stream(c, up.url) for _ in range(before)))
            assert all(data == BODY for _, data in results)
            assert up.connections == before

    run(go)
    assert up.connections <= 40


def test_max_connections_caps_and_queues(run: Runner, up: FakeUpstream) -> None:
    up.set_default(OpenAIStream(CHUNKS, delay_s=0.002))

    async def go() -> None:
        async with client(limits=httpx.Limits(max_connections=3, max_keepalive_connections=3)) as c:
            results = await asyncio.gather(*(post_stream(c, up.url) for _ in range(12)))
            assert all(data == BODY for _, data in results)

    run(go)
    assert up.connections == 3


def test_pool_timeout_when_every_connection_is_busy(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(OpenAIStream(CHUNKS[:3], ttfb_s=0.5))

    async def go() -> None:
        async with client(limits=httpx.Limits(max_connections=1), timeout=httpx.Timeout(5.0, pool=0.1)) as c:
            slow = asyncio.create_task(c.post(up.url + "/v1/chat/completions", content=b"{}"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await c.get(up.url + "/v1/models")
            assert (await slow).status_code == 200

    run(go)


def test_idle_connections_expire(run: Runner, up: FakeUpstream) -> None:
    async def go() -> None:
        async with client(limits=httpx.Limits(keepalive_expiry=0.1)) as c:
            assert (await c.get(up.url + "/v1/models")).status_code == 200
            assert (await c.get(up.url + "/v1/models")).status_code == 200
            assert up.connections == 1
            await asyncio.sleep(0.3)
            assert (await c.get(up.url + "/v1/models")).status_code == 200

    run(go)
    assert up.connections == 2


class Scripted:
    """A loopback server that answers the n-th request on its k-th connection with
    ``script[k][n]`` (raw bytes; None closes the connection without an answer)."""

    def __init__(self, script: list[list[bytes | None]]) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        replies = self.script[self.connections]
        self.connections += 1
        try:
            for reply in replies:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                self.requests += 1
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
            await reader.read()  # keep the connection until the client drops it
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def close(self) -> None:
        """Stop; the client closed its connections already, so the handlers are ending."""
        assert self.server is not None
        self.server.close()
        for _ in range(100):
            if not self.handlers:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("a connection to the scripted server stayed open after its client closed")


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_a_reused_connection_closed_by_the_server_is_retried_once(run: Runner) -> None:
    async def go() -> None:
        srv = Scripted([[OK, None], [OK]])  # the first connection dies on its second request
        url = await srv.start()
        try:
            async with client() as c:
                assert (await c.post(url, content=b"1")).content == b"ok"
                assert (await c.post(url, content=b"2")).content == b"ok"
        finally:
            await srv.close()
        assert (srv.connections, srv.requests) == (2, 3)

    run(go)


def test_informational_answers_are_skipped(run: Runner) -> None:
    async def go() -> None:
        early = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"
        srv = Scripted([[early + b"HTTP/1.1 100 Continue\r\n\r\n" + OK, OK]])
        url = await srv.start()
        try:
            async with client() as c:
                r = await c.get(url)
                assert (r.status_code, r.content, "link" in r.headers) == (200, b"ok", False)
                assert (await c.get(url)).content == b"ok"
        finally:
            await srv.close()
        assert srv.connections == 1

    run(go)


def test_bytes_after_a_response_drop_the_connection(run: Runner) -> None:
    async def go() -> None:
        srv = Scripted([[OK + b"HTTP/1.1 200 OK\r\n"], [OK]])
        url = await srv.start()
        try:
            async with client() as c:
                assert (await c.get(url)).content == b"ok"
                await asyncio.sleep(0.05)
                assert (await c.get(url)).content == b"ok"
        finally:
            await srv.close()
        assert srv.connections == 2

    run(go)


def test_a_slow_reader_pauses_the_socket(run: Runner, up: FakeUpstream) -> None:
    big = bytes(range(251)) * 20_000  # ~5 MB
    up.enqueue(Raw(200, body=big, split=65536))

    async def go() -> None:
        transport = HttptoolsTransport()
        req = httpx.Request("POST", up.url + "/big", content=b"{}")
        resp = await transport.handle_async_request(req)
        await asyncio.sleep(0.3)  # not reading: the buffer must stop near the high-water mark
        buffered = resp.stream._size  # type: ignore[attr-defined]
        assert HIGH_WATER <= buffered < HIGH_WATER + 512 * 1024
        got = b"".join([p async for p in resp.aiter_raw()])
        assert got == big
        await transport.aclose()

    run(go)


# --------------------------------------------------------------------------- TLS


def _tls_material(tmp: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Patchbay test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


def test_tls_with_sni_keep_alive_and_verification(run: Runner, tmp_path: Path) -> None:
    ca_pem, cert_pem, key_pem = _tls_material(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_pem, key_pem)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    body = b"data: hello\n\n" * 50
    reply = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
             + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
             + b"0\r\n\r\n")

    async def go() -> None:
        srv = Scripted([[reply, reply], [reply]])
        srv.server = await asyncio.start_server(srv._serve, "127.0.0.1", 0, ssl=server_ctx)
        port = srv.server.sockets[0].getsockname()[1]
        try:
            async with client(verify=ssl.create_default_context(cafile=str(ca_pem))) as c:
                for _ in range(2):
                    r = await c.get(f"https://localhost:{port}/v1/stream")
                    assert r.content == body
            assert srv.connections == 1
            async with client(verify=True, trust_env=False) as c:  # certifi's roots do not know our CA
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get(f"https://localhost:{port}/")
        finally:
            await srv.close()

    run(go)
    assert names[0] == "localhost"


# --------------------------------------------------------------------------- wiring


def test_env_proxy_for_follows_httpx_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert env_proxy_for("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    assert env_proxy_for("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert env_proxy_for("http://api.openai.com/v1") is None
    monkeypatch.setenv("NO_PROXY", "openai.com")
    assert env_proxy_for("https://api.openai.com/v1") is None
    assert env_proxy_for("https://api.anthropic.com") == "http://proxy.corp:3128"


def test_backends_use_this_transport_unless_a_proxy_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    remote = BackendConfig(id="r", kind="openai", base_url="https://api.example.com/v1", auth="none")
    local = BackendConfig(id="l", kind="openai", base_url="http://127.0.0.1:9/v1", auth="none")
    assert isinstance(Backend(remote, GatewaySettings(), keys=resolve_backend_key)._transport, HttptoolsTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    proxied = Backend(remote, GatewaySettings(), keys=resolve_backend_key)
    assert proxied._transport is None  # httpx's own transport and proxy handling
    assert isinstance(Backend(local, GatewaySettings(), keys=resolve_backend_key)._transport, HttptoolsTransport)  # loopback: no proxy


def test_backend_open_gives_a_full_httpx_response(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(Raw(200, headers={"content-type": "application/json; charset=utf-8"}, body='{"größe": 1}'))
    up.enqueue(Raw(429, headers={"retry-after": "3"}, body=b'{"error": "slow down"}'))
    up.enqueue(OpenAIStream(CHUNKS, split="awkward"))
    up.enqueue(OpenAIStream(CHUNKS, split="awkward"))
    backend = Backend(BackendConfig(id="f", kind="openai", base_url=up.url, auth="none"), GatewaySettings(), keys=resolve_backend_key)

    async def go() -> None:
        try:
            req = backend.client.build_request("POST", up.url + "/v1/x", content=b"{}")
            resp = await backend.open(req)
            assert resp.request is req
            await resp.aread()
            await resp.aclose()
            assert resp.json() == {"größe": 1} and resp.text == '{"größe": 1}'
            resp = await backend.open(backend.client.build_request("POST", up.url + "/v1/x", content=b"{}"))
            assert (resp.status_code, resp.headers["retry-after"]) == (429, "3")
            assert await resp.aread() == b'{"error": "slow down"}'
            await resp.aclose()
            resp = await backend.open(backend.client.build_request("POST", up.url + "/v1/x", content=b"{}"))
            try:
                assert b"".join([p async for p in resp.aiter_raw()]) == BODY
            finally:
                await resp.aclose()
            resp = await backend.open(backend.client.build_request("POST", up.url + "/v1/x", content=b"{}"))
            try:  # the backends' reader: the same bytes, read off the transport's own body
                assert b"".join([p async for p in raw_chunks(resp)]) == BODY
                assert resp.is_stream_consumed
            finally:
                await resp.aclose()
        finally:
            await backend.aclose()

    run(go)
    assert up.connections == 1


def test_header_line_breaks_are_refused_before_sending(run: Runner, up: FakeUpstream) -> None:
    async def go() -> None:
        async with client() as c:
            with pytest.raises(httpx.LocalProtocolError, match="line break"):
                await c.post(up.url + "/x", content=b"{}", headers={"x-extra": "a\r\nx-injected: 1"})

    run(go)
    assert up.requests == []


def test_closing_the_transport_mid_response_keeps_nothing_pooled(run: Runner, up: FakeUpstream) -> None:
    up.enqueue(OpenAIStream(CHUNKS, delay_s=0.005))

    async def go() -> None:
        transport = HttptoolsTransport()
        resp = await transport.handle_async_request(httpx.Request("POST", up.url + "/v1/chat/completions",
                                                                  content=b"{}"))
        await transport.aclose()  # the backend was retired while this answer streamed
        assert b"".join([p async for p in resp.aiter_raw()]) == BODY  # it still finishes
        assert transport._pool.idle_count == 0 and transport._pool.open == 0
        with pytest.raises(RuntimeError, match="closed"):
            await transport.handle_async_request(httpx.Request("GET", up.url + "/v1/models"))

    run(go)


def test_upstream_closing_during_a_streamed_upload(run: Runner) -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        srv = Scripted([[None]])  # reads the request head, then hangs up

        async def parts() -> Any:
            for _ in range(50):
                await asyncio.sleep(0.005)
                yield b"x" * 1000

        url = await srv.start()
        try:
            async with client() as c:
                with pytest.raises(httpx.RemoteProtocolError):
                    await c.post(url, content=parts())
        finally:
            await srv.close()
        gc.collect()
        await asyncio.sleep(0)
        assert errors == []  # no unretrieved future exception, no failing callback

    run(go)
