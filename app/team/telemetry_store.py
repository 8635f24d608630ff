"""Claude Code's telemetry rows in the ledger database (table ``telemetry``, SQLite ledger v9 /
PostgreSQL v6): written by the team gateway (``TelemetryStore``: its own connection, used from
worker threads under a lock), pruned after the retention, and summed per person for the Team
page (``summaries``, through the ledger's reader, so an admin's read-only role is enough).

The summaries over a window, per person:
- ``sessions``: distinct Claude Code ``session.id`` values seen in any row;
- ``lines_added`` / ``lines_removed``: ``claude_code.lines_of_code.count`` points by ``type``
  (Claude Code exports delta temporality: each point is new lines, so they add up);
- ``accepted`` / ``rejected``: ``claude_code.tool_decision`` events by ``decision``;
- ``errors``: ``claude_code.api_error`` events.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.team.otlp import Row

INSERT = ("INSERT INTO telemetry(received_at, user_id, groups, signal, name, session_id, value, detail, attrs) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
PRUNE = "DELETE FROM telemetry WHERE received_at < ?"
SUMMARY = """SELECT user_id, count(DISTINCT session_id),
  sum(CASE WHEN name = 'claude_code.lines_of_code.count' AND detail = 'added' THEN value ELSE 0 END),
  sum(CASE WHEN name = 'claude_code.lines_of_code.count' AND detail = 'removed' THEN value ELSE 0 END),
  sum(CASE WHEN name = 'claude_code.tool_decision' AND detail = 'accept' THEN 1 ELSE 0 END),
  sum(CASE WHEN name = 'claude_code.tool_decision' AND detail = 'reject' THEN 1 ELSE 0 END),
  sum(CASE WHEN name = 'claude_code.api_error' THEN 1 ELSE 0 END),
  max(received_at)
FROM telemetry WHERE received_at >= ? GROUP BY user_id ORDER BY user_id"""


@dataclass(frozen=True, slots=True)
class PersonTelemetry:
    user: str
    sessions: int
    lines_added: int
    lines_removed: int
    accepted: int
    rejected: int
    errors: int
    last_seen: float


class Reader(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


def summaries(reader: Reader, since: float) -> tuple[PersonTelemetry, ...]:
    """Per person, what their Claude Code reported since ``since`` (raises what the reader raises,
    e.g. for a ledger from before the table)."""
    rows = reader.query(SUMMARY, (since,))
    return tuple(PersonTelemetry(str(r[0]), int(r[1] or 0), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0),
                                 int(r[5] or 0), int(r[6] or 0), float(r[7] or 0)) for r in rows)


class TelemetryStore:
    """The gateway's writer: SQLite (``path``) or PostgreSQL (``url`` with ``connect``)."""

    def __init__(self, *, path: Path | None = None, url: str | None = None, connect_kwargs: dict[str, Any] | None = None
                 ) -> None:
        self.path, self.url, self._kwargs = path, url, connect_kwargs or {}
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        if self._conn is None:
            if self.url is not None:
                import psycopg

                self._conn = psycopg.connect(self.url, autocommit=True, **self._kwargs)
            else:
                assert self.path is not None
                self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
                self._conn.execute("PRAGMA busy_timeout=10000")
        return self._conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.url is not None else sql

    def _run(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        with self._lock:
            try:
                conn = self._connection()
                if self.url is not None:
                    with conn.cursor() as cur:
                        cur.executemany(self._sql(sql), rows)
                        return int(cur.rowcount or 0)
                conn.execute("BEGIN")
                try:
                    cur = conn.executemany(sql, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return int(cur.rowcount or 0)
            except Exception:
                self._drop()  # a connection the server closed is replaced at the next call
                raise

    def insert(self, user: str, groups: Sequence[str], rows: Sequence[Row], at: float | None = None) -> None:
        at = time.time() if at is None else at
        g = ",".join(groups) or None
        self._run(INSERT, [(at, user, g, r.signal, r.name, r.session_id, r.value, r.detail, r.attrs) for r in rows])

    def prune(self, before: float) -> int:
        """Delete the rows received before ``before``; how many went."""
        return self._run(PRUNE, [(before,)])

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()
