"""Budget admission with reservations against each store (SQLite file, real PostgreSQL):
holds count against the limit, a row settles its hold, a dead instance's holds expire, and the
output bound comes from the setting, the recent outputs, or the default."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from app.budgets.admission import Admission
from app.budgets.store import PgBudgets, SqliteBudgets
from app.config import BudgetConfig, LedgerSettings
from app.config.ledger import DEFAULT_RESERVE_OUTPUT
from app.events import RequestFinished, Usage
from app.proxy.routing import Refusal, Route
from tests.books import Books
from tests.unit.test_ledger import PRICES

ROUTE = Route("anthropic", "claude-sonnet-4-5", "active", "claude-sonnet-4-5")
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 4000, "messages": [{"role": "user", "content": "hi " * 3000}]}


@pytest.fixture(params=["sqlite", "pg"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Books:
    return Books(request.param, tmp_path, request.getfixturevalue("pg_server") if request.param == "pg" else None)


def admission(books: Books, limit: float, *, now: float, reserve: int = 0, instance: str = "i1",
              ttl: float = 900.0) -> Admission:
    ledger = books.ledger(PRICES, LedgerSettings())
    ledger.start()  # the schema
    ledger.close()
    store = PgBudgets(books.url) if books.url else SqliteBudgets(books.path)
    return Admission((BudgetConfig("all", "day", limit, 0.8, "block"),), PRICES, store, instance=instance,
                     reserve_output_tokens=reserve, now=lambda: now, hold_ttl_s=ttl)


def finished(rid: str, t: float, usage: Usage) -> RequestFinished:
    return RequestFinished(rid, t, t + 1, "S", "claude-cli", "active", "anthropic", "claude-sonnet-4-5",
                           "claude-sonnet-4-5", True, 200, None, None, 100.0, 1000.0, usage)


def test_holds_count_against_the_limit_and_rows_settle_them(books: Books) -> None:
    now = time.time()
    adm = admission(books, 0.10, now=now, reserve=4000)
    one = adm.estimate(ROUTE, BODY, 3000, now)
    assert one == pytest.approx((3000 * 3 + 4000 * 15) / 1e6, rel=0.2)  # ~$0.07
    try:
        assert adm.reserve_sync(ROUTE, "r1", BODY) == ROUTE
        # $0.07 held of $0.10: spent + held is still under the limit, so one more gets in ...
        assert adm.reserve_sync(ROUTE, "r2", BODY) == ROUTE
        third = adm.reserve_sync(ROUTE, "r3", BODY)  # ... and then $0.14 held: no more
        assert isinstance(third, Refusal) and third.error_type == "billing_error"
        # r1 finishes having cost far less than it held: its row settles the hold to the real cost
        ledger = books.ledger(PRICES)
        ledger.start()
        ledger.record(finished("r1", now, Usage(1000, 10)))
        ledger.record(finished("r2", now, Usage(1000, 10)))
        assert ledger.flush(5)
        ledger.close()
        assert books.raw("SELECT count(*) FROM budget_holds WHERE request_id IN ('r1', 'r2')") == [(0,)]
        [(spent,)] = books.raw("SELECT spent FROM budget_counters")
        assert spent == pytest.approx(2 * (1000 * 3 + 10 * 15) / 1e6)
        assert adm.reserve_sync(ROUTE, "r4", BODY) == ROUTE  # room again
    finally:
        adm.close()


def test_a_finished_requests_hold_counts_at_its_real_cost_until_its_row_settles_it(books: Books) -> None:
    """No phantom reservation between a request's end and its row: Claude Code sends the next
    request at once, and the finished one's hold must not refuse it; nor may it count twice."""
    now = time.time()
    adm = admission(books, 0.05, now=now, reserve=4000)
    real = finished("r1", now, Usage(10000, 500))  # $0.0375 of the $0.05, where ~$0.07 was held
    try:
        assert adm.reserve_sync(ROUTE, "r1", BODY) == ROUTE
        assert isinstance(adm.reserve_sync(ROUTE, "r2", BODY), Refusal)  # r1's hold fills the budget
        adm.sink(real)  # r1 has ended; the writer has not written its row yet
        assert adm.reserve_sync(ROUTE, "r2", BODY) == ROUTE  # r1 counts at what it cost
        ledger = books.ledger(PRICES)
        ledger.start()
        ledger.record(real)
        assert ledger.flush(5)
        ledger.close()
        # the row settled r1's hold (the counter has its cost) before this instance heard of the
        # commit: counted once, so r2 (re-admitted under its id, its own hold aside) still passes
        assert books.raw("SELECT count(*) FROM budget_holds WHERE request_id = 'r1'") == [(0,)]
        assert adm.reserve_sync(ROUTE, "r2", BODY) == ROUTE
        adm.settled(["r1"])
        assert "r1" not in adm._settling_costs()
    finally:
        adm.close()


def test_a_dead_instances_holds_expire_and_a_restart_forgets_its_own(books: Books) -> None:
    """On PostgreSQL a hold expires by the database's clock (an instance's own clock may run
    ahead), so the test lets a 1 s hold really expire; SQLite (one instance) uses the caller's."""
    now = time.time()
    dead = admission(books, 0.05, now=now, reserve=4000, instance="dead", ttl=1.0)
    try:
        assert dead.reserve_sync(ROUTE, "d1", BODY) == ROUTE  # then the instance dies: its hold stays
    finally:
        dead.close()
    alive = admission(books, 0.05, now=now + 0.5, reserve=4000, instance="alive")
    later = admission(books, 0.05, now=now + 2.0, reserve=4000, instance="alive")
    try:
        assert isinstance(alive.reserve_sync(ROUTE, "a1", BODY), Refusal)  # the dead one's hold still counts
        if books.url:
            time.sleep(1.2)
        assert later.reserve_sync(ROUTE, "a2", BODY) == ROUTE  # ... until it expires
        # a restart of "dead" removes what it held before, and nothing held since
        assert later.store.forget_instance("dead", now + 5.0) == 1  # restarted 5 s later
        assert later.store.forget_instance("alive", now - 5.0) == 0
    finally:
        alive.close()
        later.close()


def test_the_output_bound(books: Books) -> None:
    now = time.time()
    adm = admission(books, 100.0, now=now)
    try:
        assert adm.output_bound() == (DEFAULT_RESERVE_OUTPUT, "the default")  # nothing recorded yet
        ledger = books.ledger(PRICES)
        ledger.start()
        for i in range(100):
            ledger.record(finished(f"o{i}", now - 1000 + i, Usage(100, 100 + 10 * i)))
        ledger.close()
        adm._p95_at = -1e9  # refresh now rather than in five minutes
        bound, source = adm.output_bound()
        assert bound == 100 + 10 * 94 and "95th percentile" in source
        adm.reconfigure(adm.budgets, PRICES, reserve_output_tokens=8192)
        assert adm.output_bound() == (8192, "[ledger] reserve_output_tokens")
    finally:
        adm.close()


def test_a_budget_full_of_holds_says_what_is_spent_and_what_is_held(books: Books) -> None:
    """Requests in flight, not spending, fill the budget: the 429 says so, not "used up: $0.00 of $0.10"."""
    now = time.time()
    adm = admission(books, 0.10, now=now, reserve=4000)
    one = adm.estimate(ROUTE, BODY, 3000, now)
    try:
        assert adm.reserve_sync(ROUTE, "r1", BODY) == ROUTE
        assert adm.reserve_sync(ROUTE, "r2", BODY) == ROUTE
        refused = adm.reserve_sync(ROUTE, "r3", BODY)
        assert isinstance(refused, Refusal) and refused.status == 429
        msg = refused.message
        assert "used up: $0.00" not in msg
        m = re.search(r"is full for now: \$0\.00 spent today and (\$[0-9.]+) held by requests still in flight, "
                      r"of \$0\.10 on all backends", msg)
        assert m is not None, msg
        assert float(m.group(1)[1:]) == pytest.approx(2 * one, rel=0.2)  # the two holds
        assert "settle to what the requests really cost" in msg and "resets" in msg
    finally:
        adm.close()


def test_a_used_up_budget_with_holds_says_both() -> None:
    from app.budgets.limits import block_refusal

    b = BudgetConfig("all", "day", 0.10, 0.8, "block")
    now = time.time()
    both = block_refusal(b, 0.12, now + 3600, now, None, held=0.05).message
    assert "is used up: $0.12 of $0.10 spent today on all backends, and $0.05 more is held by requests still in " \
           "flight. It resets" in both
    plain = block_refusal(b, 0.12, now + 3600, now, None).message
    assert "is used up: $0.12 of $0.10 spent today on all backends. It resets" in plain and "held" not in plain


def test_a_persons_and_a_groups_counters_are_seeded_from_their_rows_and_settled_by_new_ones(books: Books) -> None:
    """Per-person and per-group budgets charge counters of their own: seeded from the rows that
    name the person (or list the group) when first met, settled by each new row of theirs, and
    never by someone else's."""
    now = time.time()
    one = (1000 * 3 + 10 * 15) / 1e6  # what each finished request below costs
    ledger = books.ledger(PRICES, LedgerSettings())
    ledger.start()
    for rid, user, groups in (("a1", "alice@corp.example", ("eng",)), ("a2", "alice@corp.example", ("eng", "ops")),
                              ("b1", "bob@corp.example", ("ops",)), ("c1", None, ())):
        ledger.record(replace(finished(rid, now - 60, Usage(1000, 10)), user=user, groups=groups))
    assert ledger.flush(5)
    budgets = (BudgetConfig("each-user", "day", 1.0), BudgetConfig("group:ops", "day", 1.0),
               BudgetConfig("user:Bob@corp.example", "day", 1.0))
    store = PgBudgets(books.url) if books.url else SqliteBudgets(books.path)
    adm = Admission(budgets, PRICES, store, instance="i1", reserve_output_tokens=10, now=lambda: now)
    try:
        assert adm.reserve_sync(ROUTE, "a3", BODY, user="alice@corp.example", groups=("eng", "ops")) == ROUTE
        assert adm.reserve_sync(ROUTE, "b2", BODY, user="bob@corp.example", groups=("ops",)) == ROUTE
        spent = dict(books.raw("SELECT scope, spent FROM budget_counters"))
        assert spent == pytest.approx({"user:alice@corp.example": 2 * one, "group:ops": 2 * one,
                                       "user:bob@corp.example": one})
        holds = sorted(books.raw("SELECT request_id, scope FROM budget_holds"))
        assert holds == [("a3", "group:ops"), ("a3", "user:alice@corp.example"),
                         ("b2", "group:ops"), ("b2", "user:bob@corp.example")]  # bob's two budgets: one counter
        ledger.record(replace(finished("a3", now, Usage(1000, 10)), user="alice@corp.example", groups=("eng", "ops")))
        assert ledger.flush(5)
        spent = dict(books.raw("SELECT scope, spent FROM budget_counters"))
        assert spent == pytest.approx({"user:alice@corp.example": 3 * one, "group:ops": 3 * one,
                                       "user:bob@corp.example": one})
        assert sorted(books.raw("SELECT request_id FROM budget_holds")) == [("b2",), ("b2",)]
        # single-user mode (no sender): none of these budgets applies, nothing is held
        assert adm.reserve_sync(ROUTE, "x1", BODY) == ROUTE
        assert books.raw("SELECT count(*) FROM budget_holds WHERE request_id = 'x1'") == [(0,)]
    finally:
        adm.close()
        ledger.close()


def test_a_persons_block_names_them_and_ends_with_the_budgets_blocked_message(books: Books) -> None:
    now = time.time()
    budget = BudgetConfig("each-user", "day", 0.01, blocked_message="Ask #ai-platform for more.")
    store = PgBudgets(books.url) if books.url else SqliteBudgets(books.path)
    ledger = books.ledger(PRICES, LedgerSettings())
    ledger.start()
    adm = Admission((budget,), PRICES, store, instance="i1", reserve_output_tokens=4000, now=lambda: now)
    try:
        assert adm.reserve_sync(ROUTE, "a1", BODY, user="alice@corp.example") == ROUTE
        refusal = adm.reserve_sync(ROUTE, "a2", BODY, user="alice@corp.example")
        assert isinstance(refusal, Refusal) and refusal.status == 429 and refusal.error_type == "billing_error"
        assert "by alice@corp.example" in refusal.message and refusal.message.endswith("Ask #ai-platform for more.")
        assert "limit_usd" not in refusal.message  # a team member cannot edit the gateway's settings
        assert adm.reserve_sync(ROUTE, "b1", BODY, user="bob@corp.example") == ROUTE
    finally:
        adm.close()
        ledger.close()


def test_a_person_past_warn_at_gets_their_own_utilisation_headers(books: Books) -> None:
    now = time.time()
    one = (1000 * 3 + 10 * 15) / 1e6
    ledger = books.ledger(PRICES, LedgerSettings())
    ledger.start()
    for i in range(2):
        ledger.record(replace(finished(f"a{i}", now - 60, Usage(1000, 10)), user="alice@corp.example"))
    assert ledger.flush(5)
    budget = BudgetConfig("each-user", "day", 3 * one, warn_at=0.5)
    store = PgBudgets(books.url) if books.url else SqliteBudgets(books.path)
    adm = Admission((budget,), PRICES, store, instance="i1", reserve_output_tokens=10, now=lambda: now)
    try:
        assert adm.reserve_sync(ROUTE, "a9", BODY, user="alice@corp.example") == ROUTE
        headers = dict(adm.headers_for("a9"))
        assert headers[b"anthropic-ratelimit-unified-status"] == b"allowed_warning"
        assert headers[b"anthropic-ratelimit-unified-5h-utilization"] == b"0.67"  # 2 of 3 requests' worth
        assert adm.reserve_sync(ROUTE, "b9", BODY, user="bob@corp.example") == ROUTE
        assert adm.headers_for("b9") == ()  # bob has spent nothing of his own
    finally:
        adm.close()
        ledger.close()
