"""The Prices dialog (Settings → Budgets → Prices…): the config's own ``[[prices]]``, $ per million tokens,
which win over the built-in table; a row with a backend applies to that backend only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.config import PriceConfig

if TYPE_CHECKING:
    from app.bridge.settings import Settings

COLUMNS = ("Model", "Backend (optional)", "Input $/MTok", "Output $/MTok", "Cache write", "Cache read")


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


class PricesDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Prices")
        self.resize(760, 360)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setAccessibleName("Prices")
        for p in settings.prices():
            self.add_row(p)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        add = QPushButton("Add price")
        add.clicked.connect(lambda: self.add_row(None))
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda: self.table.removeRow(self.table.currentRow()) if self.table.currentRow() >= 0
                               else None)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        row.addWidget(buttons)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Your own prices, in US$ per million tokens; they win over Patchbay's built-in table. "
                             "Empty cache prices follow the provider's usual ratio."))
        lay.addWidget(self.table, 1)
        lay.addWidget(self.problem)
        lay.addLayout(row)

    def add_row(self, p: PriceConfig | None) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        values = ("", "", "", "", "", "") if p is None else (
            p.model, p.backend or "", _fmt(p.input), _fmt(p.output), _fmt(p.cache_write), _fmt(p.cache_read))
        for c, v in enumerate(values):
            self.table.setItem(r, c, QTableWidgetItem(v))

    def _cell(self, r: int, c: int) -> str:
        item = self.table.item(r, c)
        return item.text().strip() if item is not None else ""

    def prices(self) -> list[PriceConfig]:
        """The table as prices; raises ValueError with a sentence naming the cell that is wrong."""
        out = []
        for r in range(self.table.rowCount()):
            cells = [self._cell(r, c) for c in range(6)]
            if not any(cells):
                continue
            if not cells[0]:
                raise ValueError(f"Row {r + 1} has no model name.")
            nums: list[float | None] = []
            for c in range(2, 6):
                try:
                    v = float(cells[c]) if cells[c] else None
                except ValueError:
                    raise ValueError(f"Row {r + 1}: {COLUMNS[c]} must be a number, not “{cells[c]}”.") from None
                if (v is None and c < 4) or (v is not None and v < 0):
                    raise ValueError(f"Row {r + 1}: write a price of 0 or more for {COLUMNS[c]}.")
                nums.append(v)
            out.append(PriceConfig(cells[0], float(nums[0] or 0.0), float(nums[1] or 0.0), nums[2], nums[3],
                                   cells[1] or None))
        return out

    def save(self) -> None:
        try:
            prices = self.prices()
        except ValueError as exc:
            self.problem.setText(str(exc))
            return
        if self.settings.save_prices(prices):
            self.accept()
        else:
            self.problem.setText("Not saved: see the message in the window.")
