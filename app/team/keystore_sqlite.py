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
from pathlib import Path
from typing import Any, Sequence

from app.services.ledger import open_db
from app.team.identity import normalise_user
from app.team.keys import KeyRecord, key_hash, new_key_id, new_secret

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
_COLS = "id, user, groups, created_at, expires_at, revoked_at, created_by, revoked_by"


class KeyStoreError(Exception):
    """The key store cannot be used. ``str()`` is the whole message for the user."""


def _record(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(row[0], row[1], tuple(json.loads(row[2] or "[]")), row[3], row[4], row[5], row[6], row[7])


class SqliteKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        conn, _ = open_db(path)
        try:
            conn.execute(SCHEMA)
            conn.execute(INDEX)
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
        with self._lock:
            self._conn.execute(
                "INSERT INTO team_keys (id, key_hash, user, groups, created_at, expires_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, key_hash(secret), record.user, json.dumps(list(record.groups)), record.created_at,
                 record.expires_at, record.created_by))
        return record, secret

    def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLS} FROM team_keys{where} ORDER BY created_at, id").fetchall()
        return [_record(r) for r in rows]

    def revoke(self, key_id: str, *, revoked_by: str | None = None) -> KeyRecord | None:
        with self._lock:
            self._conn.execute("UPDATE team_keys SET revoked_at = ?, revoked_by = ? "
                               "WHERE id = ? AND revoked_at IS NULL", (time.time(), revoked_by, key_id))
            row = self._conn.execute(f"SELECT {_COLS} FROM team_keys WHERE id = ?", (key_id,)).fetchone()
        return _record(row) if row else None

    def lookup(self, secret: str) -> KeyRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLS} FROM team_keys WHERE key_hash = ?",
                                     (key_hash(secret),)).fetchone()
        return _record(row) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
