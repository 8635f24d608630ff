"""The SQLite file and the PostgreSQL ledger keep the same tables with the same columns.

Their migrations are written per dialect (they are history: a migration already applied never changes), so
this test is what keeps them from drifting: a fresh SQLite ledger and a fresh PostgreSQL ledger, each migrated to
its latest version, must hold the same columns in every table both have, and the tables only one of them keeps are
named here with the reason.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from app.ledger.pg import migrate
from app.ledger.schema import open_db

# tables one dialect keeps and the other has no use for
ONLY_SQLITE: set[str] = set()
ONLY_PG: set[str] = set()


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    conn, _ = open_db(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables
                if not t.startswith("sqlite_")}
    finally:
        conn.close()


def _pg_columns(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, "the test database")
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = 'public'").fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def test_both_ledgers_keep_the_same_columns(pg_server, tmp_path: Path) -> None:
    lite = _sqlite_columns(tmp_path / "ledger.sqlite3")
    pg = _pg_columns(pg_server.create_db())
    assert set(lite) - set(pg) == ONLY_SQLITE
    assert set(pg) - set(lite) == ONLY_PG
    assert "requests" in lite and "budget_holds" in lite
    drift = {t: (sorted(lite[t] - pg[t]), sorted(pg[t] - lite[t])) for t in set(lite) & set(pg)
             if lite[t] != pg[t]}
    assert drift == {}
