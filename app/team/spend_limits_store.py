"""Spend limits in the ledger's own database, and the watcher that brings them to admission.

The ``spend_limits`` table (ledger schema v9 in SQLite, v6 in PostgreSQL) lives next to the ledger's
rows: the SQLite ledger file for a single instance, the shared PostgreSQL ledger for a team, so
every instance sees one set. Each change (``upsert``, ``delete``) writes its ``team_audit`` row
(before / after, who) in the same transaction, so the trail never misses a change nor records one
that did not happen; changes are serialised (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a
transaction-scoped advisory lock).

``LimitWatcher`` reads the whole table again every ``POLL_S`` (a handful of rows, one indexed
statement) on a thread of its own and swaps the tuple admission reads, so a cap set on any
instance applies on every instance within ``POLL_S`` plus one statement (docs/team.md). While the
database cannot be read it keeps the last set it read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from app.config.ledger import TeamLedger
from app.team.keystore import AuditEntry, entry_of
from app.team.spend_limits import LimitError, LimitInput, SpendLimit, new_limit_id

log = logging.getLogger("patchbay.spend_limits")

POLL_S = 0.25
WRITE_LOCK = 0x73706c6d  # pg_advisory_xact_lock key while a spend limit changes ("splm")
_COLS = ("id, scope_type, scope_id, period, amount_cents, action, warn_at, blocked_message, created_at, "
         "updated_at, updated_by")


class LimitStoreUnavailable(Exception):
    """The database does not answer (503 ``api_error``): ``str()`` names it, never its password."""


def _limit(row: Sequence[Any]) -> SpendLimit:
    return SpendLimit(row[0], row[1], row[2], row[3], None if row[4] is None else int(row[4]), row[5],
                      float(row[6]), row[7], float(row[8]), float(row[9]), row[10])


def snapshot(limit: SpendLimit | None) -> dict[str, Any] | None:
    """A limit as the audit trail keeps it (before / after)."""
    return None if limit is None else limit.to_json()


class SpendLimitStore:
    """``spend_limits`` and its audit rows over SQLite (``path``) or PostgreSQL (``url``)."""

    def __init__(self, *, path: Path | None = None, url: str | None = None, team: TeamLedger = TeamLedger()) -> None:
        self.pg = url is not None
        self._path = path
        self._url = url
        if url is not None:
            from app.ledger.pg import connect_kwargs, describe

            self._kwargs = connect_kwargs(team)
            self.where = f"the PostgreSQL ledger at {describe(url)}"
        else:
            from app.ledger.schema import open_db

            assert path is not None
            conn, _ = open_db(path)  # the ledger's own migrations make the table
            conn.close()
            self.where = f"the ledger file {path}"

    # ------------------------------------------------------------------ plumbing

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection (autocommit), closed after; the database's failures as ``LimitStoreUnavailable``."""
        conn: Any
        try:
            if self.pg:
                import psycopg

                conn = psycopg.connect(self._url, autocommit=True, **self._kwargs)  # type: ignore[arg-type]
            else:
                conn = sqlite3.connect(self._path, isolation_level=None, timeout=10.0)  # type: ignore[arg-type]
        except Exception as exc:
            raise LimitStoreUnavailable(f"Patchbay cannot reach {self.where} ({_why(exc)}).") from None
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _tx(self, conn: Any) -> Iterator[None]:
        if self.pg:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _rows(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(conn.execute(self._sql(sql), tuple(params)).fetchall())

    def _run(self, work: Callable[[Any], Any]) -> Any:
        try:
            with self.connect() as conn:
                return work(conn)
        except (LimitStoreUnavailable, LimitError):
            raise
        except Exception as exc:
            raise LimitStoreUnavailable(f"{self.where} refused a spend-limit statement ({_why(exc)}).") from None

    # ------------------------------------------------------------------ reads

    def load(self, conn: Any | None = None) -> tuple[SpendLimit, ...]:
        sql = f"SELECT {_COLS} FROM spend_limits ORDER BY created_at, id"
        if conn is not None:
            return tuple(_limit(r) for r in self._rows(conn, sql))
        return tuple(_limit(r) for r in self._run(lambda c: self._rows(c, sql)))

    def get(self, limit_id: str) -> SpendLimit | None:
        rows = self._run(lambda c: self._rows(c, f"SELECT {_COLS} FROM spend_limits WHERE id = ?", (limit_id,)))
        return _limit(rows[0]) if rows else None

    def spent(self, users: Sequence[str], start: float, end: float) -> dict[str, float]:
        """What each of ``users`` spent in ``[start, end)`` by the ledger's rows (US dollars)."""
        if not users:
            return {}
        marks = ", ".join("?" for _ in users)
        sql = (f"SELECT user_id, {'coalesce(sum(cost_usd), 0)' if self.pg else 'total(cost_usd)'} FROM requests "
               f"WHERE started_at >= ? AND started_at < ? AND user_id IN ({marks}) GROUP BY user_id")
        rows = self._run(lambda c: self._rows(c, sql, [start, end, *users]))
        return {r[0]: float(r[1] or 0.0) for r in rows}

    def people(self, since: float) -> list[tuple[str, tuple[str, ...]]]:
        """Everyone with a row since ``since``, with the groups of their latest row."""
        if self.pg:
            sql = ("SELECT DISTINCT ON (user_id) user_id, groups FROM requests WHERE started_at >= ? AND user_id IS "
                   "NOT NULL ORDER BY user_id, started_at DESC")
        else:
            sql = ("SELECT user_id, groups, max(started_at) FROM requests WHERE started_at >= ? AND user_id IS NOT NULL "
                   "GROUP BY user_id ORDER BY user_id")
        rows = self._run(lambda c: self._rows(c, sql, (since,)))
        return [(r[0], tuple(g for g in (r[1] or "").split(",") if g)) for r in rows]

    def audit(self, limit: int, after_seq: int | None) -> list[AuditEntry]:
        """The spend limits' audit entries, newest first, older than ``after_seq`` when given."""
        sql = "SELECT seq, at, actor, action, subject, detail FROM team_audit WHERE action LIKE 'spend_limit.%'"
        params: list[Any] = []
        if after_seq is not None:
            sql += " AND seq < ?"
            params.append(after_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [entry_of(r) for r in self._run(lambda c: self._rows(c, sql, params))]

    # ------------------------------------------------------------------ changes

    def _audit(self, conn: Any, actor: str, action: str, subject: str, before: SpendLimit | None,
               after: SpendLimit | None) -> None:
        detail = json.dumps({"before": snapshot(before), "after": snapshot(after), "reason": None}, sort_keys=True)
        cast = "?::jsonb" if self.pg else "?"
        conn.execute(self._sql(f"INSERT INTO team_audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, {cast})"),
                     (time.time(), actor, action, subject, detail))

    def upsert(self, inp: LimitInput, actor: str, limit_id: str | None = None) -> SpendLimit:
        """Create or replace the limit of ``inp``'s scope and period (it keeps its id), or, with
        ``limit_id``, change that limit (``LimitError`` when it would take another's scope and period)."""

        def work(conn: Any) -> SpendLimit:
            now = time.time()
            with self._tx(conn):
                same = self._rows(conn, f"SELECT {_COLS} FROM spend_limits WHERE scope_type = ? AND scope_id = ? "
                                  "AND period = ?", (inp.scope_type, inp.scope_id, inp.period))
                before = _limit(same[0]) if same else None
                if limit_id is not None:
                    rows = self._rows(conn, f"SELECT {_COLS} FROM spend_limits WHERE id = ?", (limit_id,))
                    if not rows:
                        raise LimitError("spend limit not found")
                    if before is not None and before.id != limit_id:
                        raise LimitError(f"another spend limit ({before.id}) has that scope and period: change or "
                                         "delete that one")
                    before = _limit(rows[0])
                after = SpendLimit(before.id if before else new_limit_id(), inp.scope_type, inp.scope_id, inp.period,
                                   inp.amount_cents, inp.action, inp.warn_at, inp.blocked_message,
                                   before.created_at if before else now, now, actor)
                if before is not None:
                    conn.execute(self._sql("DELETE FROM spend_limits WHERE id = ?"), (before.id,))
                conn.execute(self._sql(f"INSERT INTO spend_limits ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                             (after.id, after.scope_type, after.scope_id, after.period, after.amount_cents,
                              after.action, after.warn_at, after.blocked_message, after.created_at, after.updated_at,
                              after.updated_by))
                self._audit(conn, actor, "spend_limit.upsert", after.id, before, after)
            return after

        result: SpendLimit = self._run(work)
        return result

    def delete(self, limit_id: str, actor: str) -> SpendLimit | None:
        def work(conn: Any) -> SpendLimit | None:
            with self._tx(conn):
                rows = self._rows(conn, f"SELECT {_COLS} FROM spend_limits WHERE id = ?", (limit_id,))
                if not rows:
                    return None
                before = _limit(rows[0])
                conn.execute(self._sql("DELETE FROM spend_limits WHERE id = ?"), (limit_id,))
                self._audit(conn, actor, "spend_limit.delete", limit_id, before, None)
            return before

        result: SpendLimit | None = self._run(work)
        return result


class LimitWatcher:
    """The current spend limits, read again every ``POLL_S`` on a thread of its own."""

    def __init__(self, store: SpendLimitStore, poll_s: float = POLL_S) -> None:
        self.store = store
        self.poll_s = poll_s
        self.limits: tuple[SpendLimit, ...] = ()  # swapped whole: readers take the reference
        self.read_at = 0.0  # when the table was last read (time.monotonic); 0: never
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="patchbay-spend-limits", daemon=True)

    def start(self) -> LimitWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh(self, conn: Any | None = None) -> None:
        self.limits = self.store.load(conn)
        self.read_at = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.store.connect() as conn:
                    while not self._stop.is_set():
                        self.refresh(conn)
                        if self._failing:
                            log.info("spend limits can be read again from %s", self.store.where)
                            self._failing = False
                        self._stop.wait(self.poll_s)
            except Exception as exc:  # keep the last limits read; try again
                if not self._failing:
                    log.warning("spend limits cannot be read from %s (%s); the last ones read stay in force",
                                self.store.where, _why(exc))
                    self._failing = True
                self._stop.wait(1.0)


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
