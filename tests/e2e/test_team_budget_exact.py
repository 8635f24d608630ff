"""A person's cap is exact in both directions (issue 22 item 4): two ``patchbay serve`` processes on
one PostgreSQL, a person with a $0.50/day ``each-user`` budget pushing 30 concurrent streams on a
1 s upstream until refused. Whatever the requests' sizes, the spend ends within 0.90–1.05× of the
cap, and no refusal comes while what is spent and what is really in flight is below 0.9× of it.
The cases are in ``tests/budget_cases.py``; ``bench/team_budget_bench.py`` measures them at
10/30/100 streams."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import budget_cases as cases
from tests.e2e.conftest import GatewayProcess, spawn_gateway
from tests.fakes.upstreams import FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")]

LIMIT = 0.5
STREAMS = 30


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = cases.upstream()
    yield up
    up.stop()


@pytest.fixture
def team(tmp_path: Path, pg_server: Any, upstream: FakeUpstream) -> Iterator[tuple[str, list[GatewayProcess]]]:
    url = pg_server.create_db()
    text = serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=f'''
[team]
identity = ["keys"]

[[budgets]]
scope = "each-user"
period = "day"
limit_usd = {LIMIT}
''')
    gws = [spawn_gateway(text, tmp_path / f"home-{i}") for i in range(2)]
    try:
        yield url, gws
    finally:
        for gw in gws:
            gw.stop()


def _key(gw: GatewayProcess, user: str) -> str:
    made = gw.cli("team", "key", "create", user, "--config", str(gw.config_path))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _rows(url: str, user: str) -> list[tuple[float, float]]:
    with psycopg.connect(url) as conn:
        return [(float(s), float(c or 0.0)) for s, c in conn.execute(
            "SELECT started_at, cost_usd FROM requests WHERE user_id = %s AND cost_usd > 0", (user,)).fetchall()]


@pytest.mark.parametrize("case", ["realistic", "tiny", "shrink"])
def test_a_persons_spend_ends_at_the_cap_with_no_false_refusal(team: tuple[str, list[GatewayProcess]],
                                                               case: str) -> None:
    url, gws = team
    user = f"{case}@corp.example"
    key = _key(gws[0], user)
    urls = [gw.url for gw in gws]
    if case == "shrink":  # 200 one-token answers first: the output history an estimate would learn from
        warm = cases.push(urls, 10, key, cases.one_token_body(), times=20)
        assert warm.served == 200 and not warm.refusals, warm
    body = cases.realistic_body() if case == "realistic" else cases.tiny_body()
    pushed = cases.push(urls, STREAMS, key, body)
    assert not pushed.other, pushed.other
    assert len(pushed.refusals) == STREAMS  # each stream ended with the 429 that stops Claude Code
    time.sleep(1.0)  # the last rows settle
    rows = _rows(url, user)
    spent = sum(c for _s, c in rows)
    assert 0.90 * LIMIT <= spent <= 1.05 * LIMIT, f"{case}: spent ${spent:.3f} of ${LIMIT} ({pushed})"
    assert cases.false_refusals(pushed.refusals, rows, LIMIT) == 0
