"""Issued team keys and the audit trail in the shared PostgreSQL ledger (``[ledger] url``).

The same two tables as the SQLite store (``keystore_sqlite``), in the ledger's database, so every
instance using that ledger, and the admin's ``patchbay team key …`` with the same config, see one
set of keys. They are made when missing, under a transaction-scoped advisory lock: of several
instances starting at once one creates them and the others wait, then find them. (They are not a
ledger schema migration: the ledger's schema version stays what other Patchbay builds expect,
and a read-only admin connection that finds the tables made never needs to write DDL.)

- ``team_keys``: only ``key_hash`` (SHA-256 of the key) is stored, unique, so its index is what
  ``lookup`` uses: one statement, one round trip, no transaction (autocommit).
- ``team_audit``: append-only: a trigger raises on every UPDATE and DELETE (per row) and on
  TRUNCATE, whoever asks through SQL. (A superuser can still drop the trigger; give the gateway's
  role only SELECT and INSERT on ``team_audit`` for a trail that even a stolen gateway password
  cannot rewrite.)

A database that does not answer raises ``KeyStoreUnavailable`` (the verifier answers 503, or a
verified key's last answer), and until it answers again (``app/ledger/pg_revive.py`` probes it;
at least a second) every call fails at once instead of waiting for the pool's timeout again; then
a fresh pool connects at once. One
that does not answer when the store is made is no error: the gateway starts (as it does with its
ledger), and the first call that reaches the database makes the tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from app.config.ledger import TeamLedger
from app.team.identity import normalise_user
from app.team.keys import (
    KeyRecord,
    KeyStoreError,
    KeyStoreReadOnly,
    KeyStoreUnavailable,
    key_hash,
    new_key_id,
    new_secret,
)
from app.team.keystore import AUDIT_COLUMNS, AuditEntry, created_detail, entry_of, key_columns, record_of

T = TypeVar("T")

SCHEMA_LOCK = 0x7465616D  # pg_advisory_xact_lock key while the tables are made ("team")
APPEND_ONLY = ("team_audit_no_change", "team_audit_no_truncate")
_COLS = key_columns("user_id")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS team_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]',
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    created_by TEXT,
    revoked_by TEXT
)""",
    "CREATE INDEX IF NOT EXISTS team_keys_user ON team_keys(user_id)",
    """CREATE TABLE IF NOT EXISTS team_audit (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail JSONB NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS team_audit_at ON team_audit(at)",
    "CREATE INDEX IF NOT EXISTS team_audit_action ON team_audit(action, seq)",
    """CREATE OR REPLACE FUNCTION team_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'team_audit is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$""",
    "DROP TRIGGER IF EXISTS team_audit_no_change ON team_audit",
    "CREATE TRIGGER team_audit_no_change BEFORE UPDATE OR DELETE ON team_audit FOR EACH ROW "
    "EXECUTE FUNCTION team_audit_append_only()",
    "DROP TRIGGER IF EXISTS team_audit_no_truncate ON team_audit",
    "CREATE TRIGGER team_audit_no_truncate BEFORE TRUNCATE ON team_audit FOR EACH STATEMENT "
    "EXECUTE FUNCTION team_audit_append_only()",
)
# everything there already? (then nothing is locked or written: the usual start)
_COMPLETE = ("SELECT to_regclass('team_keys') IS NOT NULL AND (SELECT count(*) FROM pg_trigger WHERE "
             "tgrelid = to_regclass('team_audit') AND tgname = ANY(%s)) = 2")
_LOOKUP = f"SELECT {_COLS} FROM team_keys WHERE key_hash = %s"
_INSERT_AUDIT = "INSERT INTO team_audit (at, actor, action, subject, detail) VALUES (%s, %s, %s, %s, %s)"


class PgKeyStore:
    def __init__(self, url: str, team: TeamLedger = TeamLedger(), *, max_size: int = 4) -> None:
        from psycopg_pool import ConnectionPool

        from app.ledger.pg import connect_kwargs, describe
        from app.ledger.pg_revive import watcher
        from app.ledger.schema import LedgerError

        self.url = url
        self.where = f"the PostgreSQL ledger at {describe(url)}"
        try:
            kwargs = {"autocommit": True, **connect_kwargs(team)}
        except LedgerError as exc:  # the password's environment variable or keychain entry is missing
            raise KeyStoreError(str(exc)) from None
        self._new_pool = lambda: ConnectionPool(url, min_size=1, max_size=max_size, kwargs=kwargs, open=False,
                                                timeout=2.0, name="patchbay-team-keys")
        self._pool = self._new_pool()
        self._down: tuple[float, str] | None = None  # (until when, why): fail at once, not after a timeout each
        # while the database is away (pg_revive probes it) every call fails at once; once it answers
        # a fresh pool connects at once, instead of after the old one's reconnect backoff
        self._reviver = watcher(url, kwargs)
        self._reviver.watch(self._revive)
        self._lock = threading.Lock()
        self._pool.open(wait=False)
        self._ready = False  # the tables are known to be there
        try:
            self._ensure()
        except KeyStoreUnavailable:  # start anyway, like the ledger: the first call that reaches it makes them
            pass  # (and says so: the verifier's 503 and log line, the CLI's sentence)
        except KeyStoreError:
            self._pool.close(timeout=1.0)
            raise

    def _ensure(self) -> None:
        self._run(self._ensure_schema, read=True, setup=True)  # (its DDL is one transaction: asking again is safe)
        self._ready = True

    # ------------------------------------------------------------------ plumbing

    def _run(self, work: Callable[[Any], T], *, read: bool = False, setup: bool = False) -> T:
        """``work(conn)`` on a pooled connection; the database's failures as sentences. A read
        that meets a pooled connection the server has since closed (a restart, a failover) is
        asked once more on a fresh one, so a database that is back is not a 503."""
        import psycopg
        from psycopg_pool import PoolTimeout

        down = self._down
        if down is not None and (time.monotonic() < down[0] or self._reviver.is_down):
            raise KeyStoreUnavailable(down[1])
        if not self._ready and not setup:
            self._ensure()
        try:
            for attempt in (1, 2):
                with self._pool.connection() as conn:
                    try:
                        result = work(conn)
                        break
                    except psycopg.OperationalError:
                        if not (read and attempt == 1 and conn.broken):
                            raise
                self._pool.check()  # the others the server closed go too (one round trip each, only now)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            msg = (f"Patchbay cannot reach {self.where} for the team keys ({_why(exc)}). Check that the database "
                   "runs and [ledger] url points at it.")
            with self._lock:
                self._down = (time.monotonic() + 1.0, msg)
            self._reviver.down()
            raise KeyStoreUnavailable(msg) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            if "append-only" in str(exc):  # the audit trail's own trigger, not the role's rights
                raise KeyStoreError(f"{self.where} refused a team-key statement ({_why(exc)}).") from None
            raise KeyStoreReadOnly(f"{self.where} refused to change the team keys ({_why(exc)}): this connection's "
                                   "[ledger] user may only read the team ledger.") from None
        except psycopg.Error as exc:
            raise KeyStoreError(f"{self.where} refused a team-key statement ({_why(exc)}). Check that the "
                                "[ledger] user may create and use the tables team_keys and team_audit.") from None
        self._down = None
        return result

    def _revive(self) -> None:
        """``pg_revive``: the database answers again."""
        from app.ledger.pg_revive import close_later

        if self._pool.closed:  # closed for good
            return
        old, self._pool = self._pool, self._new_pool()
        self._pool.open(wait=False)
        close_later(old)
        with self._lock:
            self._down = None

    def _ensure_schema(self, conn: Any) -> None:
        if conn.execute(_COMPLETE, (list(APPEND_ONLY),)).fetchone()[0]:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            if conn.execute(_COMPLETE, (list(APPEND_ONLY),)).fetchone()[0]:
                return  # another instance made them while this one waited for the lock
            for statement in _SCHEMA:
                conn.execute(statement)

    @staticmethod
    def _audit(conn: Any, at: float, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        conn.execute(_INSERT_AUDIT, (at, actor, action, subject, Jsonb(detail)))

    # ------------------------------------------------------------------ keys

    def create(self, user: str, groups: Sequence[str] = (), *, expires_at: float | None = None,
               created_by: str | None = None) -> tuple[KeyRecord, str]:
        import json

        secret = new_secret()
        record = KeyRecord(new_key_id(), normalise_user(user), tuple(groups), time.time(), expires_at, None,
                           created_by)

        def work(conn: Any) -> None:
            with conn.transaction():
                conn.execute("INSERT INTO team_keys (id, key_hash, user_id, groups, created_at, expires_at, "
                             "created_by) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                             (record.id, key_hash(secret), record.user, json.dumps(list(record.groups)),
                              record.created_at, record.expires_at, record.created_by))
                self._audit(conn, record.created_at, created_by or "unknown", "key.created", record.id,
                            created_detail(record))

        self._run(work)
        return record, secret

    def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = self._run(lambda conn: conn.execute(
            f"SELECT {_COLS} FROM team_keys{where} ORDER BY created_at, id").fetchall(), read=True)
        return [record_of(r) for r in rows]

    def revoke(self, key_id: str, *, revoked_by: str | None = None) -> KeyRecord | None:
        now = time.time()

        def work(conn: Any) -> Any:
            with conn.transaction():
                row = conn.execute(f"UPDATE team_keys SET revoked_at = %s, revoked_by = %s WHERE id = %s AND "
                                   f"revoked_at IS NULL RETURNING {_COLS}", (now, revoked_by, key_id)).fetchone()
                if row is not None:
                    self._audit(conn, now, revoked_by or "unknown", "key.revoked", key_id, {"user": row[1]})
                    return row
                return conn.execute(f"SELECT {_COLS} FROM team_keys WHERE id = %s", (key_id,)).fetchone()

        row = self._run(work)
        return record_of(row) if row else None

    def lookup(self, secret: str) -> KeyRecord | None:
        """One indexed read, one round trip (the verifier asks every 0.5 s per key)."""
        h = key_hash(secret)
        row = self._run(lambda conn: conn.execute(_LOOKUP, (h,)).fetchone(), read=True)
        return record_of(row) if row else None

    # ------------------------------------------------------------------ audit

    def record(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        """Append one admin action (``config.loaded``, ...) to the audit trail."""
        self._run(lambda conn: self._audit(conn, time.time(), actor, action, subject, detail))

    def audit(self, *, since: float | None = None, action: str | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first."""
        sql = f"SELECT {AUDIT_COLUMNS} FROM team_audit WHERE at >= %s"
        args: list[Any] = [since or 0.0]
        if action is not None:
            sql += " AND action = %s"
            args.append(action)
        rows = self._run(lambda conn: conn.execute(sql + " ORDER BY seq", args).fetchall(), read=True)
        return [entry_of(r) for r in rows]

    def close(self) -> None:
        self._pool.close(timeout=1.0)


def _why(exc: Exception) -> str:
    """The first line of a driver error: the reason, without the statement's parameters (a
    constraint's DETAIL line would name a key's hash)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
