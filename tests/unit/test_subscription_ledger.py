"""Rows served under a Claude subscription, on both stores: marked, worth their API price, spending nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import Usage, finished_request
from tests.books import Books
from tests.serve_config import SONNET_PRICES, client_config

CONFIG = client_config("https://api.anthropic.com", prices=SONNET_PRICES, models=False, gateway=False)
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


def test_an_include_subscription_counter_is_settled_with_the_api_equivalent(books: Books) -> None:
    """A budget with include_subscription charges the counter "plan+<scope>": a row's settlement
    adds its spend and, for a subscription row, its API-equivalent value; the plain counter only spend."""
    prices = PriceBook.load(parse_config(CONFIG))
    use = Usage(1_000_000, 100_000)  # $4.50 at API prices
    ledger = books.ledger(prices)
    ledger.start()
    ledger.record(finished_request("warm-up", T - 100, model="claude-fake", usage=Usage(1, 1)))
    assert ledger.drain(10)
    counters = [("all", T - 3600, T + 3600), ("plan+all", T - 3600, T + 3600), ("plan+backend:anthropic",
                                                                               T - 3600, T + 3600)]
    put = "INSERT INTO budget_counters VALUES (%s,%s,%s,0.0)" if books.url else \
        "INSERT INTO budget_counters VALUES (?,?,?,0.0)"
    _execute(books, put, counters)
    ledger.record(finished_request("plan-1", T, model="claude-fake", usage=use, session_id="S", plan="subscription"))
    ledger.record(finished_request("key-1", T + 1, model="claude-fake", usage=use, session_id="S"))
    assert ledger.drain(10)
    ledger.close()
    spent = dict(books.raw("SELECT scope, spent FROM budget_counters"))
    assert spent["all"] == pytest.approx(4.5)
    assert spent["plan+all"] == pytest.approx(9.0) and spent["plan+backend:anthropic"] == pytest.approx(9.0)


def _execute(books: Books, sql: str, rows: list[tuple[object, ...]]) -> None:
    if books.url is None:
        import sqlite3

        conn = sqlite3.connect(books.path)
        with conn:
            conn.executemany(sql, rows)
        conn.close()
        return
    import psycopg

    with psycopg.connect(books.url, autocommit=True) as pg:
        for r in rows:
            pg.execute(sql, r)
