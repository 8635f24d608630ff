"""One set of books on either store, so a ledger test runs against SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from app.catalog.prices import PriceBook
from app.config import LedgerSettings
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger


class Books:
    def __init__(self, kind: str, tmp: Path, pg_server: Any = None) -> None:
        self.kind = kind
        self.tmp = tmp
        self.path = tmp / "usage.sqlite3"
        self.url = pg_server.create_db() if kind == "pg" else None

    def ledger(self, prices: PriceBook, settings: LedgerSettings = LedgerSettings(), **kw: Any) -> Ledger:
        if self.url is None:
            return Ledger(self.path, prices=prices, settings=settings, **kw)
        from app.ledger.pg import PgStore
        from app.ledger.spool import Spool

        return Ledger(self.path, prices=prices, settings=settings, store=PgStore(self.url),
                      spool=Spool(self.tmp / "ledger-spool.sqlite3"), **kw)

    def reader(self, tz: Any = None) -> LedgerReader:
        if self.url is None:
            return LedgerReader(self.path, tz=tz)
        from app.ledger.pg import PgLedgerReader

        return PgLedgerReader(self.url, tz=tz)

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return raw_rows(self.path, self.url, sql, params)


def raw_rows(path: Path, url: str | None, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """``sql`` (SQLite spelling) run with a connection of its own on the SQLite file ``path``, or on
    the PostgreSQL ledger at ``url`` when one is given."""
    if url is None:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg

    from app.ledger.pg import pg_sql

    with psycopg.connect(url) as pc:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in pc.execute(pg_sql(sql), params).fetchall()]
