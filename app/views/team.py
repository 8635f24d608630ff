"""Team: an admin's view of a team gateway: the issued keys (create, revoke) and the audit trail.
Shown only when the app's gateway runs in team mode ([team] in its config)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
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

from app.views.data import TeamView
from app.views.widgets import SectionLabel

if TYPE_CHECKING:
    from app.bridge.team import Team

KEY_COLUMNS = ("Key", "User", "Groups", "Status", "Created (UTC)", "Expires (UTC)", "Created by")
AUDIT_COLUMNS = ("When (UTC)", "Who", "Action", "Subject", "What")


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _table(columns: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setAlternatingRowColors(True)
    t.setShowGrid(False)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


class TeamPage(QWidget):
    def __init__(self, team: "Team") -> None:
        super().__init__()
        self.team = team
        lay = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)

        spend = QHBoxLayout()
        self.by_user = _table(("User", "Requests", "Cost"))
        self.by_group = _table(("Group", "Requests", "Cost"))
        for title, table in (("This month by user (top first)", self.by_user), ("This month by group", self.by_group)):
            col = QVBoxLayout()
            col.addWidget(SectionLabel(title))
            col.addWidget(table)
            spend.addLayout(col, 1)
        lay.addLayout(spend, 1)

        lay.addWidget(SectionLabel("Keys"))
        form = QHBoxLayout()
        self.email = QLineEdit()
        self.email.setPlaceholderText("person@corp.example")
        self.email.setAccessibleName("E-mail of the key's holder")
        self.group = QComboBox()
        self.group.setEditable(True)
        self.group.setAccessibleName("Group")
        self.expires = QComboBox()
        self.expires.addItems(["90d", "30d", "12w", "never"])
        self.expires.setAccessibleName("Expires")
        self.create_button = QPushButton("Create key")
        self.create_button.clicked.connect(self._create)
        for w, stretch in ((QLabel("E-mail"), 0), (self.email, 2), (QLabel("Group"), 0), (self.group, 1),
                           (QLabel("Expires"), 0), (self.expires, 0), (self.create_button, 0)):
            form.addWidget(w, stretch)
        lay.addLayout(form)
        self.secret = QLineEdit()
        self.secret.setReadOnly(True)
        self.secret.setVisible(False)
        self.secret.setAccessibleName("The new key, shown once")
        self.secret_note = QLabel()
        self.secret_note.setWordWrap(True)
        self.secret_note.setVisible(False)
        lay.addWidget(self.secret)
        lay.addWidget(self.secret_note)
        self.keys = _table(KEY_COLUMNS)
        lay.addWidget(self.keys, 2)
        row = QHBoxLayout()
        row.addStretch(1)
        self.revoke_button = QPushButton("Revoke selected key")
        self.revoke_button.setEnabled(False)
        self.revoke_button.clicked.connect(self._revoke)
        row.addWidget(self.revoke_button)
        lay.addLayout(row)
        self.keys.itemSelectionChanged.connect(self._selection)

        lay.addWidget(SectionLabel("Audit trail"))
        self.audit = _table(AUDIT_COLUMNS)
        lay.addWidget(self.audit, 2)

        team.changed.connect(self.show_view)
        team.keyCreated.connect(self._created)
        self.show_view(team.view())

    def show_view(self, view: TeamView) -> None:
        if not view.enabled:
            self.summary.setText("This gateway runs in single-user mode. Add a [team] section to its config to "
                                 "serve a team (README, Team gateway).")
        else:
            self.summary.setText(f"Team gateway: identity from {', '.join(view.identity)}; groups: "
                                 f"{', '.join(view.groups) or 'none (everyone verified may use everything)'}. "
                                 "Keys and the audit trail live in the ledger database, so keys made with "
                                 "\"patchbay team key\" show here too.")
        current = self.group.currentText()
        self.group.clear()
        self.group.addItems(["", *view.groups])
        self.group.setCurrentText(current)
        self.keys.setRowCount(len(view.keys))
        for r, k in enumerate(view.keys):
            cells = (k.id, k.user, ", ".join(k.groups) or "-", k.status, _when(k.created_at), _when(k.expires_at),
                     k.created_by or "")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if k.status != "active":
                    item.setForeground(Qt.GlobalColor.gray)
                self.keys.setItem(r, c, item)
        for table, rows in ((self.by_user, view.by_user), (self.by_group, view.by_group)):
            table.setRowCount(len(rows))
            for r, (key, requests, cost) in enumerate(rows):
                for c, text in enumerate((key, f"{requests:,}", f"${cost:,.2f}")):
                    item = QTableWidgetItem(text)
                    if c:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    table.setItem(r, c, item)
        self.audit.setRowCount(len(view.audit))
        for r, a in enumerate(view.audit):
            for c, text in enumerate((_when(a.at), a.actor, a.action, a.subject, a.summary)):
                self.audit.setItem(r, c, QTableWidgetItem(text))
        self._selection()

    def _selected_key(self) -> tuple[str, str] | None:
        rows = {i.row() for i in self.keys.selectedItems()}
        if len(rows) != 1:
            return None
        r = rows.pop()
        id_item, status_item = self.keys.item(r, 0), self.keys.item(r, 3)
        if id_item is None or status_item is None:
            return None
        return id_item.text(), status_item.text()

    def _selection(self) -> None:
        sel = self._selected_key()
        self.revoke_button.setEnabled(sel is not None and sel[1] == "active")

    def _create(self) -> None:
        group = self.group.currentText().strip()
        if self.team.create_key(self.email.text(), [group] if group else [], self.expires.currentText()):
            self.email.clear()

    def _created(self, secret: str, key_id: str, user: str) -> None:
        self.secret.setText(secret)
        self.secret.setVisible(True)
        self.secret_note.setText(f"The key {key_id} for {user}, shown this once and not stored: hand it to {user} "
                                 "now (they run `patchbay team join URL` and paste it).")
        self.secret_note.setVisible(True)

    def _revoke(self) -> None:
        sel = self._selected_key()
        if sel is not None:
            self.team.revoke(sel[0])
