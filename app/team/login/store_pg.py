"""Sign-ins in the shared PostgreSQL ledger (``[ledger] url``): the statements of ``store.LoginStore``
on a small connection pool, so every instance sees one set of sessions, refresh tokens and one
signing key. The tables are made when missing under a transaction-scoped advisory lock (as the team
key store does: instances starting together do not race), outside the ledger's schema version.

A database that does not answer is ``LoginStoreUnavailable`` (the verifier answers 503, the OAuth
endpoints a ``temporarily_unavailable``); its message names the database, never the password.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from app.config.ledger import TeamLedger
from app.team.login.store import SCHEMA, Exec, LoginStore, LoginStoreError, LoginStoreUnavailable, T

SCHEMA_LOCK = 0x6C6F676E  # pg_advisory_xact_lock key while the tables are made ("logn")


class PgLoginStore(LoginStore):
    def __init__(self, url: str, team: TeamLedger = TeamLedger(), *, max_size: int = 4) -> None:
        from psycopg_pool import ConnectionPool

        from app.ledger.pg import connect_kwargs, describe
        from app.ledger.pg_revive import watcher
        from app.ledger.schema import LedgerError

        self.where = f"the PostgreSQL ledger at {describe(url)}"
        try:
            kwargs = {"autocommit": True, **connect_kwargs(team)}
        except LedgerError as exc:
            raise LoginStoreError(str(exc)) from None
        self._new_pool = lambda: ConnectionPool(url, min_size=1, max_size=max_size, kwargs=kwargs, open=False,
                                                timeout=2.0, name="patchbay-login")
        self._pool = self._new_pool()
        self._pool.open(wait=False)
        # while the database is away (pg_revive probes it every 250 ms) calls fail at once; once it
        # answers, a fresh pool connects at once instead of after the old one's backoff
        self._reviver = watcher(url, kwargs)
        self._reviver.watch(self._revive)
        self._ready = False
        self._down_until = 0.0
        try:
            self._ensure()
        except LoginStoreUnavailable:
            pass  # start anyway; the first call that reaches the database makes the tables

    def _ensure(self) -> None:
        def make(conn: Any) -> None:
            if conn.execute("SELECT to_regclass('login_refresh') IS NOT NULL").fetchone()[0]:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                for statement in SCHEMA:
                    conn.execute(statement.format(real="DOUBLE PRECISION"))

        self._conn(make)
        self._ready = True

    def _conn(self, work: Callable[[Any], T]) -> T:
        import psycopg
        from psycopg_pool import PoolTimeout

        if time.monotonic() < self._down_until or self._reviver.is_down:
            raise LoginStoreUnavailable(f"Patchbay cannot reach {self.where} for sign-ins right now.")
        try:
            with self._pool.connection() as conn:
                return work(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._down_until = time.monotonic() + 0.25
            self._reviver.down()
            raise LoginStoreUnavailable(f"Patchbay cannot reach {self.where} for sign-ins ({_why(exc)}). Check that "
                                        "the database runs and [ledger] url points at it.") from None
        except psycopg.Error as exc:
            raise LoginStoreError(f"{self.where} refused a sign-in statement ({_why(exc)}).") from None

    def _revive(self) -> None:
        """``pg_revive``: the database answers again."""
        from app.ledger.pg_revive import close_later

        if self._pool.closed:
            return
        old, self._pool = self._pool, self._new_pool()
        self._pool.open(wait=False)
        close_later(old)
        self._down_until = 0.0

    def _run(self, work: Callable[[Exec], T], *, write: bool = False) -> T:
        if not self._ready:
            self._ensure()

        def run(conn: Any) -> T:
            def ex(sql: str, args: Sequence[Any]) -> Any:
                return conn.execute(sql.replace("?", "%s"), tuple(args))

            if not write:
                return work(ex)
            with conn.transaction():
                return work(ex)

        return self._conn(run)

    def close(self) -> None:
        self._pool.close(timeout=1.0)


def _why(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
