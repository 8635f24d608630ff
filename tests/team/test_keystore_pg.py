"""Team keys and the audit trail on a real PostgreSQL (``PgKeyStore``): only a hash stored, list
and revoke, an audit trail that SQL cannot rewrite, the policy record, several instances making
the tables at once, a revocation seen by another instance's verifier within a second, and an
unreachable database answered 503 through the real gateway (never 500, never 401, no key)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import psycopg
import pytest

from app.config import parse_config
from app.events import EventHub
from app.host.secrets import resolve_backend_key
from app.paths import Paths
from app.proxy.server import ProxyRuntime
from app.team.audit import record_policy
from app.team.chain import build_chain
from app.team.identity import AuthError, IdentityUnavailable
from app.team.keys import KeysVerifier, key_hash
from app.team.keystore_open import open_key_store
from app.team.keystore_pg import PgKeyStore
from app.team.keystore_sqlite import SqliteKeyStore
from tests.fakes.upstreams import FakeUpstream
from tests.gateway.conftest import TOKEN, config_text

ALICE = "alice@corp.example"


@pytest.fixture
def db(pg_server: Any) -> str:
    return str(pg_server.create_db())


@pytest.fixture
def store(db: str) -> Iterator[PgKeyStore]:
    s = PgKeyStore(db)
    yield s
    s.close()


def keys_config(upstream_url: str, ledger_url: str = "", extra: str = "") -> str:
    ledger = f'\n[ledger]\nurl = "{ledger_url}"\n' if ledger_url else ""
    return config_text([{"id": "main", "kind": "anthropic", "base_url": upstream_url, "auth": "none",
                         "local": False, "models": ["claude-sonnet-4-5"]}], active="main") + f'''{ledger}
[team]
identity = ["keys"]
{extra}'''


def test_only_the_hash_is_stored_and_a_lookup_finds_the_key(store: PgKeyStore, db: str) -> None:
    record, secret = store.create("Alice@Corp.Example", ["eng", "ops"], expires_at=time.time() + 3600,
                                  created_by="admin@host")
    assert record.user == ALICE and record.groups == ("eng", "ops")
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT * FROM team_keys").fetchall()
        audit_rows = conn.execute("SELECT * FROM team_audit").fetchall()
    assert len(rows) == 1
    assert secret not in repr(rows) and secret not in repr(audit_rows)
    assert key_hash(secret) in rows[0]
    found = store.lookup(secret)
    assert found == record
    assert store.lookup(secret + "x") is None


def test_list_and_revoke(store: PgKeyStore) -> None:
    a, _ = store.create(ALICE, created_by="admin@host")
    b, b_secret = store.create("bob@corp.example", ["eng"], created_by="admin@host")
    assert [r.id for r in store.list_keys()] == [a.id, b.id]
    revoked = store.revoke(b.id, revoked_by="root@host")
    assert revoked is not None and revoked.revoked_at is not None and revoked.revoked_by == "root@host"
    again = store.revoke(b.id, revoked_by="someone-else@host")
    assert again is not None and again.revoked_at == revoked.revoked_at and again.revoked_by == "root@host"
    assert store.revoke("key_nope") is None
    assert [r.id for r in store.list_keys(include_revoked=False)] == [a.id]
    looked = store.lookup(b_secret)
    assert looked is not None and looked.status(time.time()) == "revoked"
    trail = store.audit()
    assert [(e.action, e.subject, e.actor) for e in trail] == [
        ("key.created", a.id, "admin@host"), ("key.created", b.id, "admin@host"), ("key.revoked", b.id, "root@host")]
    assert trail[1].detail == {"user": "bob@corp.example", "groups": ["eng"], "expires_at": None}
    assert store.audit(action="key.revoked")[0].detail == {"user": "bob@corp.example"}
    assert store.audit(since=time.time() + 60) == []


def test_the_audit_trail_refuses_update_delete_and_truncate(store: PgKeyStore, db: str) -> None:
    store.create(ALICE, created_by="admin@host")
    with psycopg.connect(db, autocommit=True) as conn:
        for sql in ("UPDATE team_audit SET actor = 'nobody'", "DELETE FROM team_audit", "TRUNCATE team_audit"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="team_audit is append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT actor FROM team_audit").fetchall() == [("admin@host",)]
    # a second store (another instance) finds the tables and the trigger and changes nothing
    PgKeyStore(db).close()
    with psycopg.connect(db) as conn:
        triggers = conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'team_audit'::regclass "
                                "ORDER BY tgname").fetchall()
    assert triggers == [("team_audit_no_change",), ("team_audit_no_truncate",)]


def test_record_policy_on_postgresql(store: PgKeyStore) -> None:
    text = keys_config("http://127.0.0.1:9", extra='\n[[team.groups]]\nname = "eng"\nmembers = ["*@corp.example"]\n'
                       'models = ["claude-sonnet-*"]\n')
    assert record_policy(store, parse_config(text), who="gw@host") is True
    assert record_policy(store, parse_config(text), who="gw@host") is False  # same policy: nothing new
    assert record_policy(store, parse_config(text.replace("claude-sonnet-*", "claude-*")), who="gw@host") is True
    loaded = store.audit(action="config.loaded")
    assert len(loaded) == 2 and loaded[0].detail["changes"] == ["first policy recorded"]
    assert loaded[1].detail["changes"] == ['group "eng" models: [\'claude-sonnet-*\'] -> [\'claude-*\']']
    assert loaded[1].actor == "gw@host"


def test_instances_starting_at_once_make_the_tables_once(db: str) -> None:
    errors: list[BaseException] = []
    stores: list[PgKeyStore] = []
    go = threading.Barrier(6)

    def start() -> None:
        go.wait()
        try:
            stores.append(PgKeyStore(db))
        except BaseException as exc:  # noqa: BLE001 - the test reports what any instance met
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == [] and len(stores) == 6
        record, secret = stores[0].create(ALICE)
        assert all(s.lookup(secret) == record for s in stores)
    finally:
        for s in stores:
            s.close()


def test_a_revocation_on_one_instance_reaches_another_within_a_second(db: str) -> None:
    one, two = PgKeyStore(db), PgKeyStore(db)
    try:
        record, secret = one.create(ALICE, ["eng"])
        verifier = KeysVerifier(two)
        headers = {"x-api-key": secret}
        got = asyncio.run(verifier.verify(headers))
        assert got is not None and got.user == ALICE and got.key_id == record.id
        one.revoke(record.id, revoked_by="admin@host")
        t0 = time.monotonic()
        while True:
            try:
                asyncio.run(verifier.verify(headers))
            except AuthError as exc:
                assert "was revoked" in exc.message
                break
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.02)
        asyncio.run(verifier.aclose())
    finally:
        one.close()
        two.close()


def test_open_key_store_follows_the_ledger(tmp_path: Path, db: str) -> None:
    paths = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "logs")
    paths.ensure()
    pg = open_key_store(parse_config(keys_config("http://127.0.0.1:9", db)), paths)
    local = open_key_store(parse_config(keys_config("http://127.0.0.1:9")), paths)
    try:
        assert isinstance(pg, PgKeyStore) and isinstance(local, SqliteKeyStore)
        assert local.path == paths.ledger_file
    finally:
        pg.close()
        local.close()


def test_an_unreachable_key_store_is_503_through_the_gateway_and_recovers(pg_server: Any, db: str) -> None:
    name = db.rsplit("/", 1)[1]
    store = PgKeyStore(db)
    _record, secret = store.create(ALICE)
    with FakeUpstream(wire="anthropic", models=("claude-sonnet-4-5",)) as up:
        cfg = parse_config(keys_config(up.url, db))
        assert cfg.team is not None
        chain = build_chain(cfg.team, keys=store)
        rt = ProxyRuntime(cfg, token=TOKEN, hub=EventHub(), keys=resolve_backend_key, identity=chain)
        rt.start()
        admin = psycopg.connect(pg_server.url(), autocommit=True)
        try:
            client = anthropic.Anthropic(base_url=rt.url, api_key=secret, max_retries=0)
            ok = client.messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                        messages=[{"role": "user", "content": "hi"}])
            assert ok.content
            # the database goes away for this store: no new connections, the open ones cut
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            time.sleep(0.6)  # past the verifier's 0.5 s cache
            with pytest.raises(anthropic.APIStatusError) as caught:
                client.messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                       messages=[{"role": "user", "content": "hi"}])
            err = caught.value
            assert err.status_code == 503
            body: Any = err.body
            assert body["type"] == "error" and body["error"]["type"] == "api_error", body
            assert "cannot check team keys right now" in body["error"]["message"]
            assert "not a problem with your key" in body["error"]["message"]
            assert secret not in str(err.response.text) and key_hash(secret) not in err.response.text
            with pytest.raises(IdentityUnavailable):
                asyncio.run(KeysVerifier(store).verify({"x-api-key": secret}))
            # back: the pool reconnects and the key works again
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                           messages=[{"role": "user", "content": "hi"}])
                    break
                except anthropic.APIStatusError as exc:
                    assert exc.status_code == 503 and time.monotonic() < deadline
                    time.sleep(0.2)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.close()
            rt.stop(timeout=5)
            store.close()


def test_a_database_restart_costs_no_lookup(pg_server: Any, store: PgKeyStore, db: str) -> None:
    """The pool's connections the server closed (a restart, a failover) are replaced on the spot:
    a database that is back answers the very next lookup."""
    record, secret = store.create(ALICE)
    assert store.lookup(secret) == record
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                            (db.rsplit("/", 1)[1],)).fetchone()
    assert cut is not None and cut[0] >= 1
    assert store.lookup(secret) == record


def test_the_cli_finds_the_keys_through_the_config_wherever_it_is_written(
        tmp_path: Path, db: str, patchbay_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.__main__ import main

    config = tmp_path / "team.toml"
    config.write_text(keys_config("http://127.0.0.1:9", db))
    assert main(["--config", str(config), "team", "key", "create", ALICE]) == 0  # before the command
    secret = capsys.readouterr().out.strip()
    assert main(["team", "--config", str(config), "key", "list", "--json"]) == 0  # after "team"
    assert [k["user"] for k in json.loads(capsys.readouterr().out)] == [ALICE]
    assert main(["team", "audit", "--json", "--config", str(config)]) == 0  # after the command
    assert [e["action"] for e in json.loads(capsys.readouterr().out)] == ["key.created"]
    store = PgKeyStore(db)
    try:
        assert store.lookup(secret) is not None
    finally:
        store.close()
    assert not (patchbay_home / "data" / "usage.sqlite3").exists()
    # a config that is missing or does not load is a sentence, not a key in the wrong database
    assert main(["team", "key", "list", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "there is no config file" in capsys.readouterr().err
    config.write_text("[team]\nidentity = [\"nonsense\"]\n")
    assert main(["team", "key", "create", ALICE, "--config", str(config)]) == 2
    assert "fix it first" in capsys.readouterr().err
