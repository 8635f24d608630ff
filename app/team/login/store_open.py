"""``open_login_store``: the sign-in store that goes with the ledger (the one place that knows both stores)."""

from __future__ import annotations

from typing import Any

from app.team.login.store import LoginStore, SqliteLoginStore


def open_login_store(config: Any, paths: Any) -> LoginStore:
    """The store of ``config``'s ledger: PostgreSQL when ``[ledger] url`` is set, else the SQLite file."""
    team = config.ledger.team
    if team.url:
        from app.team.login.store_pg import PgLoginStore

        return PgLoginStore(team.url, team)
    return SqliteLoginStore(paths.ledger_file)
