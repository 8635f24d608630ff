"""Budget counters and reservations in the ledger's own database, for ``admission.py``.

``reserve`` runs one transaction: it locks the budget counters (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: the advisory lock the ledger writer also takes before it settles a batch), seeds a
counter that does not exist yet from the rows already in the ledger, reads what is spent and what
live reservations hold, lets ``decide`` choose, and stores the reservations it asks for, replacing
any this request held before (a fallback re-admits under the same id). The ledger writer settles a
reservation when the request's row arrives: its cost goes into the counters and the hold goes, in
the row's own transaction. A hold of an instance that died expires ``ttl_s`` after it was made
(``hold_reaper.py`` writes its row sooner, from the instance's heartbeat).

Each hold has an ``amount`` (counted against the limit) and an ``exposure``: what the request may
still cost beyond it until the upstream says what its prompt cost (admission.py). On PostgreSQL
every time a hold is compared with or stamped by is the database's (``DB_NOW``), so an instance
whose clock runs ahead or behind neither ignores the others' holds nor has its own ignored;
``clock()`` is this instance's time corrected by the database's, for the budgets' periods.

Between a request's end and its row's commit (the writer batches, the upstream's body may still be
draining) its hold would still count at the estimate, and the client's next request (Claude Code
sends it at once) could be refused although the budget has room: a phantom reservation. So
``reserve`` takes ``settling``, the real cost of requests this instance finished whose rows may
not be written yet, and counts each hold of theirs still in the database at that cost instead.
A hold already settled is gone, and its row's cost is in the counter: nothing is counted twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from app.config.ledger import TeamLedger
from app.ledger.pg import DB_NOW
from app.ledger.pg_revive import unreachable, watcher
from app.ledger.store import PLAN_PREFIX, stored_group

T = TypeVar("T")
CounterKey = tuple[str, float, float]  # (scope, period start, period end)
Numbers = dict[CounterKey, tuple[float, float, float]]  # key -> (spent, held by live holds, their exposure)
NOTHING = (0.0, 0.0, 0.0)  # the numbers of a counter nobody has charged yet: nothing spent, held or exposed
Hold = tuple[CounterKey, float, float]  # (counter, amount, exposure)
Decide = Callable[[Numbers], tuple[T, Sequence[Hold]]]
Meta = tuple[float, str]  # a hold's (request start, detail as JSON): what its row needs (hold_reaper.py)
Settling = Mapping[str, float]  # request id -> the real cost of a finished request, its row not yet written

_SPENT = ("SELECT (SELECT total(cost_usd) FROM usage_hourly WHERE hour_start >= ? AND hour_start < ?{b}) + "
          "(SELECT total(cost_usd) FROM requests WHERE ((started_at >= ? AND started_at < ?) OR "
          "(started_at >= ? AND started_at < ?)){b})")


_PG_NUMBERS = (
    "SELECT c.scope, c.period_start, c.period_end, c.spent, coalesce(h.held, 0.0), coalesce(h.exposed, 0.0) "
    "FROM budget_counters c LEFT JOIN LATERAL (SELECT sum(amount) AS held, sum(exposure) AS exposed FROM "
    f"budget_holds h WHERE h.scope = c.scope AND h.period_start = c.period_start AND h.expires_at > {DB_NOW} "
    "AND h.request_id <> %s) h ON true WHERE (c.scope, c.period_start, c.period_end) IN "
    "(SELECT * FROM unnest(%s::text[], %s::float8[], %s::float8[]))"
)

_PG_HELD = ("SELECT coalesce(sum(amount), 0.0), coalesce(sum(exposure), 0.0) FROM budget_holds WHERE scope = %s AND "
            f"period_start = %s AND expires_at > {DB_NOW} AND request_id <> %s")

_PG_HOLD = (
    f"INSERT INTO budget_holds SELECT %s, s, p, a, %s, {DB_NOW} + %s, e, %s, %s "
    "FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::float8[]) "
    "AS x(s, p, a, e) ON CONFLICT (request_id, scope, period_start) DO UPDATE SET amount = excluded.amount, "
    "expires_at = excluded.expires_at, exposure = excluded.exposure, "
    "started_at = coalesce(excluded.started_at, budget_holds.started_at), "
    "detail = coalesce(excluded.detail, budget_holds.detail)"
)


_PG_GROW = (
    f"UPDATE budget_holds h SET amount = x.a, exposure = x.e, expires_at = {DB_NOW} + %s FROM unnest(%s::text[], "
    "%s::float8[], %s::float8[], %s::float8[]) AS x(s, p, a, e) WHERE h.request_id = %s AND h.scope = x.s AND "
    "h.period_start = x.p"
)


def _spent_params(start: float, end: float, subject: str) -> tuple[str, list[Any]]:
    """The SQL (SQLite spelling) and parameters of what the ledger's rows spent on ``subject``
    (a counter's scope: ``all``, ``backend:ID``, ``user:ID``, ``group:NAME``) in ``[start, end)``.
    ``all`` and backend counters read the hourly rollups for the whole hours (the request rows of
    old hours may have been pruned); the rollups know no person, so a person's or a group's
    counter reads their request rows."""
    if subject.startswith(PLAN_PREFIX):  # spend plus what a Claude subscription's requests are worth
        sql, params = _spent_params(start, end, subject[len(PLAN_PREFIX):])
        kind, _, value = subject[len(PLAN_PREFIX):].partition(":")
        where = {"all": "", "backend": " AND backend = ?", "user": " AND user_id = ?",
                 "group": " AND instr(',' || groups || ',', ?) > 0"}[kind if value else "all"]
        extra = [] if not where else [f",{stored_group(value)}," if kind == "group" else value]
        return (f"SELECT ({sql}) + (SELECT total(api_equiv_usd) FROM requests WHERE plan = 'subscription' AND "
                f"started_at >= ? AND started_at < ?{where})", [*params, start, end, *extra])
    kind, _, value = subject.partition(":")
    if kind in ("user", "group"):
        where = "user_id = ?" if kind == "user" else "instr(',' || groups || ',', ?) > 0"
        needle = value if kind == "user" else f",{stored_group(value)},"
        return (f"SELECT total(cost_usd) FROM requests WHERE started_at >= ? AND started_at < ? AND {where}",
                [start, end, needle])
    backend = value if kind == "backend" else None
    h0 = -(-start // 3600) * 3600
    h1 = end // 3600 * 3600
    if h1 < h0:
        h0 = h1 = end
    b = " AND backend = ?" if backend else ""
    extra = [backend] if backend else []
    return _SPENT.format(b=b), [h0, h1, *extra, start, h0, h1, end, *extra]


def count_at_cost(numbers: Numbers, holds: Iterable[Sequence[Any]], settling: Settling) -> None:
    """Count each still-live hold ``(request_id, scope, period_start, amount, exposure)`` of a
    finished request at its real cost: out of what is held, into what is spent."""
    for rid, scope, start, amount, exposure in holds:
        cost = settling.get(rid)
        if cost is None:
            continue
        for key, (spent, held, exposed) in numbers.items():
            if key[0] == scope and key[1] == float(start):
                numbers[key] = (spent + cost, max(0.0, held - float(amount)), max(0.0, exposed - float(exposure)))


class BudgetStore(Protocol):
    """``reserve`` with ``grow``: the request already holds; its holds are updated, never made
    again (a row that settled them meanwhile has the last word)."""

    def reserve(self, request_id: str, instance: str, keys: Sequence[CounterKey], decide: Decide[T],
                now: float, ttl_s: float, settling: Settling | None = None, meta: Meta | None = None,
                grow: bool = False) -> T: ...
    def clock(self) -> float: ...
    def recent_outputs(self, limit: int) -> list[int]: ...
    def forget_instance(self, instance: str, expiring_before: float) -> int: ...
    def release(self, request_id: str) -> None: ...  # drop the holds of a lease given back (budget_lease.py)
    def close(self) -> None: ...


class SqliteBudgets:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # one admission at a time in this process: threads queue on a lock (handed over at once)
        # instead of on SQLite's busy handler (which sleeps and retries)
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def clock(self) -> float:
        return time.time()  # one instance on one machine: its own clock is the only one

    def reserve(self, request_id: str, instance: str, keys: Sequence[CounterKey], decide: Decide[T],
                now: float, ttl_s: float, settling: Settling | None = None, meta: Meta | None = None,
                grow: bool = False) -> T:
        with self._lock:
            return self._reserve(request_id, instance, keys, decide, now, now + ttl_s, settling, meta, grow)

    def _reserve(self, request_id: str, instance: str, keys: Sequence[CounterKey], decide: Decide[T],
                 now: float, expires_at: float, settling: Settling | None, meta: Meta | None, grow: bool) -> T:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            numbers: Numbers = {}
            for key in sorted(set(keys)):
                row = conn.execute("SELECT spent FROM budget_counters WHERE scope = ? AND period_start = ? AND "
                                   "period_end = ?", key).fetchone()
                if row is None:
                    sql, params = _spent_params(key[1], key[2], key[0])
                    spent = float(conn.execute(sql, params).fetchone()[0] or 0.0)
                    conn.execute("INSERT INTO budget_counters VALUES (?,?,?,?)", (*key, spent))
                else:
                    spent = float(row[0])
                held, exposed = conn.execute("SELECT total(amount), total(exposure) FROM budget_holds WHERE "
                                             "scope = ? AND period_start = ? AND expires_at > ? AND request_id != ?",
                                             (key[0], key[1], now, request_id)).fetchone()
                numbers[key] = (spent, float(held or 0.0), float(exposed or 0.0))
            if settling:
                ids = [i for i in settling if i != request_id]
                for n in range(0, len(ids), 500):
                    chunk = ids[n:n + 500]
                    count_at_cost(numbers, conn.execute(
                        "SELECT request_id, scope, period_start, amount, exposure FROM budget_holds WHERE expires_at > ? AND "
                        f"request_id IN ({','.join('?' for _ in chunk)})", (now, *chunk)).fetchall(), settling)
            result, holds = decide(numbers)
            if grow:
                conn.executemany("UPDATE budget_holds SET amount = ?, exposure = ?, expires_at = ? WHERE request_id = ? "
                                 "AND scope = ? AND period_start = ?",
                                 [(amount, exposure, expires_at, request_id, k[0], k[1]) for k, amount, exposure in holds])
                holds = []
            if meta is None and holds:  # a hold that grows keeps what its row needs
                meta = conn.execute("SELECT started_at, detail FROM budget_holds WHERE request_id = ? LIMIT 1",
                                    (request_id,)).fetchone()
            if not grow:
                conn.execute("DELETE FROM budget_holds WHERE request_id = ?", (request_id,))
            if holds:
                started, detail = meta or (None, None)
                conn.executemany("INSERT OR REPLACE INTO budget_holds VALUES (?,?,?,?,?,?,?,?,?)",
                                 [(request_id, k[0], k[1], amount, instance, expires_at, exposure, started, detail)
                                  for k, amount, exposure in holds])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def recent_outputs(self, limit: int) -> list[int]:
        rows = self._conn().execute("SELECT output_tokens FROM requests WHERE status < 400 AND output_tokens > 0 "
                                    "ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [int(r[0]) for r in rows]

    def release(self, request_id: str) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM budget_holds WHERE request_id = ?", (request_id,))

    def forget_instance(self, instance: str, expiring_before: float) -> int:
        with self._lock:
            return int(self._conn().execute("DELETE FROM budget_holds WHERE instance = ? AND expires_at < ?",
                                            (instance, expiring_before)).rowcount)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class PgBudgets:
    def __init__(self, url: str, team: TeamLedger = TeamLedger(), max_size: int = 8) -> None:
        from psycopg_pool import ConnectionPool

        from app.ledger.pg import connect_kwargs

        self.url = url
        kwargs = {"autocommit": True, **connect_kwargs(team)}
        self._new_pool = lambda: ConnectionPool(url, min_size=1, max_size=max_size, open=False, timeout=3.0,
                                                kwargs=kwargs, name="patchbay-admission")
        self._pool = self._new_pool()
        self._pool.open(wait=False)
        # after an outage: a fresh pool at once (not the old one's reconnect backoff), then on_revived
        self.on_revived: Callable[[], None] | None = None
        self._reviver = watcher(url, kwargs)
        self._reviver.watch(self._revive)
        self._team = team
        self._offset = 0.0  # the database's clock minus this machine's, as of the last transaction

    def clock(self) -> float:
        return time.time() + self._offset

    def connect(self) -> Any:
        """A connection of its own (the heartbeat's, hold_reaper.py)."""
        import psycopg

        from app.ledger.pg import connect_kwargs

        return psycopg.connect(self.url, autocommit=True, **connect_kwargs(self._team))

    def _revive(self) -> None:
        if self._pool.closed:  # closed for good (the gateway stopped)
            return
        old, self._pool = self._pool, self._new_pool()
        self._pool.open(wait=False)
        # Closed now, not later: a request still waiting for a connection of the old pool (its reconnect
        # backoff) fails at once with PoolClosed and ``reserve`` asks the new one, instead of waiting out
        # the pool's timeout; a connection in use is closed when it is given back (psycopg_pool's rule).
        threading.Thread(target=old.close, kwargs={"timeout": 1.0}, name="patchbay-old-pool", daemon=True).start()
        if self.on_revived is not None:
            self.on_revived()

    def reserve(self, request_id: str, instance: str, keys: Sequence[CounterKey], decide: Decide[T],
                now: float, ttl_s: float, settling: Settling | None = None, meta: Meta | None = None,
                grow: bool = False) -> T:
        want = sorted(set(keys))
        pool = self._pool
        try:
            return self._reserve(pool, request_id, instance, want, decide, ttl_s, settling, meta, grow)
        except Exception as exc:
            if self._pool is not pool and _pool_lost(exc):  # the database came back while this one waited
                return self._reserve(self._pool, request_id, instance, want, decide, ttl_s, settling, meta, grow)
            if unreachable(exc):  # no connection at all (PoolTimeout), or one that broke
                self._reviver.down()
            raise

    def _reserve(self, pool: Any, request_id: str, instance: str, want: list[CounterKey], decide: Decide[T],
                 ttl_s: float, settling: Settling | None, meta: Meta | None, grow: bool) -> T:
        from app.ledger.pg import BUDGET_LOCK, pg_sql

        with pool.connection() as conn:
            try:
                # round trip 1: BEGIN, the lock, and every counter with what its live holds reserve
                # (each statement sees what committed before it started: the read comes after the lock)
                with conn.pipeline():
                    conn.execute("BEGIN")
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUDGET_LOCK,))
                    clock = conn.execute(f"SELECT {DB_NOW}")
                    cur = conn.cursor()
                    cur.execute(_PG_NUMBERS, (request_id, [k[0] for k in want], [k[1] for k in want],
                                              [k[2] for k in want]))
                    ids = [i for i in settling or () if i != request_id]
                    mine = conn.cursor()
                    if ids:
                        mine.execute("SELECT request_id, scope, period_start, amount, exposure FROM budget_holds "
                                     f"WHERE request_id = ANY(%s) AND expires_at > {DB_NOW}", (ids,))
                row = clock.fetchone()
                if row is not None:
                    self._offset = float(row[0]) - time.time()
                numbers: Numbers = {(r[0], float(r[1]), float(r[2])): (float(r[3]), float(r[4]), float(r[5]))
                                    for r in cur.fetchall()}
                finished_holds = mine.fetchall() if ids else []
                for key in want:
                    if key in numbers:
                        continue  # a counter met for the first time (a new period): seed it from the rows
                    sql, params = _spent_params(key[1], key[2], key[0])
                    spent = float((conn.execute(pg_sql(sql), params).fetchone() or (0.0,))[0] or 0.0)
                    conn.execute("INSERT INTO budget_counters VALUES (%s,%s,%s,%s)", (*key, spent))
                    held = conn.execute(_PG_HELD, (key[0], key[1], request_id)).fetchone() or (0.0, 0.0)
                    numbers[key] = (spent, float(held[0] or 0.0), float(held[1] or 0.0))
                if finished_holds and settling:
                    count_at_cost(numbers, finished_holds, settling)
                result, holds = decide(numbers)
                # round trip 2: the holds and the COMMIT. A hold this request had on another scope
                # (before a fallback re-admitted it elsewhere) stays until its row settles them all.
                started, detail = meta or (None, None)
                with conn.pipeline():
                    if holds and grow:
                        conn.execute(_PG_GROW, (ttl_s, [k[0] for k, _a, _e in holds], [k[1] for k, _a, _e in holds],
                                                [a for _k, a, _e in holds], [e for _k, _a, e in holds], request_id))
                    elif holds:
                        conn.execute(_PG_HOLD, (request_id, instance, ttl_s, started, detail,
                                                [k[0] for k, _a, _e in holds], [k[1] for k, _a, _e in holds],
                                                [a for _k, a, _e in holds], [e for _k, _a, e in holds]))
                    conn.execute("COMMIT")
            except BaseException:
                if not conn.broken:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:
                        pass
                raise
        return result

    def recent_outputs(self, limit: int) -> list[int]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT output_tokens FROM requests WHERE status < 400 AND output_tokens > 0 "
                                "ORDER BY started_at DESC LIMIT %s", (limit,)).fetchall()
        return [int(r[0]) for r in rows]

    def release(self, request_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM budget_holds WHERE request_id = %s", (request_id,))

    def forget_instance(self, instance: str, expiring_before: float) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute("DELETE FROM budget_holds WHERE instance = %s AND expires_at < %s",
                                    (instance, expiring_before)).rowcount)

    def close(self) -> None:
        self._pool.close(timeout=1.0)


def _pool_lost(exc: BaseException) -> bool:
    """``exc`` came from a pool that was closed or could not connect: worth one try on its replacement."""
    from psycopg_pool import PoolClosed

    return isinstance(exc, PoolClosed) or unreachable(exc)
