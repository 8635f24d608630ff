"""Per-user keys in the SQLite ledger file: only a hash stored, revocation seen by every
instance within a second, the ledger itself still opening the file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.team.identity import AuthError, Identity, IdentityChain
from app.team.keys import KEY_PREFIX, KeysVerifier, key_hash
from app.team.keystore_sqlite import SqliteKeyStore

CONFIG = '[[backends]]\nid = "a"\nkind = "anthropic"\nbase_url = "http://127.0.0.1:1"\nauth = "none"\n'


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def verify(v: KeysVerifier, secret: str, header: str = "authorization") -> Identity | None:
    value = f"Bearer {secret}" if header == "authorization" else secret
    return asyncio.run(v.verify({header: value}))


def test_a_created_key_works_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    store = SqliteKeyStore(path)
    record, secret = store.create("Alice@Corp.Example", ("eng",), created_by="admin@host")
    assert secret.startswith(KEY_PREFIX) and len(secret) == len(KEY_PREFIX) + 43
    assert record.user == "alice@corp.example" and record.id.startswith("key_")
    got = verify(KeysVerifier(store), secret)
    assert got == Identity("alice@corp.example", ("eng",), "keys", key_id=record.id)
    assert verify(KeysVerifier(store), secret, header="x-api-key") == got
    store.close()
    raw = sqlite3.connect(path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    assert secret not in dump and secret[len(KEY_PREFIX):] not in dump
    assert key_hash(secret) in dump


def test_the_ledger_still_opens_a_file_holding_keys(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    SqliteKeyStore(path).close()  # the key store comes first: it must leave a valid ledger
    ledger = Ledger(path, prices=PriceBook.load(parse_config(CONFIG)))
    ledger.close()
    reader = LedgerReader(path)
    reader.close()
    store = SqliteKeyStore(path)  # and the other way round
    store.close()


def test_unknown_revoked_and_expired_keys_are_401(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "usage.sqlite3")
    v = KeysVerifier(store, ttl_s=0.0)
    with pytest.raises(AuthError) as info:
        verify(v, KEY_PREFIX + "x" * 43)
    assert info.value.status == 401 and "not one this gateway issued" in info.value.message
    rec, secret = store.create("bob@corp.example")
    store.revoke(rec.id, revoked_by="admin")
    with pytest.raises(AuthError) as info:
        verify(v, secret)
    assert f"{rec.id} was revoked" in info.value.message and secret not in info.value.message
    rec2, secret2 = store.create("carol@corp.example", expires_at=time.time() - 1)
    with pytest.raises(AuthError) as info:
        verify(v, secret2)
    assert f"{rec2.id} expired" in info.value.message
    store.close()


def test_a_credential_that_is_no_team_key_is_left_to_other_sources(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "usage.sqlite3")
    v = KeysVerifier(store)
    assert asyncio.run(v.verify({"authorization": "Bearer eyJhbGciOi.x.y"})) is None
    assert asyncio.run(v.verify({})) is None
    with pytest.raises(AuthError):  # alone in the chain: no credential at all is a 401 naming team keys
        asyncio.run(IdentityChain([v]).identify({"authorization": "Bearer sk-ant-single-user-token"}))
    store.close()


def test_a_revocation_on_one_instance_reaches_another_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    admin, instance_a, instance_b = SqliteKeyStore(path), SqliteKeyStore(path), SqliteKeyStore(path)
    rec, secret = admin.create("dave@corp.example", ("eng",))
    clock = Clock()
    va, vb = KeysVerifier(instance_a, clock=clock), KeysVerifier(instance_b, clock=clock)
    assert verify(va, secret) and verify(vb, secret)
    assert instance_b.lookup(secret) is not None
    admin.revoke(rec.id)
    # the store itself has no cache: the very next lookup on another connection sees it
    revoked = instance_b.lookup(secret)
    assert revoked is not None and revoked.revoked_at is not None
    clock.t += 0.6  # past the verifiers' short cache (< 1 s)
    for v in (va, vb):
        with pytest.raises(AuthError):
            verify(v, secret)
    for s in (admin, instance_a, instance_b):
        s.close()


def test_the_same_in_real_time(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    admin, instance = SqliteKeyStore(path), SqliteKeyStore(path)
    rec, secret = admin.create("erin@corp.example")
    v = KeysVerifier(instance)
    assert verify(v, secret)
    admin.revoke(rec.id)
    revoked_at = time.monotonic()
    while True:
        try:
            verify(v, secret)
        except AuthError:
            break
        time.sleep(0.02)
    assert time.monotonic() - revoked_at < 1.0
    admin.close()
    instance.close()


def test_the_verifier_refuses_a_cache_of_a_second_or_more(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "usage.sqlite3")
    with pytest.raises(ValueError):
        KeysVerifier(store, ttl_s=1.0)
    store.close()


def test_list_and_revoke(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "usage.sqlite3")
    a, _ = store.create("a@corp.example", ("eng", "ops"))
    b, _ = store.create("b@corp.example")
    assert [r.id for r in store.list_keys()] == [a.id, b.id]
    first = store.revoke(a.id, revoked_by="x")
    again = store.revoke(a.id, revoked_by="y")
    assert first is not None and again is not None
    assert again.revoked_at == first.revoked_at and again.revoked_by == "x"  # the first revocation stays
    assert [r.id for r in store.list_keys(include_revoked=False)] == [b.id]
    assert store.revoke("key_nosuchkey") is None
    assert store.list_keys()[0].groups == ("eng", "ops")
    store.close()
