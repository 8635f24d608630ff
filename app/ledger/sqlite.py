"""The embedded SQLite store the ledger writer commits to, and its retention housekeeping.

``SqliteStore`` is the ``Store`` (app/ledger/store.py) for one SQLite file opened by
``open_db`` (WAL, ``synchronous=FULL``): one batch is one transaction, rows with an id already
stored are skipped (a retry after a failed commit repeats nothing), and the hourly and
per-session rollups and the budget counters move in the same transaction as the rows.
``delete_expired`` applies ``[ledger]`` retention in small transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.config import LedgerSettings
from app.ledger.schema import open_db
from app.ledger.store import COUNT_COLUMNS, ROW_COLUMNS, Prepared, counter_increments, rollups

_INSERT = (f"INSERT OR IGNORE INTO requests({', '.join(ROW_COLUMNS)}) "
           f"VALUES ({','.join('?' for _ in ROW_COLUMNS)})")
_UPSERT_HOUR = (
    "INSERT INTO usage_hourly VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(hour_start, backend, model) DO UPDATE SET "
    "requests = requests + excluded.requests, errors = errors + excluded.errors, "
    "unpriced = unpriced + excluded.unpriced, cost_usd = cost_usd + excluded.cost_usd, "
    "input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens"
)
_UPSERT_SESSION = (
    "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(session_id) DO UPDATE SET "
    "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen), "
    "requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, "
    "output_tokens = output_tokens + excluded.output_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, "
    "cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced, "
    "backends = CASE WHEN instr(',' || backends || ',', ',' || excluded.backends || ',') > 0 THEN backends "
    "ELSE backends || ',' || excluded.backends END, client = coalesce(client, excluded.client)"
)
_INSERT_BODY = "INSERT OR REPLACE INTO bodies VALUES (?,?,?,?,?)"
_INSERT_COUNT = (f"INSERT OR IGNORE INTO token_counts({', '.join(COUNT_COLUMNS)}) "
                 f"VALUES ({','.join('?' for _ in COUNT_COLUMNS)})")


class SqliteStore:
    """The embedded store: one SQLite file (WAL, ``synchronous=FULL``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = f"the usage ledger {self.path}"
        self.conn: sqlite3.Connection | None = None
        self.backup_path: Path | None = None

    def open(self) -> None:
        self.conn, self.backup_path = open_db(self.path)

    def write(self, batch: Sequence[Prepared]) -> list[str]:
        conn = self.conn
        assert conn is not None
        ids: list[str] = []
        stored: list[tuple[Any, ...]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for p in batch:
                if p.count:
                    if conn.execute(_INSERT_COUNT, p.row).rowcount == 1:
                        ids.append(p.row[0])
                    continue
                if conn.execute(_INSERT, p.row).rowcount != 1:
                    continue  # this request id is already stored (a retry after a failed commit)
                ids.append(p.row[0])
                stored.append(p.row)
                if p.body is not None:
                    conn.execute(_INSERT_BODY, (p.row[0], p.row[2], "zlib", p.body[0], p.body[1]))
            hourly, sessions = rollups(stored)
            if hourly:
                conn.executemany(_UPSERT_HOUR, hourly)
            if sessions:
                conn.executemany(_UPSERT_SESSION, sessions)
            if stored:
                lo = min(r[1] for r in stored)
                counters = conn.execute("SELECT scope, period_start, period_end FROM budget_counters "
                                        "WHERE period_end > ?", (lo,)).fetchall()
                inc = counter_increments(counters, stored)
                if inc:
                    conn.executemany("UPDATE budget_counters SET spent = spent + ? WHERE scope = ? AND "
                                     "period_start = ? AND period_end = ?", inc)
                conn.executemany("DELETE FROM budget_holds WHERE request_id = ?", [(r[0],) for r in stored])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return ids

    def housekeep(self, settings: LedgerSettings, now: float) -> None:
        assert self.conn is not None
        delete_expired(self.conn, settings, now)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        conn.close()


def delete_expired(conn: sqlite3.Connection, settings: LedgerSettings, now: float, chunk: int = 5000) -> int:
    """Apply the retention settings: captured bodies after ``capture_retention_days``, rows after
    ``retention_days`` (None keeps them). Rollups are kept. Deletes in small transactions."""
    deleted = 0
    if settings.capture_retention_days is not None:
        cutoff = now - settings.capture_retention_days * 86400
        deleted += _delete_chunks(conn, "DELETE FROM bodies WHERE rowid IN "
                                  "(SELECT rowid FROM bodies WHERE captured_at < ? LIMIT ?)", cutoff, chunk)
    if settings.retention_days is not None:
        cutoff = now - settings.retention_days * 86400
        deleted += _delete_chunks(conn, "DELETE FROM bodies WHERE request_id IN (SELECT request_id FROM requests "
                                  "WHERE started_at < ? ORDER BY started_at LIMIT ?)", cutoff, chunk)
        deleted += _delete_chunks(conn, "DELETE FROM requests WHERE id IN "
                                  "(SELECT id FROM requests WHERE started_at < ? ORDER BY started_at LIMIT ?)",
                                  cutoff, chunk)
        deleted += _delete_chunks(conn, "DELETE FROM token_counts WHERE rowid IN "
                                  "(SELECT rowid FROM token_counts WHERE started_at < ? LIMIT ?)", cutoff, chunk)
    return deleted


def _delete_chunks(conn: sqlite3.Connection, sql: str, cutoff: float, chunk: int) -> int:
    total = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(sql, (cutoff, chunk)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        total += n
        if n < chunk:
            return total
