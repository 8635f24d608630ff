"""Who gets in, through the real gateway on a real port: the token on the route finally taken,
before the body is read, everywhere when bound beyond loopback; the Host header; scrubbed
errors; bodies the gateway refuses (too deep, no messages); requests that outlive a config edit.
"""

from __future__ import annotations

import socket
import time

import anthropic
import httpx
import orjson
import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import EventHub, EventQueue, RequestFinished
from app.host.secrets import resolve_backend_key
from app.proxy.server import ProxyRuntime
from tests.budget_engine import LedgerBudgets
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream, OpenAIStream, Raw
from tests.gateway.conftest import TOKEN, Gateway, config_text

USER = [{"role": "user", "content": "hello"}]
STORED = "stored-user-key-0123456789"


@pytest.fixture
def two_ups():  # type: ignore[no-untyped-def]
    with FakeUpstream(wire="anthropic") as a, FakeUpstream(wire="anthropic") as b:
        yield a, b


def _runtime(cfg_text: str, admission=None) -> tuple[ProxyRuntime, Gateway]:  # type: ignore[no-untyped-def]
    cfg = parse_config(cfg_text)
    hub = EventHub()
    q = EventQueue()
    hub.add(q.put, deltas=True)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, keys=resolve_backend_key, admission=admission)
    rt.start()
    return rt, Gateway(rt, q)


def _mine_and_keyed(a: FakeUpstream, b: FakeUpstream) -> str:
    """Two remote backends: "mine" (the client's own key, active) on ``a``, "keyed" (a stored key) on ``b``."""
    return config_text([
        {"id": "mine", "kind": "anthropic", "base_url": a.url, "auth": "client", "local": False},
        {"id": "keyed", "kind": "anthropic", "base_url": b.url, "auth": "env:PB_STORED_KEY", "local": False},
    ], active="mine")


def _post(url: str, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    payload = {"model": "claude-fake", "max_tokens": 20, "messages": USER, **body}
    with httpx.Client(base_url=url, timeout=15) as http:
        return http.post("/v1/messages", headers=headers or {}, json=payload)


# --------------------------------------------------------------------------- 1: the route finally taken


def test_a_budget_downgrade_to_a_keyed_backend_needs_the_token(two_ups, monkeypatch, tmp_path):
    a, b = two_ups
    monkeypatch.setenv("PB_STORED_KEY", STORED)
    text = _mine_and_keyed(a, b)
    text += '\n\n[[budgets]]\nscope = "backend:mine"\nperiod = "day"\nlimit_usd = 0.01\naction = "downgrade:keyed"\n'
    cfg = parse_config(text)
    hub = EventHub()
    books = LedgerBudgets(cfg.budgets, PriceBook.load(cfg), tmp_path)
    guard = books.admission  # the product's budget engine; called with a route alone, it decides and holds nothing
    hub.add(books.sink)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, keys=resolve_backend_key, admission=guard)
    rt.start()
    try:
        a.enqueue(AnthropicStream(anthropic_text_events("spent", 2, usage=(1_000_000, 100_000),
                                                        model="claude-sonnet-4-5")))
        r = _post(rt.url, {"x-api-key": "sk-ant-users-own-key-000000"}, model="claude-sonnet-4-5", stream=True)
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while guard(rt.gateway.snap.table.resolve("claude-sonnet-4-5", None)).backend != "keyed":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the budget never reached its limit"
            time.sleep(0.02)
        before = len(b.requests)
        r = _post(rt.url, model="claude-sonnet-4-5")  # no credentials at all
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
        assert len(b.requests) == before, "the keyed upstream must never see a request without the token"
        r = _post(rt.url, {"x-api-key": TOKEN}, model="claude-sonnet-4-5")  # with the token it is served there
        assert r.status_code == 200 and b.requests[-1].headers["x-api-key"] == STORED
    finally:
        rt.stop(timeout=5)
        books.close()


def test_a_reserved_downgrade_refused_for_want_of_the_token_leaves_no_hold(two_ups, monkeypatch, tmp_path):
    """With reservations (issue 16) the 401 on the downgraded route comes after admission held the
    request's cost: its ledger row settles that hold, so no phantom reservation blocks later ones."""
    import sqlite3

    from app.budgets.admission import Admission
    from app.budgets.store import SqliteBudgets
    from app.ledger.writer import Ledger

    a, b = two_ups
    monkeypatch.setenv("PB_STORED_KEY", STORED)
    text = _mine_and_keyed(a, b)
    text += '\n\n[[budgets]]\nscope = "backend:mine"\nperiod = "day"\nlimit_usd = 0.01\naction = "downgrade:keyed"\n'
    # a budget over every backend, far from its limit: the downgraded route holds its cost against it
    text += '\n[[budgets]]\nscope = "all"\nperiod = "day"\nlimit_usd = 1000.0\naction = "block"\n'
    cfg = parse_config(text)
    prices = PriceBook.load(cfg)
    path = tmp_path / "usage.sqlite3"
    ledger = Ledger(path, prices=prices)
    ledger.start()
    adm = Admission(cfg.budgets, prices, SqliteBudgets(path), instance="t", reserve_output_tokens=1000)
    hub = EventHub()
    hub.add(ledger.sink)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, keys=resolve_backend_key, admission=adm)
    rt.start()
    try:
        a.enqueue(AnthropicStream(anthropic_text_events("spent", 2, usage=(1_000_000, 100_000),
                                                        model="claude-sonnet-4-5")))
        r = _post(rt.url, {"x-api-key": "sk-ant-users-own-key-000000"}, model="claude-sonnet-4-5", stream=True)
        assert r.status_code == 200
        assert ledger.flush()
        r = _post(rt.url, model="claude-sonnet-4-5")  # over the budget: downgraded to "keyed", no token
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
        assert not b.requests
        assert ledger.flush()
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("SELECT count(*) FROM budget_holds").fetchone() == (0,)
            assert conn.execute("SELECT backend, status FROM requests WHERE status = 401").fetchall() == [
                ("keyed", 401)]
        finally:
            conn.close()
    finally:
        rt.stop(timeout=5)
        adm.close()
        ledger.close()


def test_failover_from_a_client_route_never_lands_on_a_keyed_backend_without_the_token(two_ups, monkeypatch):
    a, b = two_ups
    monkeypatch.setenv("PB_STORED_KEY", STORED)
    rt, _ = _runtime(_mine_and_keyed(a, b) + '\n\n[routes]\nfallback = ["keyed"]\n')
    try:
        a.enqueue(Raw(529, {"content-type": "application/json"},
                      b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'))
        r = _post(rt.url)
        assert r.status_code == 529 and not b.requests
    finally:
        rt.stop(timeout=5)


def test_a_routing_rule_that_leaves_a_client_route_needs_the_token(two_ups, monkeypatch):
    a, b = two_ups
    monkeypatch.setenv("PB_STORED_KEY", STORED)
    rt, _ = _runtime(_mine_and_keyed(a, b) + '\n\n[routes]\nthink = "keyed"\n')
    try:
        r = _post(rt.url, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2000)
        assert r.status_code == 401 and not b.requests
    finally:
        rt.stop(timeout=5)


# --------------------------------------------------------------------------- 6: token before the body


def test_the_token_is_checked_before_the_body_is_read(start_gateway, anthropic_up, monkeypatch):
    monkeypatch.setenv("PB_STORED_KEY", STORED)
    gw = start_gateway(config_text([{"id": "keyed", "kind": "anthropic", "base_url": anthropic_up.url,
                                     "auth": "env:PB_STORED_KEY"}], active="keyed"))
    port = gw.runtime.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                  b"content-length: 30000000\r\n\r\n" + b"{" * 1000)
        t0 = time.monotonic()
        s.settimeout(5)
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 401"), data[:200]
    assert time.monotonic() - t0 < 2
    assert b"authentication_error" in data


# --------------------------------------------------------------------------- 3: beyond loopback


def test_bound_beyond_loopback_every_route_needs_the_token(anthropic_up):
    rt, _ = _runtime(config_text([{"id": "mine", "kind": "anthropic", "base_url": anthropic_up.url,
                                   "auth": "client"}], active="mine").replace('port = 0', 'host = "0.0.0.0"\nport = 0'))
    try:
        assert rt.exposed and rt.listen_address.startswith("0.0.0.0:")
        with httpx.Client(base_url=rt.url, timeout=10) as http:
            assert http.get("/health").status_code == 401
            assert http.get("/v1/models", headers={"x-api-key": "sk-ant-own-key-000000000"}).status_code == 401
            r = http.post("/v1/messages", headers={"x-api-key": "sk-ant-own-key-000000000"},
                          json={"model": "claude-fake", "max_tokens": 5, "messages": USER})
            assert r.status_code == 401 and "beyond this machine" in r.json()["error"]["message"]
            assert not anthropic_up.requests
            assert http.get("/health", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
            r = http.post("/v1/messages", headers={"authorization": f"Bearer {TOKEN}",
                                                   "x-api-key": "sk-ant-own-key-000000000"},
                          json={"model": "claude-fake", "max_tokens": 5, "messages": USER})
            assert r.status_code == 200
            assert anthropic_up.requests[-1].headers["x-api-key"] == "sk-ant-own-key-000000000"
    finally:
        rt.stop(timeout=5)


def test_bound_beyond_loopback_ready_answers_probes_but_tells_the_reason_only_with_the_token(anthropic_up):
    """Load balancers probe /ready without the token: they learn ready or not, nothing more."""
    rt, _ = _runtime(config_text([{"id": "mine", "kind": "anthropic", "base_url": anthropic_up.url,
                                   "auth": "client"}], active="mine").replace('port = 0', 'host = "0.0.0.0"\nport = 0'))
    try:
        with httpx.Client(base_url=rt.url, timeout=10) as http:
            r = http.get("/ready")
            assert r.status_code == 200 and r.json() == {"status": "ready"}
            rt.gateway.not_ready = lambda: "The PostgreSQL ledger at db:5432/patchbay does not answer."
            r = http.get("/ready")
            assert r.status_code == 503 and r.json()["error"]["type"] == "overloaded_error"
            assert "PostgreSQL" not in r.text and "gateway token" in r.json()["error"]["message"]
            r = http.get("/ready", headers={"authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 503 and "PostgreSQL ledger at db:5432" in r.json()["error"]["message"]
            assert http.get("/health").status_code == 401  # liveness details stay behind the token
    finally:
        rt.stop(timeout=5)


def test_on_loopback_client_routes_and_health_stay_open(anthropic_up):
    rt, _ = _runtime(config_text([{"id": "mine", "kind": "anthropic", "base_url": anthropic_up.url,
                                   "auth": "client"}], active="mine"))
    try:
        assert not rt.exposed
        with httpx.Client(base_url=rt.url, timeout=10) as http:
            assert http.get("/health").status_code == 200
            assert http.get("/v1/models").status_code == 200
    finally:
        rt.stop(timeout=5)


# --------------------------------------------------------------------------- 4: Host header


@pytest.mark.parametrize("host,ok", [
    ("localhost:8787", True), ("127.0.0.1", True), ("[::1]:9", True), ("LOCALHOST", True), ("10.1.2.3:8787", True),
    ("pb.lan:8787", True), ("evil.example", False), ("127.0.0.1.nip.io:8787", False), ("attacker.test:8787", False),
])
def test_the_host_header_must_name_this_machine(start_gateway, anthropic_up, host, ok):
    gw = start_gateway(config_text([{"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"}],
                                   active="a", extra='allowed_hosts = ["pb.lan"]'))
    for path in ("/health", "/v1/models"):
        with httpx.Client(base_url=gw.url, timeout=10) as http:
            r = http.get(path, headers={"host": host, "x-api-key": TOKEN})
        if ok:
            assert r.status_code == 200, (host, r.text)
        else:
            assert r.status_code == 403, (host, r.text)
            err = r.json()["error"]
            assert err["type"] == "permission_error" and "allowed_hosts" in err["message"]


# --------------------------------------------------------------------------- 13, 15: bodies refused


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_body_nested_too_deep_is_a_400_naming_the_limit(two_backends, path):
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    raw = orjson.dumps({"model": "claude,claude-fake", "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": 1}})[:-1]
    raw += b',"extra":' + b"[" * 300 + b"1" + b"]" * 300 + b"}"
    with two_backends.http() as http:
        r = http.post(path, headers={"x-api-key": TOKEN, "content-type": "application/json"}, content=raw)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and "250" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_an_empty_messages_list_is_a_400_as_anthropic_answers(two_backends, anthropic_up, path):
    with two_backends.http() as http:
        r = http.post(path, headers={"x-api-key": TOKEN}, json={"model": "claude,claude-fake", "max_tokens": 5,
                                                                 "messages": []})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "messages: at least one message is required."
    assert not anthropic_up.requests_to("/v1/messages")


# --------------------------------------------------------------------------- 14: a config edit mid-body


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_backend_edited_while_the_body_arrives_still_serves_that_request(start_gateway, anthropic_up, path):
    text = config_text([{"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none",
                         "max_output_tokens": 1000}], active="a")
    gw = start_gateway(text)
    body = orjson.dumps({"model": "claude-fake", "max_tokens": 5, "messages": USER})
    with socket.create_connection(("127.0.0.1", gw.runtime.port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {TOKEN}\r\ncontent-type: "
                  f"application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.2)
        gw.runtime.apply(parse_config(text.replace("max_output_tokens = 1000", "max_output_tokens = 2000")))
        time.sleep(0.3)  # the retired backend would be closed by now
        s.sendall(body[10:])
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200"), data[:300]


# --------------------------------------------------------------------------- 12, 16: every request leaves a row


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": 5}]},
    {"system": [{"type": "text", "text": 5}]},
    {"system": [{"type": "text", "text": ["x"]}], "messages": [{"role": "user", "content": [5, None, {"type": 1}]}]},
])
def test_odd_bodies_with_the_live_view_on_get_an_anthropic_answer_and_a_row(two_backends, body):
    payload = {"model": "claude,claude-fake", "max_tokens": 5, "messages": USER, **body}
    with two_backends.http() as http:
        r = http.post("/v1/messages", headers={"x-api-key": TOKEN}, json=payload)
    assert r.headers["content-type"].startswith("application/json"), r.text
    assert r.status_code < 500, r.text
    assert two_backends.finished(1)


def test_count_tokens_calls_are_recorded(two_backends):
    with two_backends.http() as http:
        r = http.post("/v1/messages/count_tokens", headers={"x-api-key": TOKEN},
                      json={"model": "claude,claude-fake", "messages": USER})
    assert r.status_code == 200
    rec = two_backends.finished(1)[-1]
    assert rec.endpoint == "count_tokens" and rec.status == 200 and rec.backend == "claude"


def test_an_interrupted_stream_is_recorded_with_its_prompt_and_marked(start_gateway, openai_up):
    from tests.fakes.chunks import openai_text_chunks

    gw = start_gateway(config_text([{"id": "oai", "kind": "openai", "base_url": openai_up.url + "/v1",
                                     "auth": "none", "models": ["gpt-fake"]}], active="oai"))
    openai_up.enqueue(OpenAIStream(openai_text_chunks("word " * 40, 40), delay_s=0.1))
    with gw.client(timeout=10) as c:
        with c.messages.stream(model="gpt-fake", max_tokens=50, messages=[{"role": "user", "content": "x " * 400}]) as s:
            for _ in s.text_stream:
                break  # the client leaves after the first words
    rec = [e for e in gw.finished(1, timeout=5) if isinstance(e, RequestFinished)][-1]
    assert rec.interrupted and rec.status in (200, 499)
    assert rec.usage.input_tokens > 100  # the prompt the provider bills, estimated


def test_interrupted_rows_and_token_counts_reach_the_ledger(tmp_path):
    from app.events import Usage
    from app.ledger.reader import LedgerReader
    from app.ledger.writer import Ledger

    path = tmp_path / "usage.sqlite3"
    led = Ledger(path, prices=PriceBook.load(parse_config(config_text(
        [{"id": "b", "kind": "anthropic", "base_url": "http://127.0.0.1:9", "auth": "none"}], active="b"))))
    led.start()
    base = dict(started_at=time.time(), ended_at=time.time() + 1, session_id="s", client="c", route="active",
                backend="b", requested_model="m", model="m", stream=True, status=200, error_type="client_closed",
                error_message="gone", ttft_ms=1.0, duration_ms=1000.0)
    led.record(RequestFinished(request_id="r1", usage=Usage(500, 3), interrupted=True, **base))  # type: ignore[arg-type]
    led.record(RequestFinished(request_id="r2", usage=Usage(), endpoint="count_tokens",  # type: ignore[arg-type]
                               **{**base, "error_type": None, "stream": False}))
    assert led.flush()
    led.close()
    with LedgerReader(path) as r:
        rows = r.requests()
        assert [(x.request_id, x.interrupted, x.input_tokens) for x in rows] == [("r1", True, 500)]
        assert r.token_counts() == 1


# --------------------------------------------------------------------------- 17: slow and idle clients


def _raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        s.settimeout(wait)
        out = b""
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                out += got
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def test_too_many_or_too_large_headers_are_refused(two_backends):
    port = two_backends.runtime.port
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(5000))
    out = _raw(port, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n" + many + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431") and b"request_too_large" in out
    big = b"x-big: " + b"a" * (2 * 1024 * 1024) + b"\r\n"
    out = _raw(port, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n" + big + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    with two_backends.http() as http:  # and everyone else is still served
        assert http.get("/health").status_code == 200


def test_a_head_or_body_that_stops_arriving_is_cut_off(two_backends, monkeypatch):
    from app.proxy import guard, request_body

    monkeypatch.setattr(guard, "HEAD_TIMEOUT_S", 0.5)
    monkeypatch.setattr(request_body, "BODY_IDLE_TIMEOUT_S", 0.5)
    port = two_backends.runtime.port
    t0 = time.monotonic()
    out = _raw(port, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
    assert out.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 4
    out = _raw(port, f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {TOKEN}\r\n"
                     "transfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n".encode())
    assert out.startswith(b"HTTP/1.1 408") and b"stopped arriving" in out


def test_at_the_connection_cap_the_longest_waiting_half_sent_request_makes_room(two_backends, monkeypatch, caplog):
    from app.proxy import guard

    monkeypatch.setattr(guard.GuardedHttpToolsProtocol, "cap", 8)
    monkeypatch.setattr(guard, "_last_log", {})
    port = two_backends.runtime.port
    half = []
    for _ in range(20):  # more half-sent requests than the cap allows
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        half.append(s)
        time.sleep(0.01)
    try:
        with two_backends.http() as http:
            assert http.get("/health").status_code == 200  # a real client is still served
        assert "open connections" in caplog.text
    finally:
        for s in half:
            s.close()


def test_the_bound_address_host_can_be_the_ip_and_localhost_names(two_backends):
    # uvicorn passes the Host header through; a plain HTTP/1.0 request without one is served
    out = _raw(two_backends.runtime.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")


def test_the_sdk_sees_scrubbed_errors_for_client_keys_too(start_gateway, anthropic_up):
    gw = start_gateway(config_text([{"id": "mine", "kind": "anthropic", "base_url": anthropic_up.url,
                                     "auth": "client"}], active="mine"))
    own = "users-own-shapeless-key-42"
    anthropic_up.enqueue(Raw(401, {"content-type": "application/json"},
                             orjson.dumps({"type": "error", "error": {"type": "authentication_error",
                                                                      "message": f"bad key {own}"}})))
    with pytest.raises(anthropic.AuthenticationError) as info:
        with anthropic.Anthropic(base_url=gw.url, api_key=own, max_retries=0) as c:
            c.messages.create(model="claude-fake", max_tokens=5, messages=USER)  # type: ignore[arg-type]
    assert own not in str(info.value)
    rec = gw.finished(1)[-1]
    assert own not in (rec.error_message or "")

