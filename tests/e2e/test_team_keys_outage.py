"""Team keys while the shared PostgreSQL is away (issue 22, item 8).

Two ``patchbay serve`` processes with ``[team] identity = ["keys"]`` on one PostgreSQL, one with
``[ledger] on_unreachable = "open"`` and one with "closed". Alice's and Bob's keys are used on both
before the outage, and Bob's is revoked (both gateways have seen that); Carol's key is never used.
With the database killed:

- "open": Alice keeps working from the verifier's bounded cache; Bob stays revoked (a revocation
  seen before the outage still applies); Carol is not served (nothing ever verified her key).
- "closed": nobody is served (nothing that cannot be checked passes).

Once PostgreSQL answers again, Carol is served within a couple of seconds. The bound on the cache
(``OUTAGE_GRACE_S``) is checked on the verifier itself, against the real key store on a stopped
cluster, with the verifier's clock moved on.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import anthropic
import pytest

from app.team.identity import IdentityUnavailable
from app.team.keys import OUTAGE_GRACE_S, KeysVerifier
from app.team.keystore_pg import PgKeyStore
from tests.e2e.conftest import GatewayProcess, spawn_gateway
from tests.fakes.upstreams import FakeUpstream
from tests.pg import PgServer
from tests.serve_config import serve_config

pytestmark = [pytest.mark.e2e]

TOKEN = "pb-keys-outage"
BODY = {"model": "priced", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


def answer(gw: GatewayProcess, key: str) -> str:
    """"ok", or the answer's error type and message."""
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=10.0)
    try:
        client.messages.create(**BODY)  # type: ignore[arg-type]
    except anthropic.APIStatusError as exc:
        err = exc.body["error"]  # type: ignore[index]
        return f"{exc.status_code} {err['type']}: {err['message']}"
    return "ok"


def until(check: object, limit_s: float) -> float:
    """Seconds until ``check()`` is true (asked every 50 ms); fails after ``limit_s``."""
    t0 = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - t0 < limit_s, f"not within {limit_s} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_verified_keys_keep_working_through_an_outage_when_open(tmp_path: Path, own_pg: PgServer,
                                                                priced_upstream: FakeUpstream) -> None:
    url = own_pg.create_db()
    store = PgKeyStore(url)
    alice = store.create("alice@corp.example")[1]
    bob_record, bob = store.create("bob@corp.example")
    carol = store.create("carol@corp.example")[1]
    gws = {mode: spawn_gateway(serve_config(priced_upstream.url, port0=False, ledger_url=url,
                                            extra=f'on_unreachable = "{mode}"\n\n[team]\nidentity = ["keys"]\n'),
                               tmp_path / f"home-{mode}", token=TOKEN) for mode in ("open", "closed")}
    try:
        for gw in gws.values():
            assert answer(gw, alice) == "ok" and answer(gw, bob) == "ok", gw.log()
        store.revoke(bob_record.id, revoked_by="admin@corp.example")
        for gw in gws.values():
            until(lambda gw=gw: "revoked" in answer(gw, bob), 5.0)
            assert answer(gw, alice) == "ok"

        own_pg.stop()
        time.sleep(1.0)  # past the verifier's 0.5 s freshness: every answer below comes from the outage path
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            assert answer(gws["open"], alice) == "ok", gws["open"].log()
            assert "revoked" in answer(gws["open"], bob)
            assert answer(gws["open"], carol) != "ok"
            for key in (alice, bob, carol):
                assert answer(gws["closed"], key) != "ok"
            time.sleep(0.2)
        assert "keys verified in the last 600 s keep their last answer" in gws["open"].log()

        own_pg.restart()
        took = until(lambda: answer(gws["open"], carol) == "ok", 5.0)
        print(f"\nCarol's key (never verified before) served {took:.2f} s after PostgreSQL answered again")
        assert took < 2.0
        # the closed gateway has its own probe of the database (every 250 ms): it may come back a moment later
        took = until(lambda: answer(gws["closed"], alice) == "ok", 5.0)
        assert took < 2.0 and "revoked" in answer(gws["closed"], bob)
    finally:
        for gw in gws.values():
            gw.stop()
        store.close()


def test_a_cached_key_is_honoured_for_a_bounded_time_during_an_outage(own_pg: PgServer) -> None:
    url = own_pg.create_db()
    store = PgKeyStore(url)
    _record, alice = store.create("alice@corp.example")
    now = [1000.0]
    verifier = KeysVerifier(store, clock=lambda: now[0], outage_grace_s=OUTAGE_GRACE_S)
    strict = KeysVerifier(store, clock=lambda: now[0])  # "closed": no grace
    headers = {"x-api-key": alice}

    async def scenario() -> None:
        assert (await verifier.verify(headers)).user == "alice@corp.example"  # type: ignore[union-attr]
        assert (await strict.verify(headers)) is not None
        own_pg.stop()
        now[0] += OUTAGE_GRACE_S - 1.0
        assert (await verifier.verify(headers)).user == "alice@corp.example"  # type: ignore[union-attr]
        with pytest.raises(IdentityUnavailable):
            await strict.verify(headers)
        now[0] += 2.0  # past the bound since the last real answer
        with pytest.raises(IdentityUnavailable):
            await verifier.verify(headers)
        await verifier.aclose()
        await strict.aclose()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
