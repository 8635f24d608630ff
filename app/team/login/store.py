"""Where sign-ins live: device codes, sessions (one per sign-in), rotating refresh tokens and the key
that signs Patchbay's access tokens, in the ledger's own database so every instance sees them.

SQLite (the ledger file, one instance) here; PostgreSQL (``[ledger] url``, several instances) in
``store_pg``. Both run the same statements (written with ``?``; the PostgreSQL store turns them into
``%s``) over four tables made when missing:

- ``login_keys``: the HMAC key access tokens are signed with (one row, made by the first instance;
  ``INSERT … ON CONFLICT DO NOTHING`` so instances starting together agree on one).
- ``login_devices``: one row per device authorization, keyed by the SHA-256 of its device code; the
  browser leg's state (hashed), nonce and PKCE verifier; ``status`` pending → approved → consumed
  (or denied).
- ``login_sessions``: one per sign-in (``sid`` in the access token); ``revoked_at`` cuts it off.
- ``login_refresh``: refresh tokens (SHA-256 only), each used once; a second use revokes the session
  (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14: a stolen token's family dies).

No token, code or verifier is stored in a form that can be presented: device codes, refresh tokens
and states are stored as SHA-256 (256 random bits each: a plain hash is enough, as for team keys).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Exec = Callable[[str, Sequence[Any]], Any]  # (sql with ?, args) -> cursor

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS login_keys (id TEXT PRIMARY KEY, secret TEXT NOT NULL, created_at {real} NOT NULL)",
    """CREATE TABLE IF NOT EXISTS login_devices (
    device_hash TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    interval_s {real} NOT NULL,
    polled_at {real},
    status TEXT NOT NULL DEFAULT 'pending',
    state_hash TEXT,
    browser_hash TEXT,
    nonce TEXT,
    verifier TEXT,
    user_id TEXT,
    groups TEXT,
    session_id TEXT,
    idp_refresh TEXT,
    seal_key TEXT
)""",
    "CREATE INDEX IF NOT EXISTS login_devices_state ON login_devices(state_hash)",
    """CREATE TABLE IF NOT EXISTS login_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]',
    created_at {real} NOT NULL,
    refreshed_at {real},
    revoked_at {real},
    revoked_by TEXT,
    revoked_why TEXT
)""",
    "CREATE INDEX IF NOT EXISTS login_sessions_user ON login_sessions(user_id)",
    """CREATE TABLE IF NOT EXISTS login_refresh (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    used_at {real},
    idp_refresh TEXT
)""",
    "CREATE INDEX IF NOT EXISTS login_refresh_session ON login_refresh(session_id)",
    "CREATE INDEX IF NOT EXISTS login_refresh_expires ON login_refresh(expires_at)",
    "CREATE INDEX IF NOT EXISTS login_devices_expires ON login_devices(expires_at)",
)

SESSION_COLS = "id, user_id, groups, created_at, refreshed_at, revoked_at, revoked_by, revoked_why"
DEVICE_COLS = ("device_hash, user_code, created_at, expires_at, interval_s, polled_at, status, state_hash, "
               "browser_hash, nonce, verifier, user_id, groups, session_id, idp_refresh, seal_key")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_session_id() -> str:
    return "sgn_" + secrets.token_hex(8)


class LoginStoreError(Exception):
    """The store cannot be used. ``str()`` is the whole message (never a token)."""


class LoginStoreUnavailable(LoginStoreError):
    """The database cannot be reached right now (not the caller's fault)."""


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str
    groups: tuple[str, ...]
    created_at: float
    refreshed_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None
    revoked_why: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    device_hash: str
    user_code: str
    created_at: float
    expires_at: float
    interval_s: float
    polled_at: float | None
    status: str  # pending | approved | denied | consumed
    state_hash: str | None
    browser_hash: str | None
    nonce: str | None
    verifier: str | None
    user: str | None
    groups: tuple[str, ...]
    session_id: str | None
    idp_refresh: str | None = None  # sealed to ``seal_key`` (sealed.py)
    seal_key: str | None = None  # the public key derived from the device code


def _groups(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    return tuple(json.loads(value) if isinstance(value, (str, bytes)) else value)


def session_of(row: Sequence[Any]) -> Session:
    return Session(row[0], row[1], _groups(row[2]), float(row[3]), row[4], row[5], row[6], row[7])


def device_of(row: Sequence[Any]) -> Device:
    return Device(row[0], row[1], float(row[2]), float(row[3]), float(row[4]), row[5], row[6], row[7], row[8],
                  row[9], row[10], row[11], _groups(row[12]), row[13], row[14], row[15])


class LoginStore:
    """The statements; a subclass says how one unit of work runs (``_run``)."""

    lookup_blocks = True  # ``session`` goes over the network: ask it off the event loop
    where = "the ledger"

    def _run(self, work: Callable[[Exec], T], *, write: bool = False) -> T:
        raise NotImplementedError

    # ------------------------------------------------------------------ signing key

    def signing_key(self) -> tuple[str, bytes]:
        """(kid, secret): made by the first instance, the same for all."""
        def work(ex: Exec) -> Any:
            ex("INSERT INTO login_keys (id, secret, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               ("pbl-" + secrets.token_hex(6), secrets.token_hex(32), time.time()))
            return ex("SELECT id, secret FROM login_keys ORDER BY created_at, id LIMIT 1", ()).fetchone()

        row = self._run(work, write=True)
        return str(row[0]), bytes.fromhex(row[1])

    # ------------------------------------------------------------------ device codes

    def new_device(self, device_code: str, user_code: str, expires_at: float, interval_s: float) -> None:
        from app.team.login.sealed import device_public_key

        def work(ex: Exec) -> None:
            now = time.time()
            # housekeeping with each new sign-in: device codes a day past their end, refresh tokens past theirs
            # (a spent one is kept until then: presenting it again revokes its sign-in)
            ex("DELETE FROM login_devices WHERE expires_at < ?", (now - 86400,))
            ex("DELETE FROM login_refresh WHERE expires_at < ?", (now,))
            ex("INSERT INTO login_devices (device_hash, user_code, created_at, expires_at, interval_s, seal_key) "
               "VALUES (?, ?, ?, ?, ?, ?)", (digest(device_code), user_code, now, expires_at, interval_s,
                                             device_public_key(device_code)))

        self._run(work, write=True)

    def device(self, *, device_code: str | None = None, user_code: str | None = None,
               state: str | None = None) -> Device | None:
        if device_code is not None:
            col, value = "device_hash", digest(device_code)
        elif user_code is not None:
            col, value = "user_code", user_code
        else:
            col, value = "state_hash", digest(state or "")
        row = self._run(lambda ex: ex(f"SELECT {DEVICE_COLS} FROM login_devices WHERE {col} = ?",
                                      (value,)).fetchone())
        return device_of(row) if row else None

    def begin_browser(self, user_code: str, state: str, browser: str, nonce: str, verifier: str) -> bool:
        """The browser leg starts for a pending code: its state, cookie, nonce and PKCE verifier."""
        return bool(self._run(lambda ex: ex(
            "UPDATE login_devices SET state_hash = ?, browser_hash = ?, nonce = ?, verifier = ? "
            "WHERE user_code = ? AND status = 'pending' AND expires_at > ?",
            (digest(state), digest(browser), nonce, verifier, user_code, time.time())).rowcount, write=True))

    def take_state(self, device_hash: str, state: str) -> bool:
        """The browser leg's state is spent (once: a second callback with it finds nothing)."""
        return bool(self._run(lambda ex: ex(
            "UPDATE login_devices SET state_hash = NULL WHERE device_hash = ? AND state_hash = ?",
            (device_hash, digest(state))).rowcount, write=True))

    def settle(self, device_hash: str, status: str, user: str | None = None, groups: Sequence[str] = (),
               idp_refresh: str | None = None) -> bool:
        """pending → approved (with the person, and the IdP's refresh token sealed) or denied."""
        return bool(self._run(lambda ex: ex(
            "UPDATE login_devices SET status = ?, user_id = ?, groups = ?, idp_refresh = ?, state_hash = NULL, "
            "verifier = NULL, nonce = NULL WHERE device_hash = ? AND status = 'pending'",
            (status, user, json.dumps(list(groups)), idp_refresh, device_hash)).rowcount, write=True))

    def polled(self, device_hash: str, at: float, interval_s: float) -> None:
        self._run(lambda ex: ex("UPDATE login_devices SET polled_at = ?, interval_s = ? WHERE device_hash = ?",
                                (at, interval_s, device_hash)), write=True)

    def consume(self, device: Device, session_id: str, refresh_token: str, refresh_expires: float,
                idp_refresh: str | None = None) -> bool:
        """approved → consumed, in one transaction with the new session and its first refresh token.
        False when another poll took it first."""
        def work(ex: Exec) -> bool:
            now = time.time()
            if not ex("UPDATE login_devices SET status = 'consumed', session_id = ?, idp_refresh = NULL WHERE "
                      "device_hash = ? AND status = 'approved'", (session_id, device.device_hash)).rowcount:
                return False
            ex("INSERT INTO login_sessions (id, user_id, groups, created_at) VALUES (?, ?, ?, ?)",
               (session_id, device.user, json.dumps(list(device.groups)), now))
            ex("INSERT INTO login_refresh (token_hash, session_id, created_at, expires_at, idp_refresh) VALUES "
               "(?, ?, ?, ?, ?)", (digest(refresh_token), session_id, now, refresh_expires, idp_refresh))
            return True

        return self._run(work, write=True)

    # ------------------------------------------------------------------ refresh tokens

    def idp_refresh_of(self, refresh_token: str) -> str | None:
        """The sealed IdP refresh token stored with a refresh token still usable, else None."""
        row = self._run(lambda ex: ex(
            "SELECT r.idp_refresh FROM login_refresh r JOIN login_sessions s ON s.id = r.session_id WHERE "
            "r.token_hash = ? AND r.used_at IS NULL AND s.revoked_at IS NULL AND r.expires_at > ?",
            (digest(refresh_token), time.time())).fetchone())
        return row[0] if row else None

    def rotate(self, refresh_token: str, new_token: str, new_expires: float, *, idp_refresh: str | None = None,
               groups: Sequence[str] | None = None) -> tuple[str, Session | None]:
        """("ok", session) after the old token is spent and the new one stored; ("unknown" | "expired" |
        "revoked", session?) refused; ("reused", session): the token was spent before, and the whole
        sign-in is revoked now."""
        def work(ex: Exec) -> tuple[str, Session | None]:
            now = time.time()
            row = ex("SELECT session_id, used_at, expires_at FROM login_refresh WHERE token_hash = ?",
                     (digest(refresh_token),)).fetchone()
            if row is None:
                return "unknown", None
            srow = ex(f"SELECT {SESSION_COLS} FROM login_sessions WHERE id = ?", (row[0],)).fetchone()
            session = session_of(srow) if srow else None
            if session is None or session.revoked_at is not None:
                return "revoked", session
            spent = row[1] is not None or not ex(
                "UPDATE login_refresh SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
                (now, digest(refresh_token))).rowcount
            if spent:
                ex("UPDATE login_sessions SET revoked_at = ?, revoked_by = ?, revoked_why = ? WHERE id = ? AND "
                   "revoked_at IS NULL", (now, "patchbay", "a refresh token was used twice", session.id))
                return "reused", session
            if float(row[2]) <= now:
                return "expired", session
            ex("INSERT INTO login_refresh (token_hash, session_id, created_at, expires_at, idp_refresh) VALUES "
               "(?, ?, ?, ?, ?)", (digest(new_token), session.id, now, new_expires, idp_refresh))
            if groups is not None:  # the IdP's groups as of this refresh
                ex("UPDATE login_sessions SET refreshed_at = ?, groups = ? WHERE id = ?",
                   (now, json.dumps(list(groups)), session.id))
                return "ok", replace(session, groups=tuple(groups), refreshed_at=now)
            ex("UPDATE login_sessions SET refreshed_at = ? WHERE id = ?", (now, session.id))
            return "ok", session

        return self._run(work, write=True)

    def session_of_refresh(self, refresh_token: str) -> str | None:
        row = self._run(lambda ex: ex("SELECT session_id FROM login_refresh WHERE token_hash = ?",
                                      (digest(refresh_token),)).fetchone())
        return str(row[0]) if row else None

    # ------------------------------------------------------------------ sessions

    def session(self, session_id: str) -> Session | None:
        """One indexed read (the verifier asks at most every 0.5 s per sign-in)."""
        row = self._run(lambda ex: ex(f"SELECT {SESSION_COLS} FROM login_sessions WHERE id = ?",
                                      (session_id,)).fetchone())
        return session_of(row) if row else None

    def sessions(self, user: str | None = None) -> list[Session]:
        sql = f"SELECT {SESSION_COLS} FROM login_sessions"
        args: tuple[Any, ...] = ()
        if user is not None:
            sql, args = sql + " WHERE user_id = ?", (user,)
        rows = self._run(lambda ex: ex(sql + " ORDER BY created_at, id", args).fetchall())
        return [session_of(r) for r in rows]

    def revoke(self, *, session_id: str | None = None, user: str | None = None, by: str,
               why: str) -> list[Session]:
        """Revokes one sign-in, or every sign-in of ``user``; the sessions revoked now."""
        col, value = ("id", session_id) if session_id is not None else ("user_id", user)
        rows = self._run(lambda ex: ex(
            f"UPDATE login_sessions SET revoked_at = ?, revoked_by = ?, revoked_why = ? WHERE {col} = ? AND "
            f"revoked_at IS NULL RETURNING {SESSION_COLS}", (time.time(), by, why, value)).fetchall(), write=True)
        return [session_of(r) for r in rows]

    def close(self) -> None:
        pass


class SqliteLoginStore(LoginStore):
    """The single-instance store, in the SQLite ledger file (opened with the ledger's ``open_db``)."""

    lookup_blocks = False  # a point read of a local WAL file: asked inline

    def __init__(self, path: Path) -> None:
        from app.ledger.schema import open_db

        self.path = path
        self.where = f"the ledger file {path}"
        conn, _ = open_db(path)
        try:
            for statement in SCHEMA:
                conn.execute(statement.format(real="REAL"))
        except sqlite3.Error as exc:
            conn.close()
            raise LoginStoreError(f"Patchbay cannot keep sign-ins in {path} ({exc}). Check that the file and its "
                                  "folder are writable.") from None
        self._conn = conn
        self._lock = threading.Lock()

    def _run(self, work: Callable[[Exec], T], *, write: bool = False) -> T:
        conn = self._conn
        with self._lock:
            try:
                if not write:
                    return work(conn.execute)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn.execute)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise LoginStoreError(f"{self.where} refused a sign-in statement ({exc}).") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
