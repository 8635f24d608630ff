"""Budget leases (app/budgets/lease.py) against each store (SQLite file, real PostgreSQL):
a busy person far from the cap is admitted without a transaction per request, the spend never
passes the cap however many requests the lease admits, and near the cap every request goes
through the exact per-request path again."""

from __future__ import annotations

import time

import pytest

from app.budgets.admission import LEASE_AFTER, Admission
from app.events import Usage
from app.proxy.routing import Refusal
from app.proxy.tokens import estimate_tokens
from tests.books import Books
from tests.unit.test_admission import BODY, ROUTE, admission, finished
from tests.unit.test_admission import books as books  # noqa: F401  (a fixture)
from tests.unit.test_ledger import PRICES


def charge(adm: Admission, now: float) -> float:
    """What admission holds for one request of BODY."""
    amount, exposure, _low, _plain = adm._charge(ROUTE, BODY, estimate_tokens(dict(BODY)), now, False)
    return amount + exposure


def test_a_busy_person_far_from_the_cap_costs_one_transaction_per_lease_not_per_request(books: Books) -> None:
    now = time.time()
    adm = admission(books, 1000.0, now=now, reserve=4000)
    try:
        for i in range(200):
            assert adm.reserve_sync(ROUTE, f"r{i}", BODY) == ROUTE
        # the first LEASE_AFTER requests hold one by one; then a lease holds room for many
        per_request = books.raw("SELECT count(*) FROM budget_holds WHERE substr(request_id, 1, 6) <> 'lease:'")[0][0]
        assert per_request == LEASE_AFTER - 1
        assert adm.leases.renewals <= 200 // 32 + 2
        [(held,)] = books.raw("SELECT sum(amount) FROM budget_holds WHERE substr(request_id, 1, 6) = 'lease:'")
        assert held >= (200 - LEASE_AFTER + 1) * charge(adm, now) * 0.999  # every request on it is held in the database
    finally:
        adm.close()


def test_a_lease_never_lets_the_spend_pass_the_cap(books: Books) -> None:
    """Requests that each cost what they held: admitted on the lease far from the cap, by the
    exact path near it, and the cap holds exactly (no request admitted past what fits)."""
    now = time.time()
    limit = 30.0
    adm = admission(books, limit, now=now, reserve=4000)
    one = charge(adm, now)
    ledger = books.ledger(PRICES)
    ledger.start()
    admitted = 0
    pending: list[str] = []
    try:
        for i in range(int(limit / one) + 20):
            rid = f"r{i}"
            if isinstance(adm.reserve_sync(ROUTE, rid, BODY), Refusal):
                continue
            admitted += 1
            ev = finished(rid, now, Usage(estimate_tokens(dict(BODY)), 4000))  # what it held
            adm.sink(ev)
            ledger.record(ev)
            pending.append(rid)
            if i % 5 == 0:  # the ledger's on_commit, as the gateway wires it
                assert ledger.flush(5)
                adm.settled(pending)
                pending.clear()
        assert ledger.flush(5)
    finally:
        ledger.close()
        adm.close()
    [(spent,)] = books.raw("SELECT sum(cost_usd) FROM requests")
    assert spent <= limit + one  # the exact path's bound: at most one request past the room it was admitted into
    assert adm.leases.renewals >= 1  # the lease was used on the way
    assert admitted > limit * 0.8 / one  # and the exact path near the cap admits past the leases' warning line


@pytest.mark.parametrize("books", ["pg"], indirect=True)  # one SQLite file serves one instance
def test_two_instances_leases_share_one_cap(books: Books) -> None:
    """Each instance leases room of its own; both leases and the per-request holds count against one cap."""
    instances = 2
    now = time.time()
    limit = 30.0
    adms = [admission(books, limit, now=now, reserve=4000, instance=f"i{k}") for k in range(instances)]
    one = charge(adms[0], now)
    try:
        admitted = 0
        for i in range(int(limit / one) * 2):
            if not isinstance(adms[i % instances].reserve_sync(ROUTE, f"r{i}", BODY), Refusal):
                admitted += 1
        assert sum(a.leases.renewals for a in adms) >= 2  # both leased
        # nothing settled: every admitted request still holds, and no more were admitted than fit
        # (the exact path's bound: the last one admitted may pass the cap by what it holds)
        assert admitted * one <= limit + one
        assert admitted * one > limit - 2 * one
    finally:
        for a in adms:
            a.close()


def test_a_stream_on_a_lease_grows_in_memory_and_a_finished_one_frees_its_charge(books: Books) -> None:
    now = time.time()
    adm = admission(books, 1000.0, now=now, reserve=4000)
    stream = dict(BODY, stream=True)
    try:
        for i in range(LEASE_AFTER + 2):
            assert adm.reserve_sync(ROUTE, f"s{i}", stream) == ROUTE
        rid = f"s{LEASE_AFTER + 1}"
        assert adm.leases.keys_of(rid) is not None
        before = adm.leases.renewals
        charge = adm.leases.charge_of(rid)
        assert adm.leases.grow(rid, charge * 2) is True  # in memory: no transaction
        assert adm.leases.renewals == before
        adm.sink(finished(rid, now, Usage(100, 10)))
        assert adm.leases.charge_of(rid) < charge  # its real cost now
    finally:
        adm.close()


def test_a_read_is_forwarded_whole_only_when_the_hold_covers_it(books: Books) -> None:
    """Far from the cap a stream on a lease grows in memory to cover a whole upstream read (one
    write, one meter check); near the cap a stream's hold does not cover it, and the gateway checks
    each event as before (the stream stops before the event that passes the cap)."""
    now = time.time()
    stream = dict(BODY, stream=True)
    near = admission(books, 0.2, now=now, reserve=4000, instance="i2")
    try:
        assert near.reserve_sync(ROUTE, "n1", stream) == ROUTE  # the exact path: a hold of its own
        assert near.leases.keys_of("n1") is None
        assert near.covers("n1", 60_000) is False  # ~20,000 output tokens' worth of bytes
    finally:
        near.close()
    far = admission(books, 1000.0, now=now, reserve=4000)
    try:
        for i in range(LEASE_AFTER + 1):
            assert far.reserve_sync(ROUTE, f"s{i}", stream) == ROUTE
        rid = f"s{LEASE_AFTER}"
        before, charge = far.leases.renewals, far.leases.charge_of(rid)
        assert far.covers(rid, 60_000) is True
        assert far.leases.charge_of(rid) > charge and far.leases.renewals == before  # in memory
    finally:
        far.close()


@pytest.mark.parametrize("books", ["pg"], indirect=True)  # the reaper runs on PostgreSQL
def test_a_dead_instances_lease_is_charged_to_its_sender_by_the_reaper(books: Books) -> None:
    import psycopg

    from app.budgets.hold_reaper import reap

    now = time.time()
    dead = admission(books, 1000.0, now=now, reserve=4000, instance="dead")
    for i in range(LEASE_AFTER + 3):
        assert dead.reserve_sync(ROUTE, f"d{i}", BODY, user="alice@corp.example", groups=("eng",)) == ROUTE
    [(lease_id, amount)] = books.raw("SELECT request_id, amount FROM budget_holds WHERE substr(request_id, 1, 6) = "
                                     "'lease:'")
    dead.store.close()  # killed: no clean stop gives its lease back
    with psycopg.connect(books.url, autocommit=True) as conn:
        conn.execute("INSERT INTO instances VALUES ('dead', extract(epoch from clock_timestamp()) - 100)")
        written = reap(conn)
    assert lease_id in written
    [(user, groups, cost, status)] = books.raw(f"SELECT user_id, groups, cost_usd, status FROM requests WHERE "
                                               f"request_id = '{lease_id}'")
    assert (user, groups, status) == ("alice@corp.example", "eng", 499)
    assert cost == pytest.approx(amount)  # at most one lease above what its requests cost
