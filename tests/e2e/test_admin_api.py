"""The Admin API's spend limits on real ``patchbay serve`` processes: two instances on one PostgreSQL
(a cap set on A is enforced by B within a second, and held exactly under a burst across both), and
one instance on its SQLite ledger (Anthropic's shapes, pagination, ``effective`` spend to date, the
audit trail, config default against API override, who may use it)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import psycopg
import pytest

from tests.burst import priced_burst, stream_until_refused
from tests.e2e.conftest import GatewayProcess, spawn_gateway
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM drain is POSIX")]

ADMIN_KEY = "pbadmin-" + "k" * 40
ALICE, BOB, CAROL, DAVE = "alice@corp.example", "bob@corp.example", "carol@corp.example", "dave@corp.example"
BURST = priced_burst("Explain what this function does and how to test it. ", 500)
QUICK_IN, QUICK_OUT = 1000, 100  # one quick request: $0.015 + $0.0075 at Opus-like prices
QUICK_COST = (QUICK_IN * 15 + QUICK_OUT * 75) / 1e6
QUICK = {"model": "priced", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]}
ENV = {"PB_ADMIN_KEY": ADMIN_KEY, "PB_READ_KEY": "r" * 40}


def team(issuer: str, budgets: str = "") -> str:
    return f'''
[team]
identity = ["oidc"]
oidc_issuer = "{issuer}"
oidc_audience = "patchbay"
admin_groups = ["finops-people"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]

[[team.groups]]
name = "sales"
members = ["dave@corp.example"]

[[team.admin_keys]]
id = "finops"
key = "env:PB_ADMIN_KEY"

[[team.admin_keys]]
id = "viewer"
key = "env:PB_READ_KEY"
read_only = true
{budgets}'''


def admin(gw: GatewayProcess, key: str = ADMIN_KEY) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"x-api-key": key}, timeout=10)


def quick_upstream(record: bool = False) -> FakeUpstream:
    return FakeUpstream(lambda req: AnthropicStream(
        anthropic_text_events("x" * 20, pieces=2, model="priced", usage=(QUICK_IN, QUICK_OUT, 0, 0))),
        wire="anthropic", record=record).start()


def stream(url: str, token: str, body: dict[str, Any] = QUICK) -> None:
    client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
    with client.messages.stream(**body) as s:  # type: ignore[arg-type]
        s.get_final_message()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = quick_upstream()
    yield up
    up.stop()


def _is_billing_429(exc: anthropic.APIStatusError) -> bool:
    return exc.status_code == 429 and isinstance(exc.body, dict) and exc.body["error"]["type"] == "billing_error"


def test_a_cap_set_on_one_instance_is_enforced_by_the_other_within_a_second(tmp_path: Path, pg_server: object,
                                                                           upstream: FakeUpstream) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    with FakeIdP() as idp:
        text = serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=team(idp.oidc_issuer))
        gws = [spawn_gateway(text, tmp_path / f"home-{i}", extra_env=ENV) for i in range(2)]
        try:
            a, b = gws
            bob = idp.oidc_token(BOB, aud="patchbay")
            stream(b.url, bob)  # served: no cap yet
            with admin(a) as api:
                t0 = time.monotonic()
                r = api.post("/v1/organizations/spend_limits",
                             json={"scope": {"type": "user", "user_id": BOB}, "amount": "0", "period": "daily"})
                t1 = time.monotonic()
            assert r.status_code == 200, r.text
            refused: anthropic.APIStatusError | None = None
            while time.monotonic() - t1 < 3.0:
                try:
                    stream(b.url, bob)
                except anthropic.APIStatusError as exc:
                    refused = exc
                    break
            t2 = time.monotonic()
            assert refused is not None and _is_billing_429(refused), refused
            print(f"\ncap set on A ({(t1 - t0) * 1000:.0f} ms) -> refused on B {(t2 - t1) * 1000:.0f} ms later")
            assert t2 - t1 < 1.0
            body = refused.body
            assert isinstance(body, dict) and body["type"] == "error" and body["request_id"].startswith("req_")
            assert refused.response.headers["x-should-retry"] == "false"
            assert "Admin API" in body["error"]["message"] and BOB in body["error"]["message"]
            assert "bug in Patchbay" not in body["error"]["message"]
            # a person not named is still served on both
            carol = idp.oidc_token(CAROL, aud="patchbay")
            for gw in gws:
                stream(gw.url, carol)
        finally:
            for gw in gws:
                gw.stop()
    for gw in gws:
        assert gw.proc.returncode == 0, gw.log()


def test_an_api_cap_holds_under_a_burst_across_two_instances(tmp_path: Path, pg_server: object) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    up = BURST.upstream()
    limit = 3.0
    try:
        with FakeIdP() as idp:
            # the config's each-user budget is the default ($50); the API's user cap replaces it for Alice
            text = serve_config(up.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=team(
                idp.oidc_issuer, '\n[[budgets]]\nscope = "each-user"\nperiod = "day"\nlimit_usd = 50\n'))
            gws = [spawn_gateway(text, tmp_path / f"home-{i}", extra_env=ENV) for i in range(2)]
            try:
                with admin(gws[1]) as api:
                    r = api.post("/v1/organizations/spend_limits", json={
                        "scope": {"type": "user", "user_id": ALICE}, "amount": str(int(limit * 100)),
                        "period": "daily", "blocked_message": "Ask #finops."})
                    assert r.status_code == 200, r.text
                time.sleep(0.6)
                alice = idp.oidc_token(ALICE, aud="patchbay")
                served, refusals = stream_until_refused([gw.url for gw in gws], 6, alice, BURST.body, sessions=True)
                assert refusals == ["billing_error"] * 6 and all(served), served
            finally:
                for gw in gws:
                    gw.stop()
    finally:
        up.stop()
    with psycopg.connect(url) as conn:
        spent = conn.execute("SELECT sum(cost_usd) FROM requests WHERE user_id = %s", (ALICE,)).fetchone()[0]
        holds = conn.execute("SELECT count(*) FROM budget_holds").fetchone()
    assert limit - 2 * BURST.cost <= spent <= limit + BURST.cost, f"alice spent ${spent:.2f} of ${limit:.2f}"
    assert holds == (0,)


def test_admin_api_shapes_pagination_effective_and_audit(tmp_path: Path, upstream: FakeUpstream) -> None:
    with FakeIdP() as idp:
        # SQLite ledger, one instance; config default: each person $50 a day
        text = serve_config(upstream.url, port0=False, prices=OPUS_PRICES, extra=team(
            idp.oidc_issuer, '\n[[budgets]]\nscope = "each-user"\nperiod = "day"\nlimit_usd = 50\n'))
        gw = spawn_gateway(text, tmp_path / "home", extra_env=ENV)
        try:
            alice = idp.oidc_token(ALICE, aud="patchbay")
            for _ in range(2):
                stream(gw.url, alice)
            with admin(gw) as api:
                base = "/v1/organizations/spend_limits"
                eff = api.get(f"{base}/effective", params={"user_ids[]": ALICE, "period[]": "daily"})
                assert eff.status_code == 200, eff.text
                row = eff.json()["data"][0]
                assert row["amount"] == "5000" and row["source"]["origin"] == "config"
                assert row["spend_limit_id"] is None
                deadline = time.monotonic() + 5
                while float(row["period_to_date_spend"]) < 2 * QUICK_COST * 100 and time.monotonic() < deadline:
                    time.sleep(0.1)  # the ledger writer batches its rows
                    row = api.get(f"{base}/effective", params={"user_ids[]": ALICE, "period[]": "daily"}).json()["data"][0]
                assert row["period_to_date_spend"] == "4.5"  # 2 x $0.0225 = 4.5 cents
                assert row["actor"] == {"type": "user_actor", "user_id": ALICE, "name": None,
                                        "email_address": ALICE, "deleted": False}

                made = api.post(base, json={"scope": {"type": "organization"}, "amount": "500", "period": "daily"})
                assert made.status_code == 200 and made.headers["request-id"].startswith("req_")
                org = made.json()
                assert org["type"] == "spend_limit" and org["id"].startswith("spl_") and len(org["id"]) == 36
                assert (org["amount"], org["currency"], org["period"], org["scope"]) == \
                    ("500", "USD", "daily", {"type": "organization"})
                assert org["action"] == "block"
                time.sleep(1.1)
                again = api.post(base, json={"scope": {"type": "organization"}, "amount": "700", "period": "daily"}).json()
                assert again["id"] == org["id"] and again["updated_at"] > org["updated_at"]
                group = api.post(base, json={"scope": {"type": "rbac_group", "rbac_group_id": "sales"}, "amount": "0",
                                             "period": "weekly", "action": "warn"}).json()
                assert group["pooled_budget"] is None and group["action"] == "warn"
                user = api.post(base, json={"scope": {"type": "user", "user_id": BOB}, "amount": None,
                                            "period": "daily"}).json()
                assert user["amount"] is None

                # the API's organisation cap now overrides the config's each-user default
                row = api.get(f"{base}/effective", params={"user_ids[]": ALICE, "period[]": "daily"}).json()["data"][0]
                assert row["amount"] == "700" and row["source"] == {"type": "organization", "origin": "api"}
                assert row["spend_limit_id"] == org["id"]
                dave = api.get(f"{base}/effective", params={"user_ids[]": DAVE, "period[]": "weekly"}).json()["data"]
                assert dave[0]["source"] == {"type": "rbac_group", "origin": "api", "rbac_group_id": "sales"}

                bad = api.post(base, json={"scope": {"type": "organization"}, "amount": 500, "period": "daily"})
                assert bad.status_code == 400 and bad.json()["error"] == {
                    "type": "invalid_request_error", "message": "amount: Expected string, received number"}
                assert bad.json()["request_id"] == bad.headers["request-id"]
                hourly = api.post(base, json={"scope": {"type": "organization"}, "amount": "5", "period": "hourly"})
                assert hourly.json()["error"]["message"] == ("period: Invalid enum value. Expected 'daily' | 'weekly' "
                                                             "| 'monthly', received 'hourly'")

                page1 = api.get(base, params={"limit": 2})
                assert page1.headers["cache-control"] == "no-store"
                p1 = page1.json()
                assert [d["id"] for d in p1["data"]] == [org["id"], group["id"]] and p1["has_more"] is True
                assert p1["first_id"] == org["id"] and p1["last_id"] == group["id"]
                p2 = api.get(base, params={"limit": 2, "after_id": p1["last_id"]}).json()
                assert [d["id"] for d in p2["data"]] == [user["id"]] and p2["has_more"] is False
                back = api.get(base, params={"limit": 1, "before_id": user["id"]}).json()
                assert [d["id"] for d in back["data"]] == [group["id"]] and back["has_more"] is True
                only = api.get(base, params={"scope_type": "user"}).json()["data"]
                assert [d["id"] for d in only] == [user["id"]]

                assert api.get(f"{base}/{group['id']}").json() == group
                assert api.delete(f"{base}/{group['id']}").json() == {"type": "spend_limit_deleted", "id": group["id"]}
                gone = api.delete(f"{base}/{group['id']}")
                assert gone.status_code == 404 and gone.json()["error"] == {"type": "not_found_error",
                                                                           "message": "spend limit not found"}
                changed = api.post(f"{base}/{org['id']}", json={"amount": "1"})
                assert changed.json()["amount"] == "1" and changed.json()["id"] == org["id"]

                audit = api.get(f"{base}/audit", params={"limit": 3}).json()
                assert audit["has_more"] is True
                newest = audit["data"]
                assert [e["action"] for e in newest] == ["spend_limit.upsert", "spend_limit.delete",
                                                         "spend_limit.upsert"]
                assert all(e["actor"] == "admin-key:finops" and e["type"] == "audit_event" for e in newest)
                assert newest[0]["before"]["amount"] == "700" and newest[0]["after"]["amount"] == "1"
                assert newest[1]["before"]["id"] == group["id"] and newest[1]["after"] is None
                rest = api.get(f"{base}/audit", params={"after_id": newest[-1]["id"]}).json()["data"]
                assert rest[-1]["before"] is None and rest[-1]["after"]["amount"] == "500"

            # the org cap ($0.01) now blocks Alice (she spent 4.5 cents); Bob's own unlimited cap overrides it
            with pytest.raises(anthropic.RateLimitError) as refused:
                stream(gw.url, alice)
            assert "organization spend limit" in refused.value.body["error"]["message"]  # type: ignore[index]
            stream(gw.url, idp.oidc_token(BOB, aud="patchbay"))
        finally:
            gw.stop()
    assert gw.proc.returncode == 0, gw.log()


def test_who_may_use_the_admin_api(tmp_path: Path, upstream: FakeUpstream) -> None:
    with FakeIdP() as idp:
        gw = spawn_gateway(serve_config(upstream.url, port0=False, prices=OPUS_PRICES, extra=team(idp.oidc_issuer)),
                           tmp_path / "home", extra_env=ENV)
        try:
            path = f"{gw.url}/v1/organizations/spend_limits"
            body = {"scope": {"type": "organization"}, "amount": "100", "period": "monthly"}
            for headers in ({}, {"x-api-key": "wrong-" + "x" * 40}, {"authorization": f"Bearer {ADMIN_KEY}"}):
                r = httpx.post(path, json=body, headers=headers)
                assert r.status_code == 401 and r.headers["x-should-retry"] == "false", (headers, r.text)
                assert r.json()["error"]["type"] == "authentication_error"
                assert r.json()["request_id"] == r.headers["request-id"]
            person = idp.oidc_token(ALICE, aud="patchbay")
            r = httpx.post(path, json=body, headers={"authorization": f"Bearer {person}"})
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", r.text
            assert ALICE in r.json()["error"]["message"]
            r = httpx.post(path, json=body, headers={"x-api-key": ENV["PB_READ_KEY"]})
            assert r.status_code == 403 and "write:spend_limits" in r.json()["error"]["message"]
            assert httpx.get(path, headers={"x-api-key": ENV["PB_READ_KEY"]}).json()["data"] == []
            boss = idp.oidc_token(CAROL, aud="patchbay", groups=["finops-people"])
            r = httpx.post(path, json=body, headers={"authorization": f"Bearer {boss}"})
            assert r.status_code == 200, r.text
            audit = httpx.get(f"{path}/audit", headers={"x-api-key": ADMIN_KEY}).json()["data"]
            assert audit[0]["actor"] == f"oidc:{CAROL}"
            text = gw.log()
            assert ADMIN_KEY not in text and ENV["PB_READ_KEY"] not in text
        finally:
            gw.stop()
