"""Per-person and per-group budgets through the reservations, on the embedded SQLite ledger and on
PostgreSQL: the gateway in-process on a real port, people verified by the fake IdP's OIDC tokens.

- ``each-user``: every person has a limit of their own. A burst of concurrent streams by one person
  ends within one request's cost of *their* limit, the 429 names them and carries the budget's
  ``blocked_message``, and someone else goes on unaffected.
- ``group:NAME`` with ``downgrade:``: once the group's budget is used up its members' requests go to
  the local model; a person outside the group keeps their route.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from app.core import Engine
from tests.books import raw_rows
from tests.burst import priced_burst, stream_until_refused
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import FakeUpstream
from tests.serve_config import OPUS_PRICES, each_user_budget, oidc_team, serve_config, start_engine

LIMIT = 3.0
BURST = priced_burst("Summarise what changed in this module and why it matters. ", 500)
BODY, COST = BURST.body, BURST.cost  # one request's real cost (Opus-like prices)
ALICE, BOB, CAROL = "alice@corp.example", "bob@corp.example", "carol@lab.example"
ASK = "Ask #platform-ai in Slack for a higher limit."


def team_config(upstream: str, local: str, idp: FakeIdP, ledger: str = "") -> str:
    return serve_config(upstream, prices=OPUS_PRICES, extra=f'''
[[backends]]
id = "local"
kind = "anthropic"
base_url = "{local}"
auth = "none"
models = ["qwen3-coder"]
{oidc_team(idp.oidc_issuer)}
[[team.groups]]
name = "lab"
members = ["*@lab.example"]
{each_user_budget(LIMIT)}blocked_message = "{ASK}"

[[budgets]]
scope = "group:lab"
period = "day"
limit_usd = {COST * 1.5:.4f}
action = "downgrade:local,qwen3-coder"
{ledger}''')


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    cloud = BURST.upstream()
    local = FakeUpstream(wire="anthropic", models=("qwen3-coder",)).start()
    yield cloud, local
    cloud.stop()
    local.stop()


@pytest.fixture(params=["sqlite", "pg"])
def engine(request: pytest.FixtureRequest, patchbay_home: Path, upstreams: tuple[FakeUpstream, FakeUpstream],
           idp: FakeIdP) -> Iterator[Engine]:
    ledger = ""
    if request.param == "pg":
        ledger = f'\n[ledger]\nurl = "{request.getfixturevalue("pg_server").create_db()}"\n'
    eng = start_engine(patchbay_home, team_config(upstreams[0].url, upstreams[1].url, idp, ledger))
    yield eng
    eng.stop()


def ledger_rows(eng: Engine) -> list[tuple]:
    """(user_id, groups, backend, cost_usd) of every 200 in the ledger, read with SQL of its own."""
    assert eng.ledger.drain(10)
    return raw_rows(eng.paths.ledger_file, eng.config.ledger.team.url,
                    "SELECT user_id, groups, backend, cost_usd FROM requests WHERE status = 200")


def rows_of(eng: Engine, user: str, served: int) -> list[tuple]:
    deadline = time.monotonic() + 5.0
    while True:  # a stream's row follows its answer by a moment
        rows = [r for r in ledger_rows(eng) if r[0] == user]
        if len(rows) >= served or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_each_user_has_a_limit_of_their_own_that_a_burst_does_not_overrun(engine: Engine, idp: FakeIdP) -> None:
    assert 0.2 < COST < 0.35
    alice = idp.oidc_token(ALICE, aud="patchbay")
    served, refusals = stream_until_refused([engine.url], 6, alice, BODY, sessions=True)
    assert refusals == ["billing_error"] * 6
    rows = rows_of(engine, ALICE, served[0])
    spent = sum(r[3] or 0.0 for r in rows)
    assert len(rows) == served[0] and LIMIT - 2 * COST <= spent <= LIMIT + COST, (
        f"alice: {served[0]} requests spent ${spent:.2f} of ${LIMIT:.2f}")

    with httpx.Client(base_url=engine.url, timeout=15) as http:
        for _ in range(5):  # what the burst's holds left room for, one at a time, then the refusal
            refused = http.post("/v1/messages", json=BODY, headers={"authorization": f"Bearer {alice}"})
            if refused.status_code != 200:
                break
            assert engine.ledger.drain(10)
        assert refused.status_code == 429
        assert sum(r[3] for r in rows_of(engine, ALICE, 0)) <= LIMIT + COST
        assert refused.headers["x-should-retry"] == "false" and int(refused.headers["retry-after"]) > 0
        err = refused.json()
        assert err["type"] == "error" and err["error"]["type"] == "billing_error"
        message = err["error"]["message"]
        assert 'budget "each-user / day' in message and f"by {ALICE}" in message and message.endswith(ASK)
        assert alice not in message
        # bob's own counter is untouched by alice's spend
        bob = http.post("/v1/messages", json=BODY, headers={"authorization": f"Bearer {idp.oidc_token(BOB, aud='patchbay')}"})
        assert bob.status_code == 200, bob.text
    assert len(rows_of(engine, BOB, 1)) == 1


def test_a_used_up_group_budget_downgrades_its_members_only(engine: Engine, idp: FakeIdP) -> None:
    carol = anthropic.Anthropic(base_url=engine.url, api_key=idp.oidc_token(CAROL, aud="patchbay"), max_retries=0)
    models = []
    for n in range(4):
        with carol.messages.stream(**BODY) as s:  # type: ignore[arg-type]
            models.append(s.get_final_message().model)
        assert len(rows_of(engine, CAROL, n + 1)) == n + 1  # its row settled its hold
    # the group's limit is 1.5 requests: the first and the second are admitted on "cloud" (spent is
    # under the limit); once the spend passes it Carol is on the local model (the local fake names
    # its own model in its answers)
    assert models[:2] == ["priced", "priced"] and "priced" not in models[2:]
    rows = rows_of(engine, CAROL, 4)
    assert sorted(r[2] for r in rows) == ["cloud", "cloud", "local", "local"] and {r[1] for r in rows} == {"lab"}
    bob = anthropic.Anthropic(base_url=engine.url, api_key=idp.oidc_token(BOB, aud="patchbay"), max_retries=0)
    with bob.messages.stream(**BODY) as s:  # type: ignore[arg-type]
        assert s.get_final_message().model == "priced"
