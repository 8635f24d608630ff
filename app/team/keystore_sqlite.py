"""Issued team keys in the SQLite ledger file (table ``team_keys``), for a single-instance team.

The file is opened with the ledger's own ``open_db`` (so it is, or becomes, a valid ledger: the
ledger refuses a file that holds tables at schema 0), then this module adds its table if
missing. Every ``lookup`` reads the database: there is no cache here (``KeysVerifier`` keeps one
for under a second), so a revocation by any process using the file is seen at once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.ledger.schema import open_db
from app.team.identity import normalise_user
from app.team.keys import KeyRecord, key_hash, new_key_id, new_secret
from app.team.keystore import AUDIT_COLUMNS, AuditEntry, KeyStoreError, created_detail, dumps, entry_of, key_columns
from app.team.keystore import record_of as _record

__all__ = ["AuditEntry", "KeyStoreError", "SqliteKeyStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS team_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    created_by TEXT,
    revoked_by TEXT
)"""
INDEX = "CREATE INDEX IF NOT EXISTS team_keys_user ON team_keys(user)"
# the admin's actions, append-only: the triggers refuse every UPDATE and DELETE, whoever asks
AUDIT = (
    """CREATE TABLE IF NOT EXISTS team_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS team_audit_at ON team_audit(at)",
    """CREATE TRIGGER IF NOT EXISTS team_audit_no_update BEFORE UPDATE ON team_audit
BEGIN SELECT RAISE(ABORT, 'team_audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS team_audit_no_delete BEFORE DELETE ON team_audit
BEGIN SELECT RAISE(ABORT, 'team_audit is append-only'); END""",
)
_COLS = key_columns("user")


class SqliteKeyStore:
    lookup_blocks = False  # a point read of a local WAL file: the verifier asks it inline

    def __init__(self, path: Path) -> None:
        self.path = path
        conn, _ = open_db(path)
        try:
            conn.execute(SCHEMA)
            conn.execute(INDEX)
            for statement in AUDIT:
                conn.execute(statement)
        except sqlite3.Error as exc:
            conn.close()
            raise KeyStoreError(f"Patchbay cannot keep team keys in {path} ({exc}). Check that the file and "
                                "its folder are writable.") from None
        self._conn = conn
        self._lock = threading.Lock()

    def create(self, user: str, groups: Sequence[str] = (), *, expires_at: float | None = None,
               created_by: str | None = None) -> tuple[KeyRecord, str]:
        secret = new_secret()
        record = KeyRecord(new_key_id(), normalise_user(user), tuple(groups), time.time(), expires_at, None,
                           created_by)
        with self._lock, self._tx():
            self._conn.execute(
                "INSERT INTO team_keys (id, key_hash, user, groups, created_at, expires_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, key_hash(secret), record.user, json.dumps(list(record.groups)), record.created_at,
                 record.expires_at, record.created_by))
            self._audit(record.created_at, created_by or "unknown", "key.created", record.id, created_detail(record))
        return record, secret

    def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLS} FROM team_keys{where} ORDER BY created_at, id").fetchall()
        return [_record(r) for r in rows]

    def revoke(self, key_id: str, *, revoked_by: str | None = None) -> KeyRecord | None:
        now = time.time()
        with self._lock, self._tx():
            changed = self._conn.execute("UPDATE team_keys SET revoked_at = ?, revoked_by = ? "
                                         "WHERE id = ? AND revoked_at IS NULL", (now, revoked_by, key_id)).rowcount
            row = self._conn.execute(f"SELECT {_COLS} FROM team_keys WHERE id = ?", (key_id,)).fetchone()
            if changed and row:
                self._audit(now, revoked_by or "unknown", "key.revoked", key_id, {"user": row[1]})
        return _record(row) if row else None

    # ------------------------------------------------------------------ audit

    def _tx(self) -> Any:
        conn = self._conn

        class _Tx:
            def __enter__(self) -> None:
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind: Any, *_: Any) -> None:
                conn.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    def _audit(self, at: float, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        self._conn.execute("INSERT INTO team_audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
                           (at, actor, action, subject, dumps(detail)))

    def record(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        """Append one admin action (``config.loaded``, ...) to the audit trail."""
        with self._lock:
            self._audit(time.time(), actor, action, subject, detail)

    def audit(self, *, since: float | None = None, action: str | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first."""
        sql = f"SELECT {AUDIT_COLUMNS} FROM team_audit WHERE at >= ?"
        args: list[Any] = [since or 0.0]
        if action is not None:
            sql += " AND action = ?"
            args.append(action)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [entry_of(r) for r in rows]

    def lookup(self, secret: str) -> KeyRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLS} FROM team_keys WHERE key_hash = ?",
                                     (key_hash(secret),)).fetchone()
        return _record(row) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
