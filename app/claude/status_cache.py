"""The status line's view of a team ledger, kept in a small local SQLite file.

``patchbay statusline`` runs after every Claude Code message and must answer in a few
milliseconds, so it never opens a network connection: with a PostgreSQL ledger the gateway keeps
``statusline-cache.sqlite3`` in its data dir, in the three tables the status line reads (each
recent session's cost and last backend/model, today's spend), refreshed at most every ``min_gap_s`` after a batch
it writes and every ``interval_s`` (other instances' requests count too). A refresh replaces the
file's contents in one transaction; a reader never sees half of one.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from app.paths import make_private_dir, make_private_file

log = logging.getLogger("patchbay.statuscache")

CACHE_NAME = "statusline-cache.sqlite3"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests(session_id TEXT, backend TEXT, model TEXT, started_at REAL, cost_usd REAL)",
    "CREATE INDEX IF NOT EXISTS requests_session ON requests(session_id, started_at)",
    "CREATE TABLE IF NOT EXISTS sessions(session_id TEXT PRIMARY KEY, cost_usd REAL)",
    "CREATE TABLE IF NOT EXISTS usage_hourly(hour_start INTEGER, cost_usd REAL)",
)


def local_midnight(now: float) -> float:
    lt = time.localtime(now)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


class StatusCache:
    def __init__(self, reader: Any, path: Path, interval_s: float = 10.0, min_gap_s: float = 2.0) -> None:
        self.reader = reader  # a LedgerReader of the team ledger
        self.path = Path(path)
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.refreshed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="patchbay-statuscache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def poke(self, *_: object) -> None:
        """Refresh soon (the ledger's on_commit)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.clear()  # a commit from now on asks for the next refresh
            try:
                self.refresh()
            except Exception as exc:  # the database is away: keep the last numbers
                log.debug("status line cache not refreshed: %s", exc)
            # at most one refresh per min_gap_s however many batches commit: a status line is
            # read after each Claude Code message, seconds apart, and each refresh costs queries
            self._stopped.wait(self.min_gap_s)
            if self._stop:
                break
            self._wake.wait(max(0.0, self.interval_s - self.min_gap_s))

    def refresh(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        since = local_midnight(now)
        today = self.reader.spent(since)
        recent = self.reader._q(
            "SELECT DISTINCT ON (session_id) session_id, backend, model, started_at FROM requests "
            "WHERE session_id IS NOT NULL AND started_at >= ? ORDER BY session_id, started_at DESC", [now - 86400])
        costs = dict(self.reader._q("SELECT session_id, cost_usd FROM sessions WHERE last_seen >= ?", [now - 86400]))
        make_private_dir(self.path.parent)
        make_private_file(self.path)  # owner-only like the ledger it mirrors (-wal / -shm get its mode)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM requests")
            conn.execute("DELETE FROM sessions")
            conn.execute("DELETE FROM usage_hourly")
            conn.executemany("INSERT INTO requests VALUES (?,?,?,?,NULL)", [tuple(r) for r in recent])
            conn.executemany("INSERT INTO sessions VALUES (?,?)", list(costs.items()))
            # the status line sums whole hours from here and the partial first hour from requests
            conn.execute("INSERT INTO usage_hourly VALUES (?,?)", (math.ceil(since / 3600) * 3600, today))
            conn.execute("PRAGMA user_version = 1")
            conn.execute("COMMIT")
        finally:
            conn.close()
        self.refreshed += 1
