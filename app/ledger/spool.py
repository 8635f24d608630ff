"""The durable local spool: usage rows the shared ledger could not take yet.

A SQLite file in the data dir (WAL, ``synchronous=FULL``, owner-only like the ledger: captured
bodies wait here too): a row appended here is on disk when
``append`` returns, so it counts as acknowledged exactly like a row in the store. ``peek`` hands
back the oldest rows in the order they came; ``delete_through`` drops them once the store has
them. The store is idempotent on ``request_id``, so a crash between the two repeats nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from app.ledger.schema import LedgerError, make_private
from app.ledger.store import ROW_COLUMNS, Prepared
from app.paths import make_private_dir, make_private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    row BLOB NOT NULL,
    request BLOB,
    response BLOB,
    captured INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 0
)
"""


def _padded(row: list[Any], count: bool) -> tuple[Any, ...]:
    """A spooled row as the store takes it now: a row spooled by an older Patchbay lacks the
    columns added since (they are NULL for it)."""
    if count or len(row) >= len(ROW_COLUMNS):
        return tuple(row)
    return tuple(row) + (None,) * (len(ROW_COLUMNS) - len(row))


OPEN_WAIT_S = 10.0  # how long opening waits out another process opening the same file


class SpoolError(LedgerError):
    """The spool file cannot be used. ``str()`` is the whole message for the user (a ``LedgerError``,
    so the gateway's start-up says it in a sentence)."""


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.pending = 0

    def open(self) -> None:
        if self._conn is not None:
            return
        deadline = time.monotonic() + OPEN_WAIT_S
        while True:
            try:
                self._conn = self._open()
                return
            except sqlite3.OperationalError as exc:
                # the workers of `serve --workers N` share this file and start together: setting WAL mode
                # answers "database is locked" at once (no busy wait) while another one does the same
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise self._error(exc) from None
                time.sleep(0.05)
            except (sqlite3.Error, OSError) as exc:
                raise self._error(exc) from None

    def _error(self, exc: BaseException) -> SpoolError:
        return SpoolError(f"Patchbay cannot open its ledger spool {self.path} ({exc}). Check the data folder's "
                          "permissions and free space; the spool keeps usage rows while the shared ledger is "
                          "away.")

    def _open(self) -> sqlite3.Connection:
        make_private_dir(self.path.parent)
        make_private_file(self.path)  # before SQLite opens it: its -wal and -shm get this mode
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
            if "count" not in {r[1] for r in conn.execute("PRAGMA table_info(spool)")}:
                conn.execute("ALTER TABLE spool ADD COLUMN count INTEGER NOT NULL DEFAULT 0")
            make_private(self.path)
            self.pending = int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def append(self, batch: Sequence[Prepared]) -> None:
        if not batch:
            return
        with self._lock:
            conn = self._conn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO spool(row, request, response, captured, count) VALUES (?,?,?,?,?)", [
                    (orjson.dumps(p.row), p.body[0] if p.body else None, p.body[1] if p.body else None,
                     1 if p.body is not None else 0, 1 if p.count else 0) for p in batch])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.pending += len(batch)

    def peek(self, limit: int) -> tuple[int | None, list[Prepared]]:
        """The oldest ``limit`` rows and the sequence number of the last one (None: empty)."""
        with self._lock:
            conn = self._conn
            assert conn is not None
            rows = conn.execute("SELECT seq, row, request, response, captured, count FROM spool ORDER BY seq "
                                "LIMIT ?", (limit,)).fetchall()
        if not rows:
            return None, []
        return rows[-1][0], [Prepared(_padded(orjson.loads(r[1]), bool(r[5])), (r[2], r[3]) if r[4] else None, bool(r[5]))
                             for r in rows]

    def delete_through(self, seq: int) -> None:
        with self._lock:
            conn = self._conn
            assert conn is not None
            n = conn.execute("DELETE FROM spool WHERE seq <= ?", (seq,)).rowcount
            self.pending = max(0, self.pending - n)
