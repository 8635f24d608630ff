"""Team mode through the real gateway on a real port: the fake IdP signs OIDC tokens, team keys
live in a real SQLite ledger file, two people in two groups ask for what their groups allow and
what they do not, and every credential problem is a 401 (never a 403), with no token or key text
in any answer, log line or ledger row."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from app.catalog.prices import PriceBook
from app.config import ConfigError, parse_config
from app.events import EventHub, EventQueue, RequestStarted
from app.host.secrets import resolve_backend_key
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.proxy.server import ProxyRuntime
from app.team.chain import build_chain
from app.team.keystore_sqlite import SqliteKeyStore
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicStream, FakeUpstream, Raw
from tests.gateway.conftest import TOKEN, Gateway, config_text

USER = [{"role": "user", "content": "hello"}]
ALICE = "alice@corp.example"  # group "eng": main backend, claude-sonnet-* only, 1000 output tokens
BOB = "bob@lab.example"  # group "research" (from his key's --group): main and local, claude-* and qwen3-*


def team_text(idp: FakeIdP, main: FakeUpstream, local: FakeUpstream, extra: str = "") -> str:
    return config_text([
        {"id": "main", "kind": "anthropic", "base_url": main.url, "auth": "none", "local": False,
         "models": ["claude-sonnet-4-5", "claude-opus-4-1"]},
        {"id": "local", "kind": "anthropic", "base_url": local.url, "auth": "none",
         "models": ["qwen3-coder"]},
    ], active="main") + f'''

[team]
identity = ["oidc", "keys"]
oidc_issuer = "{idp.oidc_issuer}"
oidc_audience = "patchbay"

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
backends = ["main"]
models = ["claude-sonnet-*"]
max_output_tokens = 1000

[[team.groups]]
name = "research"
members = ["group:research"]
backends = ["main", "local"]
models = ["claude-*", "qwen3-*"]
{extra}'''


class Team:
    def __init__(self, rt: ProxyRuntime, gw: Gateway, idp: FakeIdP, keys: SqliteKeyStore, ledger_path: Path,
                 ledger: Ledger) -> None:
        self.rt, self.gw, self.idp, self.keys, self.ledger_path, self.ledger = rt, gw, idp, keys, ledger_path, ledger

    def alice(self) -> dict[str, str]:
        return {"authorization": "Bearer " + self.idp.oidc_token(ALICE, aud="patchbay")}

    def post(self, headers: dict[str, str], path: str = "/v1/messages", **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": USER, **body}
        with httpx.Client(base_url=self.rt.url, timeout=15) as http:
            return http.post(path, headers=headers, json=payload)


@pytest.fixture
def ups() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream(wire="anthropic", models=("claude-sonnet-4-5",)) as main, \
            FakeUpstream(wire="anthropic", models=("qwen3-coder",)) as local:
        yield main, local


def _start(tmp_path: Path, idp: FakeIdP, main: FakeUpstream, local: FakeUpstream, extra: str = "") -> Team:
    cfg = parse_config(team_text(idp, main, local, extra))
    ledger_path = tmp_path / "usage.sqlite3"
    ledger = Ledger(ledger_path, prices=PriceBook.load(cfg))
    ledger.start()
    keys = SqliteKeyStore(ledger_path)
    hub = EventHub()
    q = EventQueue()
    hub.add(q.put, deltas=True)
    hub.add(ledger.sink)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, keys=resolve_backend_key,
                      identity=build_chain(cfg.team, keys=keys))
    rt.start()
    return Team(rt, Gateway(rt, q), idp, keys, ledger_path, ledger)


@pytest.fixture
def team(tmp_path: Path, idp: FakeIdP, ups: tuple[FakeUpstream, FakeUpstream]) -> Iterator[Team]:
    t = _start(tmp_path, idp, *ups)
    try:
        yield t
    finally:
        t.rt.stop(timeout=5)
        t.ledger.close()
        t.keys.close()


def _error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()
    assert body["type"] == "error", body
    return r.status_code, body["error"]["type"], body["error"]["message"]


# --------------------------------------------------------------------------- who may use what


def test_two_users_in_two_groups_get_what_their_groups_allow(team: Team, ups):
    main, local = ups
    _, bob_key = team.keys.create(BOB, ["research"])
    r = team.post(team.alice(), max_tokens=5000)
    assert r.status_code == 200, r.text
    assert main.requests[-1].json["max_tokens"] == 1000, "eng's max_output_tokens caps the request"
    r = team.post({"x-api-key": bob_key}, model="local,qwen3-coder")
    assert r.status_code == 200, r.text
    assert local.requests[-1].json["model"] == "qwen3-coder"
    r = team.post({"authorization": f"Bearer {bob_key}"}, model="claude-opus-4-1", max_tokens=5000)
    assert r.status_code == 200 and main.requests[-1].json["max_tokens"] == 5000  # research has no cap

    done = team.gw.finished(3)
    who = [(e.user, e.groups, e.identity_source, e.client_addr, e.backend) for e in done]
    assert who == [(ALICE, ("eng",), "oidc", "127.0.0.1", "main"), (BOB, ("research",), "keys", "127.0.0.1", "local"),
                   (BOB, ("research",), "keys", "127.0.0.1", "main")]
    started = [e for e in team.gw.events() if isinstance(e, RequestStarted)]
    assert [(e.user, e.identity_source) for e in started] == [(ALICE, "oidc"), (BOB, "keys"), (BOB, "keys")]


def test_a_model_or_backend_the_group_does_not_allow_is_403_naming_the_rule(team: Team, ups):
    main, local = ups
    before = len(main.requests), len(local.requests)
    status, etype, msg = _error(team.post(team.alice(), model="claude-opus-4-1"))
    assert (status, etype) == (403, "permission_error")
    assert ALICE in msg and "claude-opus-4-1" in msg and '"eng" allows models claude-sonnet-*' in msg
    status, etype, msg = _error(team.post(team.alice(), model="local,qwen3-coder"))
    assert (status, etype) == (403, "permission_error") and "backend local" in msg and '"eng" allows main' in msg
    status, etype, _ = _error(team.post(team.alice(), path="/v1/messages/count_tokens", model="claude-opus-4-1"))
    assert (status, etype) == (403, "permission_error")
    assert (len(main.requests), len(local.requests)) == before, "a refused request never reaches an upstream"
    rows = team.gw.finished(3)
    assert [(e.status, e.user, e.route) for e in rows[:2]] == [(403, ALICE, "refused"), (403, ALICE, "refused")]


def test_a_person_in_no_group_is_refused(team: Team):
    status, etype, msg = _error(team.post({"authorization": "Bearer " + team.idp.oidc_token(
        "mallory@elsewhere.example", aud="patchbay")}))
    assert (status, etype) == (403, "permission_error") and "none of this team gateway's groups" in msg


def test_models_lists_only_what_the_group_allows(team: Team):
    with httpx.Client(base_url=team.rt.url, timeout=10) as http:
        assert http.get("/v1/models").status_code == 401
        ids = [m["id"] for m in http.get("/v1/models", headers=team.alice()).json()["data"]]
    # Anthropic-style ids (GATEWAY-PROTOCOL §11): the plain name reaches exactly main,claude-sonnet-4-5
    assert ids == ["claude-sonnet-4-5"]


# --------------------------------------------------------------------------- routing inside the policy


def test_failover_and_routing_rules_stay_inside_what_the_group_allows(tmp_path, idp, ups):
    main, local = ups
    t = _start(tmp_path, idp, main, local, extra='\n[routes]\nfallback = ["local,qwen3-coder"]\nbackground = "local"\n')
    try:
        _, bob_key = t.keys.create(BOB, ["research"])
        overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        main.enqueue(Raw(529, {"content-type": "application/json"}, overloaded))
        r = t.post(t.alice(), tools=[{"name": "x", "input_schema": {"type": "object"}}], max_tokens=4000)
        assert r.status_code == 529 and not local.requests, "alice's group may not fail over to local"
        main.enqueue(Raw(529, {"content-type": "application/json"}, overloaded))
        r = t.post({"x-api-key": bob_key}, tools=[{"name": "x", "input_schema": {"type": "object"}}], max_tokens=4000)
        assert r.status_code == 200 and len(local.requests) == 1, "bob's may"
        # a background request (no tools, small max_tokens): the rule's target is not alice's to use,
        # so the rule is skipped and the request is served where she may go
        n = len(main.requests)
        r = t.post(t.alice(), max_tokens=100)
        assert r.status_code == 200 and len(main.requests) == n + 1 and len(local.requests) == 1
        r = t.post({"x-api-key": bob_key}, max_tokens=100)
        assert r.status_code == 200 and len(local.requests) == 2
        rows = t.gw.finished(4)
        assert [(e.user, e.route) for e in rows][2:] == [(ALICE, "active"), (BOB, "background")]
    finally:
        t.rt.stop(timeout=5)
        t.ledger.close()
        t.keys.close()


# --------------------------------------------------------------------------- 401, never 403


def test_every_credential_problem_is_401(team: Team, ups, idp):
    main, _ = ups
    record, key = team.keys.create(BOB, ["research"])
    expired = team.idp.oidc_token(ALICE, aud="patchbay", iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)
    wrong_aud = team.idp.oidc_token(ALICE, aud="someone-else")
    cases = {
        "nothing": {},
        "the single-user gateway token": {"x-api-key": TOKEN},
        "the gateway token as bearer": {"authorization": f"Bearer {TOKEN}"},
        "an expired token": {"authorization": f"Bearer {expired}"},
        "a wrong audience": {"authorization": f"Bearer {wrong_aud}"},
        "alg none": {"authorization": "Bearer " + idp.unsigned_token(idp.claims_for("oidc", ALICE, "patchbay"))},
        "an unknown key": {"x-api-key": "pbk_" + "A" * 43},
    }
    for what, headers in cases.items():
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            status, etype, msg = _error(team.post(headers, path=path))
            assert (status, etype) == (401, "authentication_error"), (what, path, msg)
    assert team.post({"x-api-key": key}).status_code == 200
    assert len(main.requests) == 1, "only the one valid request reached the upstream"
    team.keys.revoke(record.id)
    deadline = time.monotonic() + 1.0
    while team.post({"x-api-key": key}).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key must be refused within a second"
        time.sleep(0.05)
    status, etype, msg = _error(team.post({"x-api-key": key}))
    assert (status, etype) == (401, "authentication_error") and "revoked" in msg
    with httpx.Client(base_url=team.rt.url, timeout=10) as http:
        assert http.get("/v1/models", headers={"x-api-key": TOKEN}).status_code == 401


def test_the_anthropic_sdk_with_an_expired_token_gets_authentication_error(team: Team):
    expired = team.idp.oidc_token(ALICE, aud="patchbay", iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)
    client = anthropic.Anthropic(base_url=team.rt.url, api_key=expired, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)  # type: ignore[arg-type]


def test_no_token_or_key_text_in_answers_logs_or_the_ledger(team: Team, ups, caplog):
    main, _ = ups
    caplog.set_level(logging.DEBUG)
    _, key = team.keys.create(BOB, ["research"])
    alice = team.alice()
    token = alice["authorization"][7:]
    expired = team.idp.oidc_token(ALICE, aud="patchbay", iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)
    main.enqueue(AnthropicStream(anthropic_text_events("hi", 2, usage=(10, 2), model="claude-sonnet-4-5")))
    answers = [team.post(alice, stream=True), team.post({"x-api-key": key}), team.post({"x-api-key": key[:-2] + "zz"}),
               team.post({"authorization": f"Bearer {expired}"}), team.post(alice, model="claude-opus-4-1")]
    assert [a.status_code for a in answers] == [200, 200, 401, 401, 403]
    team.gw.finished(3)
    assert team.ledger.flush()
    secrets = [token, key, key[:-2] + "zz", expired, key[4:20], token.split(".")[2][:16]]
    text = "\n".join(a.text for a in answers) + "\n".join(r.getMessage() for r in caplog.records)
    events = "\n".join(repr(e) for e in team.gw.events())
    dump = team.ledger_path.read_bytes()
    for s in secrets:
        assert s not in text and s not in events and s.encode() not in dump
    with LedgerReader(team.ledger_path) as r:
        assert len(r.requests()) == 3  # two served and the 403; strangers leave no row


# --------------------------------------------------------------------------- config


def test_team_config_refuses_a_backend_that_forwards_the_callers_key(idp, ups):
    main, local = ups
    text = team_text(idp, main, local).replace('auth = "none"', 'auth = "client"', 1)
    with pytest.raises(ConfigError, match='auth = "client", which a team gateway cannot use'):
        parse_config(text)


def test_team_budget_scopes_parse_with_a_blocked_message(idp, ups):
    main, local = ups
    cfg = parse_config(team_text(idp, main, local) + '''
[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 150
blocked_message = "Ask #platform for more."

[[budgets]]
scope = "group:eng"
period = "day"
limit_usd = 40
''')
    assert [(b.scope, b.is_team_scope, b.blocked_message) for b in cfg.budgets] == [
        ("each-user", True, "Ask #platform for more."), ("group:eng", True, None)]
    with pytest.raises(ConfigError, match="no \\[team\\] section"):
        parse_config(config_text([{"id": "m", "kind": "anthropic", "base_url": main.url, "auth": "none"}],
                                 active="m") + '\n[[budgets]]\nscope = "each-user"\nlimit_usd = 5\n')
    with pytest.raises(ConfigError, match="which \\[\\[team.groups\\]\\] does not define"):
        parse_config(team_text(idp, main, local) + '\n[[budgets]]\nscope = "group:ops"\nlimit_usd = 5\n')


# --------------------------------------------------------------------------- the whole engine


def test_the_engine_serves_a_team_with_keys_made_by_the_cli(patchbay_home: Path, monkeypatch, ups, idp, capsys):
    from app.__main__ import main as cli
    from app.core import Engine

    main, local = ups
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    patchbay_home.mkdir(parents=True)
    text = team_text(idp, main, local)
    (patchbay_home / "config.toml").write_text(text)
    assert cli(["team", "key", "create", BOB, "--group", "research"]) == 0
    key = capsys.readouterr().out.strip()
    eng = Engine()
    eng.start()
    try:
        with httpx.Client(base_url=eng.url, timeout=10) as http:
            body = {"model": "local,qwen3-coder", "max_tokens": 10, "messages": USER}
            assert http.post("/v1/messages", json=body, headers={"x-api-key": TOKEN}).status_code == 401
            assert http.post("/v1/messages", json=body, headers={"x-api-key": key}).status_code == 200
            # a reload that drops [team]: the gateway token is the credential again
            (patchbay_home / "config.toml").write_text(text.split("[team]")[0])
            eng.reload()
            assert http.post("/v1/messages", json=body, headers={"x-api-key": TOKEN}).status_code == 200
            assert http.post("/v1/messages", json=body, headers={"x-api-key": key}).status_code == 401
            # and back: a new chain, team keys work again
            (patchbay_home / "config.toml").write_text(text)
            eng.reload()
            assert http.post("/v1/messages", json=body, headers={"x-api-key": key}).status_code == 200
        assert eng.ledger.flush()
        with LedgerReader(eng.paths.ledger_file) as r:
            assert len(r.requests()) == 3
    finally:
        eng.stop()


def test_health_beyond_loopback_tells_a_stranger_only_the_status(tmp_path, idp, ups):
    main, local = ups
    cfg = parse_config(team_text(idp, main, local).replace("port = 0", 'port = 0\nhost = "0.0.0.0"', 1))
    keys = SqliteKeyStore(tmp_path / "k.sqlite3")
    rt = ProxyRuntime(cfg, token=TOKEN, hub=EventHub(), keys=resolve_backend_key,
                      identity=build_chain(cfg.team, keys=keys))
    rt.start()
    try:
        with httpx.Client(base_url=rt.url, timeout=10) as http:
            assert http.get("/health").json() == {"status": "ok"}  # a load balancer's check
            assert http.get("/health", headers={"x-api-key": TOKEN}).json() == {"status": "ok"}
            who = http.get("/health", headers={"authorization": "Bearer " + idp.oidc_token(ALICE, aud="patchbay")})
            assert who.json()["active"]["backend"] == "main"
    finally:
        rt.stop(timeout=5)
        keys.close()


def test_a_team_gateway_starts_while_its_postgresql_ledger_is_down_and_answers_keys_503(
        patchbay_home: Path, monkeypatch, ups, idp):
    """Keys live in the shared ledger now. Like the ledger itself, a gateway whose database does
    not answer at start still starts; a request with a team key gets 503 ``api_error`` (not the
    caller's fault, and Claude Code retries it), never 500 or 401, and never the key back."""
    from app.core import Engine
    from app.team.keystore_pg import PgKeyStore

    main, local = ups
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    patchbay_home.mkdir(parents=True)
    (patchbay_home / "config.toml").write_text(team_text(idp, main, local).replace(
        "[team]", '[ledger]\nurl = "postgresql://patchbay@127.0.0.1:9/books"\n\n[team]', 1))
    eng = Engine()
    try:
        assert isinstance(eng.team_store, PgKeyStore)
        eng.start()
        key = "pbk_" + "A" * 43
        r = httpx.post(eng.url + "/v1/messages", headers={"x-api-key": key},
                       json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": USER}, timeout=20)
        assert _error(r)[:2] == (503, "api_error"), r.text
        assert "cannot check team keys right now" in _error(r)[2] and key not in r.text
    finally:
        eng.stop()
