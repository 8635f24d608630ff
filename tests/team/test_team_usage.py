"""The Team page's numbers (app/budgets/team_usage.py) on both stores, SQLite and the real
PostgreSQL of tests/pg.py: spend per local day by user and by group with the rest folded into
"others", and each person's and group's budget state (ok, warn past warn_at, limit)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.budgets.limits import period_bounds
from app.budgets.team_usage import budget_rows, daily_spend, last_days
from app.catalog.prices import PriceBook
from app.config import BudgetConfig, parse_config
from app.events import Usage, finished_request
from tests.books import Books
from tests.gateway.conftest import config_text

CFG = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9",
                                 "auth": "none", "local": False}], active="anthropic"))
TZ = ZoneInfo("Europe/Berlin")
# 12:00 local on a Wednesday in mid-month: days before it stay in the month, none cross DST
NOW = datetime(2025, 10, 15, 12, 0, tzinfo=TZ).timestamp()
DAY = 86400.0


@pytest.fixture(params=["sqlite", "pg"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Books:
    return Books(request.param, tmp_path, request.getfixturevalue("pg_server") if request.param == "pg" else None)


def _ev(rid: str, at: float, user: str | None, groups: tuple[str, ...], dollars: float):
    """A request costing ``dollars`` (claude-sonnet-4-5 output is $15 per million tokens)."""
    e = finished_request(rid, at, backend="anthropic", model="claude-sonnet-4-5",
                         usage=Usage(0, round(dollars / 15 * 1_000_000)))
    return dataclasses.replace(e, user=user, groups=groups, identity_source="keys" if user else None)


def _record(books: Books, events: list) -> None:
    led = books.ledger(PriceBook.load(CFG))
    led.start()
    for e in events:
        led.record(e)
    assert led.flush()
    led.close()


def test_spend_per_local_day_by_user_and_by_group(books: Books):
    _record(books, [
        _ev("a1", NOW - 60, "alice@corp.example", ("eng",), 3.0),
        _ev("a2", NOW - 2 * DAY, "alice@corp.example", ("eng",), 1.5),
        _ev("b1", NOW - 3600, "bob@lab.example", ("research", "eng"), 6.0),
        # 23:30 local yesterday (21:30 UTC): yesterday's bar
        _ev("c1", datetime(2025, 10, 14, 23, 30, tzinfo=TZ).timestamp(), "carol@corp.example", ("eng",), 0.3),
        _ev("n1", NOW - 120, None, (), 0.03),
        _ev("old", NOW - 31 * DAY, "alice@corp.example", ("eng",), 99.0),  # before the window
    ])
    reader = books.reader(tz=TZ)
    try:
        users = daily_spend(reader, "user", now=NOW)
        groups = daily_spend(reader, "group", now=NOW)
    finally:
        reader.close()
    assert len(users.days) == 30 and users.days[-1] == period_bounds("day", NOW, TZ)[0]
    assert users.days[0] == datetime(2025, 9, 16, tzinfo=TZ).timestamp()
    got = {s.key: s for s in users.series}
    assert [s.key for s in users.series] == ["bob@lab.example", "alice@corp.example", "carol@corp.example", "-"]
    assert got["alice@corp.example"].costs[-1] == pytest.approx(3.0)
    assert got["alice@corp.example"].costs[-3] == pytest.approx(1.5)
    assert got["alice@corp.example"].total_usd == pytest.approx(4.5) and got["alice@corp.example"].requests == 2
    assert got["carol@corp.example"].costs[-2] == pytest.approx(0.3) and got["carol@corp.example"].costs[-1] == 0
    assert sum(got["bob@lab.example"].costs) == pytest.approx(6.0)
    assert users.total_usd == pytest.approx(10.83) and users.requests == 5
    g = {s.key: s for s in groups.series}
    assert set(g) == {"eng", "research", "-"}
    assert g["eng"].total_usd == pytest.approx(10.8) and g["eng"].requests == 4  # bob's counts in both groups
    assert g["research"].costs[-1] == pytest.approx(6.0)
    assert groups.total_usd == pytest.approx(10.83) and groups.requests == 5  # ...but once in the total


def test_past_the_top_the_rest_fold_into_others(books: Books):
    _record(books, [_ev(f"r{i}", NOW - 600, f"user{i:02d}@corp.example", ("eng",), 0.3 * (i + 1))
                    for i in range(10)])
    reader = books.reader(tz=TZ)
    try:
        spend = daily_spend(reader, "user", now=NOW, top=4)
        few = daily_spend(reader, "user", now=NOW, top=10)
    finally:
        reader.close()
    assert [s.key for s in spend.series] == ["user09@corp.example", "user08@corp.example", "user07@corp.example",
                                             "7 others"]
    rest = spend.series[-1]
    assert rest.others == 7 and rest.requests == 7
    assert rest.total_usd == pytest.approx(0.3 * sum(range(1, 8))) and rest.costs[-1] == pytest.approx(rest.total_usd)
    assert spend.total_usd == pytest.approx(0.3 * 55)
    assert len(few.series) == 10 and all(s.others == 0 for s in few.series)


def test_no_team_requests_is_an_empty_chart(books: Books):
    _record(books, [_ev("x", NOW - 60, None, (), 1.0)] if books.kind == "sqlite" else [])
    reader = books.reader(tz=TZ)
    try:
        spend = daily_spend(reader, "group", now=NOW)
        rows = budget_rows(reader, (BudgetConfig("each-user", "month", 10.0),), now=NOW)
    finally:
        reader.close()
    assert len(spend.days) == 30
    assert [s.key for s in spend.series] == (["-"] if books.kind == "sqlite" else [])
    assert rows == []  # nobody seen this month: no each-user row


def test_budget_state_per_user_and_group_this_period(books: Books):
    month_start = period_bounds("month", NOW, TZ)[0]
    _record(books, [
        _ev("a1", NOW - 60, "alice@corp.example", ("eng",), 12.0),       # past the $10 limit
        _ev("b1", NOW - 60, "bob@lab.example", ("research",), 8.4),      # past 80 % of $10
        _ev("c1", NOW - 60, "carol@corp.example", ("eng",), 3.0),        # ok
        _ev("c0", month_start - 3600, "carol@corp.example", ("eng",), 50.0),  # last month: not counted
        _ev("n1", NOW - 60, None, (), 5.0),                              # no user: no each-user row
    ])
    budgets = (
        BudgetConfig("all", "month", 1000.0),  # the org-wide budget: every row this month, its own line
        BudgetConfig("each-user", "month", 10.0, 0.8, "downgrade:ollama,qwen3-coder:30b"),
        BudgetConfig("user:Dave@Corp.example", "week", 5.0),
        BudgetConfig("user:bob@lab.example", "day", 8.0, 0.5, "block", "Ask Erin."),
        BudgetConfig("group:eng", "month", 20.0, 0.7),
        BudgetConfig("group:research", "month", 100.0),
    )
    reader = books.reader(tz=TZ)
    try:
        rows = budget_rows(reader, budgets, now=NOW)
    finally:
        reader.close()
    seen = [(r.index, r.subject, r.kind, round(r.spent_usd, 4), r.state) for r in rows]
    assert seen == [
        (0, "everyone", "all", 28.4, "ok"),  # 12 + 8.4 + 3 + 5 (no user), not last month's 50
        (1, "alice@corp.example", "user", 12.0, "limit"),
        (1, "bob@lab.example", "user", 8.4, "warn"),
        (1, "carol@corp.example", "user", 3.0, "ok"),
        (2, "Dave@Corp.example", "user", 0.0, "ok"),
        (3, "bob@lab.example", "user", 8.4, "limit"),
        (4, "eng", "group", 15.0, "warn"),
        (5, "research", "group", 8.4, "ok"),
    ]
    alice = rows[1]
    assert alice.fraction == pytest.approx(1.2) and alice.requests == 1
    assert (alice.period_start, alice.resets_at) == period_bounds("month", NOW, TZ)
    assert rows[4].resets_at == period_bounds("week", NOW, TZ)[1]


def test_last_days_are_local_days_across_a_dst_change():
    # Berlin leaves summer time on 26 Oct 2025: that day is 25 hours long
    days = last_days(3, datetime(2025, 10, 27, 9, 0, tzinfo=TZ).timestamp(), TZ)
    assert [datetime.fromtimestamp(s, TZ).strftime("%d %H:%M") for s, _ in days] == ["25 00:00", "26 00:00",
                                                                                   "27 00:00"]
    assert [e - s for s, e in days] == [DAY, DAY + 3600, DAY]
