"""What the two key stores share (``keystore_open.open_key_store`` picks the one that goes with the ledger).

Issued team keys and the admin's audit trail live in the ledger's own database, so that every
instance using that ledger sees the same keys: the SQLite ledger file for a single-instance team
(``keystore_sqlite.SqliteKeyStore``), the shared PostgreSQL ledger when ``[ledger] url`` names one
(``keystore_pg.PgKeyStore``). Both keep the same two tables (``team_keys``, append-only
``team_audit``) with the same columns, so a row reads back the same way from either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.team.keys import KeyRecord, KeyStoreError, KeyStoreUnavailable


def key_columns(user: str) -> str:
    """The ``team_keys`` columns ``record_of`` reads, in its order; ``user`` names the user column
    (``user`` in SQLite; ``user_id`` in PostgreSQL, where ``user`` is a reserved word)."""
    return f"id, {user}, groups, created_at, expires_at, revoked_at, created_by, revoked_by"


__all__ = ["AuditEntry", "KeyStoreError", "KeyStoreUnavailable", "TeamStore", "entry_of", "key_columns",
           "record_of"]

AUDIT_COLUMNS = "seq, at, actor, action, subject, detail"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str  # who: "user@host" of the admin's shell, or of the gateway that loaded a config
    action: str  # "key.created" | "key.revoked" | "config.loaded"
    subject: str  # the key id, or the config file
    detail: dict[str, Any]  # what changed (never a key's secret)


def _json(value: Any, empty: Any) -> Any:
    """A JSON column as Python: SQLite hands back text, PostgreSQL's jsonb a decoded value."""
    if value is None or value == "":
        return empty
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def record_of(row: Sequence[Any]) -> KeyRecord:
    """A ``team_keys`` row (``key_columns``, in order) as a ``KeyRecord``."""
    return KeyRecord(row[0], row[1], tuple(_json(row[2], [])), float(row[3]),
                     None if row[4] is None else float(row[4]), None if row[5] is None else float(row[5]),
                     row[6], row[7])


def entry_of(row: Sequence[Any]) -> AuditEntry:
    """A ``team_audit`` row (``AUDIT_COLUMNS``, in order) as an ``AuditEntry``."""
    return AuditEntry(int(row[0]), float(row[1]), row[2], row[3], row[4], _json(row[5], {}))


def created_detail(record: KeyRecord) -> dict[str, Any]:
    """What ``key.created`` records: whose key, which groups, until when (never the secret)."""
    return {"user": record.user, "groups": list(record.groups), "expires_at": record.expires_at}


def dumps(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True)


class TeamStore(Protocol):
    """A key store with its audit trail (what the gateway, the CLI and the admin view use)."""

    def create(self, user: str, groups: Sequence[str] = (), *, expires_at: float | None = None,
               created_by: str | None = None) -> tuple[KeyRecord, str]: ...

    def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]: ...

    def revoke(self, key_id: str, *, revoked_by: str | None = None) -> KeyRecord | None: ...

    def lookup(self, secret: str) -> KeyRecord | None: ...

    def record(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None: ...

    def audit(self, *, since: float | None = None, action: str | None = None) -> list[AuditEntry]: ...

    def close(self) -> None: ...
