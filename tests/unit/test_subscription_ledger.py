"""Rows served under a Claude subscription, on both stores: marked, worth their API price, spending nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import parse_config
from app.events import Usage, finished_request
from app.services.pricing import PriceBook
from tests.books import Books

CONFIG = '''
[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "client"

[active]
backend = "anthropic"

[[prices]]
model = "claude-fake"
input = 3.0
output = 15.0
cache_write = 3.75
cache_read = 0.3
'''
T = 1_780_000_000.0


@pytest.fixture(params=["sqlite", "pg"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Books:
    return Books(request.param, tmp_path, request.getfixturevalue("pg_server") if request.param == "pg" else None)


def test_a_subscription_row_spends_nothing_and_keeps_its_api_equivalent(books: Books) -> None:
    prices = PriceBook.load(parse_config(CONFIG))
    use = Usage(1_000_000, 100_000)  # $3 + $1.50 at API prices
    ledger = books.ledger(prices)
    ledger.start()
    ledger.record(finished_request("plan-1", T, model="claude-fake", usage=use, session_id="S", plan="subscription"))
    ledger.record(finished_request("key-1", T + 1, model="claude-fake", usage=use, session_id="S"))
    assert ledger.drain(10)
    ledger.close()
    with books.reader() as r:
        rows = {row.request_id: row for row in r.requests()}
        assert rows["plan-1"].subscription and rows["plan-1"].cost_usd == 0.0
        assert rows["plan-1"].api_equiv_usd == pytest.approx(4.5)
        assert not rows["key-1"].subscription and rows["key-1"].cost_usd == pytest.approx(4.5)
        assert rows["key-1"].api_equiv_usd is None
        assert r.spent(T - 10) == pytest.approx(4.5)  # what budgets and the spend totals read
        sub = r.subscription_totals(T - 10)
        assert (sub.requests, sub.api_equiv_usd) == (1, pytest.approx(4.5))
        [session] = r.top_sessions(T - 10)
        assert session.cost_usd == pytest.approx(4.5)
