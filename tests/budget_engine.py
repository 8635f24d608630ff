"""The product's budget engine for a test: ``Admission`` (app/budgets/admission.py, the one the
gateway runs) over a SQLite ledger in a folder, with that ledger counting each finished request.

``spend`` writes finished requests as the gateway's ledger would; ``admission(route)`` is the
engine's decision alone (it holds nothing); ``admission`` itself is the gateway's hook."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from app.budgets.admission import Admission
from app.budgets.store import SqliteBudgets
from app.catalog.prices import PriceBook
from app.config import BudgetConfig
from app.events import RequestFinished
from app.ledger.writer import Ledger


class LedgerBudgets:
    def __init__(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook, folder: Path, *,
                 now: Callable[[], float] | None = None, tz: tzinfo | None = None,
                 reserve_output_tokens: int = 1000) -> None:
        self.path = folder / "usage.sqlite3"
        self.ledger = Ledger(self.path, prices=prices)
        self.ledger.start()  # the schema, and the writer that settles each row into the counters
        self.admission = Admission(budgets, prices, SqliteBudgets(self.path), instance="test", tz=tz, now=now,
                                   reserve_output_tokens=reserve_output_tokens)

    def sink(self, event: Any) -> None:
        """The EventHub sinks the product adds for these two."""
        self.ledger.sink(event)
        self.admission.sink(event)

    def spend(self, *events: RequestFinished) -> None:
        """Finished requests, written and counted before this returns."""
        for ev in events:
            self.ledger.record(ev)
        assert self.ledger.flush(5), "the ledger did not write the rows"

    def close(self) -> None:
        self.admission.close()
        self.ledger.close()
