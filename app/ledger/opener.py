"""Which ledger this Patchbay uses: the SQLite file in the data dir, or the team's PostgreSQL
(``[ledger] url``) with a local spool beside it. One place decides, for the gateway, the GUI and
``patchbay usage`` alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

from app.catalog.prices import PriceBook
from app.config import LedgerSettings
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.paths import Paths

SPOOL_NAME = "ledger-spool.sqlite3"


@dataclass(frozen=True, slots=True)
class LedgerHealth:
    """How the ledger stands now, for the window's status bar and banner (read every second)."""

    where: str  # "the PostgreSQL ledger at db.internal:5432/patchbay"
    reason: str | None  # why rows go to the spool instead of the ledger; None: they reach it
    spooled: int  # rows waiting in the local spool
    budgets: str | None = None  # None: budgets are checked; "open": not enforced; "closed": requests refused
    budgets_reason: str | None = None
    read_only: bool = False  # the [ledger] user may only read it (an admin's look at the team ledger)

    @property
    def degraded(self) -> bool:
        return self.reason is not None or self.spooled > 0 or self.budgets is not None


def spool_path(paths: Paths) -> Path:
    return paths.data_dir / SPOOL_NAME


def open_writer(settings: LedgerSettings, paths: Paths, prices: PriceBook, instance: str | None = None) -> Ledger:
    """The writer (not started)."""
    url = settings.team.url
    if url is None:
        return Ledger(paths.ledger_file, prices=prices, settings=settings, instance=instance)
    from app.ledger.pg import PgStore
    from app.ledger.spool import Spool

    ledger = Ledger(paths.ledger_file, prices=prices, settings=settings, store=PgStore(url, settings.team),
                    spool=Spool(spool_path(paths)), instance=instance)
    _watch_outages(ledger, url, settings)
    return ledger


def _watch_outages(ledger: Ledger, url: str, settings: LedgerSettings) -> None:
    """While the store is away, ``pg_revive`` probes it; the spool drains the moment it answers
    (so ``/ready`` is 200 again then), not after the writer's backoff of up to 5 s."""
    from app.ledger.pg import connect_kwargs
    from app.ledger.pg_revive import watcher
    from app.ledger.schema import LedgerError

    try:
        reviver = watcher(url, connect_kwargs(settings.team))
    except LedgerError:
        return  # no password to connect with: the writer's start says so
    ledger.on_degraded = lambda reason: reviver.down() if reason is not None else None
    reviver.watch(ledger.retry_now)


def open_reader(settings: LedgerSettings, paths: Paths, tz: tzinfo | None = None) -> LedgerReader:
    """A reader of the same ledger. Raises ``LedgerError`` with a sentence."""
    url = settings.team.url
    if url is None:
        return LedgerReader(paths.ledger_file, tz=tz)
    from app.ledger.pg import PgLedgerReader

    return PgLedgerReader(url, settings.team, tz=tz)


def describe(settings: LedgerSettings, paths: Paths) -> str:
    url = settings.team.url
    if url is None:
        return f"the SQLite ledger {paths.ledger_file}"
    from app.ledger.pg import describe as where

    return f"the PostgreSQL ledger at {where(url)}"
