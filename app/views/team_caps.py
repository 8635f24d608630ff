"""The Team page's Caps tab: every per-person cap and where it came from (the config file, or the
Admin API), and a form to set or delete a spend limit (written to the ledger database the page
reads; the gateways apply it within a second)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data_caps import CapsView
from app.views.widgets import ItemTable

if TYPE_CHECKING:
    from app.bridge.team_caps import TeamCaps

CAP_COLUMNS = ("Who", "Period", "Cap", "Action", "From", "Note", "Changed by", "Changed (UTC)")
SCOPES = (("A person", "user"), ("A group (each member)", "rbac_group"), ("Everyone (each person)", "organization"))
NOTE = ("One cap applies to a person per period, the most specific: an Admin API user cap, then the config's "
        "user: budget, then the lowest of their groups' caps, then the organization's, then the config's "
        "each-user budget. Within a level the Admin API's replaces the config's. Pooled budgets (all, backend:, "
        "group:) apply beside it. A cap set here is written to the team's ledger database and every gateway "
        "applies it within a second.")


def _table() -> QTableWidget:
    t = ItemTable(0, len(CAP_COLUMNS), "No caps: set one below, or add [[budgets]] to the gateways' config")
    t.setHorizontalHeaderLabels(list(CAP_COLUMNS))
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setAlternatingRowColors(True)
    t.setShowGrid(False)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


class CapsTab(QWidget):
    def __init__(self, caps: TeamCaps) -> None:
        super().__init__()
        self.caps = caps
        lay = QVBoxLayout(self)
        self.note = QLabel(NOTE)
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        form = QHBoxLayout()
        self.scope = QComboBox()
        for text, value in SCOPES:
            self.scope.addItem(text, value)
        self.scope.setAccessibleName("Whose cap")
        self.who = QComboBox()
        self.who.setEditable(True)
        self.who.setAccessibleName("Person's e-mail or group")
        edit = self.who.lineEdit()
        if edit is not None:
            edit.setPlaceholderText("alice@corp.example or a group")
        self.period = QComboBox()
        self.period.addItems(["daily", "weekly", "monthly"])
        self.period.setAccessibleName("Period")
        self.amount = QLineEdit()
        self.amount.setPlaceholderText("$ (blank: unlimited)")
        self.amount.setAccessibleName("Cap in dollars")
        self.action = QComboBox()
        self.action.addItems(["block", "warn"])
        self.action.setAccessibleName("At the cap")
        self.set_button = QPushButton("Set cap")
        self.set_button.clicked.connect(self._set)
        for w, stretch in ((self.scope, 0), (self.who, 2), (self.period, 0), (self.amount, 1), (self.action, 0),
                           (self.set_button, 0)):
            form.addWidget(w, stretch)
        lay.addLayout(form)
        self.table = _table()
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        row.addWidget(self.problem, 1)
        self.delete_button = QPushButton("Delete selected Admin API cap")
        self.delete_button.setEnabled(False)
        self.delete_button.clicked.connect(self._delete)
        row.addWidget(self.delete_button)
        lay.addLayout(row)
        self.table.itemSelectionChanged.connect(self._selection)
        self._ids: list[str | None] = []
        caps.changed.connect(self.show_view)
        self.show_view(caps.view())

    def show_view(self, view: CapsView) -> None:
        self.table.setRowCount(len(view.rows))
        self._ids = [r.limit_id for r in view.rows]
        for i, r in enumerate(view.rows):
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.changed_at)) if r.changed_at else ""
            for c, text in enumerate((r.scope, r.period, r.amount, r.action, r.origin, r.note, r.changed_by, when)):
                item = QTableWidgetItem(text)
                if len(text) > 24:
                    item.setToolTip(text)
                self.table.setItem(i, c, item)
        current = self.who.currentText()
        self.who.clear()
        self.who.addItems(["", *view.groups])
        self.who.setCurrentText(current)
        self.problem.setText(f"The Admin API's caps could not be read: {view.problem}" if view.problem else "")
        self._selection()

    def _selection(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        self.delete_button.setEnabled(len(rows) == 1 and self._ids[next(iter(rows))] is not None
                                      if rows and max(rows) < len(self._ids) else False)

    def _set(self) -> None:
        if self.caps.set_limit(self.scope.currentData(), self.who.currentText().strip(), self.period.currentText(),
                               self.amount.text(), self.action.currentText()):
            self.amount.clear()

    def _delete(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if len(rows) == 1:
            limit_id = self._ids[next(iter(rows))]
            if limit_id is not None:
                self.caps.delete_limit(limit_id)
