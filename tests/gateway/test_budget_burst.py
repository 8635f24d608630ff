"""No overshoot from concurrency: 16 concurrent streams against a $3 daily ``block`` budget end
within one request's cost of the limit, on the embedded SQLite ledger and on PostgreSQL.

Before reservations each request was admitted on the spend counted so far, and all 16 in flight
passed at once: the same burst ended at $3.65 (and worse with more streams). Now admission holds
each request's expected cost against the budget before the upstream call, in one transaction.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.core import Engine
from tests.burst import priced_burst, stream_until_refused
from tests.serve_config import OPUS_PRICES, serve_config, start_engine

TOKEN = "pb-burst-token"
LIMIT = 3.0
BURST = priced_burst("Refactor this module so that it reads more clearly. ", 700)
BODY, COST = BURST.body, BURST.cost  # one request's real cost (Opus-like prices)


def config(upstream: str, ledger: str) -> str:
    return serve_config(upstream, prices=OPUS_PRICES, budget_usd=LIMIT, warn_at=0.9, extra=ledger)

@pytest.fixture(params=["sqlite", "pg"])
def engine(request: pytest.FixtureRequest, patchbay_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    up = BURST.upstream()
    ledger = ""
    if request.param == "pg":
        ledger = f'[ledger]\nurl = "{request.getfixturevalue("pg_server").create_db()}"\n'
    eng = start_engine(patchbay_home, config(up.url, ledger))
    yield eng
    eng.stop()
    up.stop()


def burst(url: str, streams: int) -> tuple[int, list[str]]:
    served, refusals = stream_until_refused([url], streams, TOKEN, BODY, sessions=True)
    return served[0], refusals


def test_sixteen_concurrent_streams_end_within_one_request_of_the_limit(engine: Engine) -> None:
    assert 0.25 < COST < 0.35
    served, refusals = burst(engine.url, 16)
    assert refusals == ["billing_error"] * 16  # every stream was stopped by the budget, none by anything else
    # a stream's row follows its answer by a moment: the client has the whole answer at message_stop,
    # and the gateway records the request after the upstream's body has ended (or 1 s, DRAIN_S)
    deadline = time.monotonic() + 5.0
    while True:
        assert engine.ledger.drain(10)
        ok = [r for r in engine.reader.requests(limit=1000) if r.status == 200]
        if len(ok) >= served or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    spent = sum(r.cost_usd or 0.0 for r in ok)
    assert served == len(ok) == round(spent / COST)
    # the limit holds: at most one request's cost beyond it, and the budget was used, not blocked early
    assert LIMIT - 2 * COST <= spent <= LIMIT + COST, f"{served} requests spent ${spent:.2f} of ${LIMIT:.2f}"
