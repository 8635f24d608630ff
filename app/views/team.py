"""Team: an admin's view of a team gateway, in tabs: spend per day by user or group with this
month's totals (Spend), each person's and group's budget state (Budgets), the issued keys
(create, revoke), the audit trail, and each person's Claude Code activity from its telemetry. Shown when the app's gateway runs in team mode, or when its
[ledger] url is a team's PostgreSQL (an admin's look: the policy a gateway recorded)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
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
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data_team import TeamBudgetView, TeamView
from app.views.team_spend import TeamSpendChart
from app.views.theme import STATE_COLORS, fmt_usd
from app.views.widgets import ItemTable, SectionLabel

if TYPE_CHECKING:
    from app.bridge.team import Team
    from app.bridge.team_caps import TeamCaps

KEY_COLUMNS = ("Key", "User", "Groups", "Status", "Created", "Expires", "Created by")  # dates in UTC
AUDIT_COLUMNS = ("When (UTC)", "Who", "Action", "Subject", "What")
BUDGET_COLUMNS = ("Who", "Budget", "Spent", "Limit", "Used", "State", "Resets")
TABS = ("Spend", "Budgets", "Keys", "Audit trail", "Claude Code")
# each person's Claude Code telemetry (OTLP to the team gateway): sessions, lines changed, tool decisions, errors
ACTIVITY_COLUMNS = ("Who", "Sessions", "Lines +", "Lines −", "Tools accepted", "Tools rejected", "API errors",
                    "Last report (UTC)")


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _date(ts: float | None) -> QTableWidgetItem:
    """The day only (the keys table gives its room to the e-mails); the minute in the tooltip."""
    item = QTableWidgetItem("never" if ts is None else time.strftime("%Y-%m-%d", time.gmtime(ts)))
    item.setToolTip(_when(ts) + ("" if ts is None else " UTC"))
    return item


def _cap(table: QTableWidget, widths: dict[int, int]) -> None:
    """Columns as wide as their contents, but never wider than given (the rest elide, whole in the
    tooltip), so one long config path or e-mail does not push the other columns out of sight."""
    h = table.horizontalHeader()
    for col, px in widths.items():
        h.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
        table.resizeColumnToContents(col)
        if table.columnWidth(col) > px:
            table.setColumnWidth(col, px)


def _looking(view: TeamView) -> str:
    """An admin's look at a team ledger: whose policy the page shows, or that none is recorded yet."""
    if view.policy_at is None:
        return ("The team ledger (this app's [ledger] url), read-only: no team gateway has recorded its policy "
                "yet, so identity, groups and budget states are not known here. Spend, keys and the audit trail "
                "show; a gateway records its policy when it starts with [team] on this ledger.")
    return (f"The team ledger (this app's [ledger] url), read-only view. Policy recorded by {view.policy_by} at "
            f"{_when(view.policy_at)} UTC from {view.policy_file}: identity from {', '.join(view.identity) or '-'}; "
            f"groups: {', '.join(view.groups) or 'none'}.")


def state_words(b: TeamBudgetView) -> tuple[str, str]:
    """(the cell: ok · warn · blocked · downgraded · over, its tooltip: what it means)."""
    if b.word == "ok":
        return "ok", f"below the warn line ({b.warn_at:.0%} of the limit)"
    if b.word == "warn":
        return "warn", f"past the warn line ({b.warn_at:.0%} of the limit): requests still go through"
    if b.word == "downgraded":
        backend, _, model = b.action[len("downgrade:"):].partition(",")
        to = backend.strip() + (f" · {model.strip()}" if model.strip() else "")
        return "downgraded", f"at the limit: requests go to {to} until it resets"
    if b.word == "blocked":
        return "blocked", "at the limit: requests are refused (429) until it resets"
    return "over", "past the limit: this budget only warns"


def fallback_words(rows: tuple[tuple[str, str, int, float], ...]) -> str:
    """The Spend tab's note on this month's requests priced at a fallback ("" when none)."""
    if not rows:
        return ""
    shown = "; ".join(f"{model}: {n:,} at {by}, {fmt_usd(cost)}" for model, by, n, cost in rows[:5])
    more = f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
    return (f"Priced by fallback this month: models the price table does not know ({shown}{more}). Add a "
            "[[prices]] entry for a model to charge its own price.")


def budget_label(b: TeamBudgetView) -> str:
    each = "each user" if b.scope == "each-user" else b.kind  # user, group, all, backend
    return f"{each} / {b.period} {fmt_usd(b.limit_usd)}"


def _resets(ts: float) -> str:
    return time.strftime("%a %d %b %H:%M", time.localtime(ts))


def _item(text: str, *, right: bool = False, tip: str | None = None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tip or len(text) > 24:
        item.setToolTip(tip or text)
    return item


def _table(columns: tuple[str, ...], stretch: int | None = None, empty: str = "") -> QTableWidget:
    """``stretch``: the column that takes the room left and elides long names (e-mails) in the middle;
    ``empty``: the grey sentence an empty table shows."""
    t = ItemTable(0, len(columns), empty)
    t.setHorizontalHeaderLabels(list(columns))
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setAlternatingRowColors(True)
    t.setShowGrid(False)
    t.verticalHeader().setVisible(False)
    t.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    t.setWordWrap(False)
    h = t.horizontalHeader()
    h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if stretch is None:
        h.setStretchLastSection(True)
    else:
        h.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        h.setMinimumSectionSize(48)
    return t


def _tab(*widgets: tuple[QWidget, int]) -> QWidget:
    w = QWidget()
    lay = QVBoxLayout(w)
    for widget, stretch in widgets:
        lay.addWidget(widget, stretch)
    return w


class TeamPage(QWidget):
    def __init__(self, team: Team, caps: TeamCaps | None = None) -> None:
        super().__init__()
        self.team = team
        lay = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)

        self.budget_summary = QLabel()
        self.budget_summary.setWordWrap(True)
        self.budget_summary.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.budget_summary)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs, 1)

        # Spend: the chart, then this month's totals
        self.chart = TeamSpendChart()
        self.by_user = _table(("User", "Requests", "Cost"), stretch=0, empty="No team requests this month yet")
        self.by_group = _table(("Group", "Requests", "Cost"), stretch=0, empty="No team requests this month yet")
        for t in (self.by_user, self.by_group):
            t.setMinimumHeight(110)  # three rows at the smallest window
        spend = QWidget()
        sl = QVBoxLayout(spend)
        sl.addWidget(self.chart, 3)
        month = QHBoxLayout()
        for title, table in (("This month by user (top first)", self.by_user), ("This month by group", self.by_group)):
            col = QVBoxLayout()
            col.addWidget(SectionLabel(title))
            col.addWidget(table)
            month.addLayout(col, 1)
        sl.addLayout(month, 2)
        self.fallback_note = QLabel()  # requests priced at a fallback: the admin should price them
        self.fallback_note.setWordWrap(True)
        self.fallback_note.setVisible(False)
        sl.addWidget(self.fallback_note)
        self.tabs.addTab(spend, TABS[0])

        # Budgets: each person's and group's standing this period
        self.budget_note = QLabel()
        self.budget_note.setWordWrap(True)
        self.budgets = _table(BUDGET_COLUMNS, stretch=0, empty="No per-user or per-group budget rows this period")
        self.tabs.addTab(_tab((self.budget_note, 0), (self.budgets, 1)), TABS[1])

        # Keys: issue (the secret shown once) and revoke
        keys = QWidget()
        kl = QVBoxLayout(keys)
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
        kl.addLayout(form)
        self.secret = QLineEdit()
        self.secret.setReadOnly(True)
        self.secret.setVisible(False)
        self.secret.setAccessibleName("The new key, shown once")
        self.secret_note = QLabel()
        self.secret_note.setWordWrap(True)
        self.secret_note.setVisible(False)
        kl.addWidget(self.secret)
        kl.addWidget(self.secret_note)
        self.keys = _table(KEY_COLUMNS, stretch=1, empty="No keys issued yet: create one above, or with "
                           "\"patchbay team key create EMAIL\"")
        kl.addWidget(self.keys, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        self.revoke_button = QPushButton("Revoke selected key")
        self.revoke_button.setEnabled(False)
        self.revoke_button.clicked.connect(self._revoke)
        row.addWidget(self.revoke_button)
        kl.addLayout(row)
        self.keys.itemSelectionChanged.connect(self._selection)
        self.tabs.addTab(keys, TABS[2])

        self.audit = _table(AUDIT_COLUMNS, stretch=4, empty="No admin action recorded yet")
        self.tabs.addTab(_tab((self.audit, 1)), TABS[3])
        if caps is not None:  # every per-person cap and where it came from; set one (app/views/team_caps.py)
            from app.views.team_caps import CapsTab

            self.caps_tab = CapsTab(caps)
            self.tabs.addTab(self.caps_tab, "Caps")

        # Claude Code: what each person's client reported over its telemetry
        self.activity_note = QLabel()
        self.activity_note.setWordWrap(True)
        self.activity = _table(ACTIVITY_COLUMNS, stretch=0, empty="No Claude Code telemetry received yet")
        self.tabs.addTab(_tab((self.activity_note, 0), (self.activity, 1)), TABS[4])

        team.changed.connect(self.show_view)
        team.keyCreated.connect(self._created)
        self.show_view(team.view())

    def show_view(self, view: TeamView) -> None:
        if not view.enabled:
            self.summary.setText("This gateway runs in single-user mode. Add a [team] section to its config to "
                                 "serve a team (README, Team gateway).")
        elif view.admin_view:
            self.summary.setText(_looking(view))
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
            cells = (_item(k.id), _item(k.user, tip=k.user), _item(", ".join(k.groups) or "-"), _item(k.status),
                     _date(k.created_at), _date(k.expires_at), _item(k.created_by or ""))
            for c, item in enumerate(cells):
                if k.status != "active":
                    item.setForeground(Qt.GlobalColor.gray)
                self.keys.setItem(r, c, item)
        for table, rows, none in ((self.by_user, view.by_user, "no user recorded"),
                                  (self.by_group, view.by_group, "in no group")):
            table.setRowCount(len(rows))
            for r, (key, requests, cost) in enumerate(rows):
                table.setItem(r, 0, _item(none if key == "-" else key))
                table.setItem(r, 1, _item(f"{requests:,}", right=True))
                table.setItem(r, 2, _item(fmt_usd(cost), right=True))
        self.chart.set_data(view.spend_by_user, view.spend_by_group)
        self.fallback_note.setText(fallback_words(view.fallback_priced))
        self.fallback_note.setVisible(bool(view.fallback_priced))
        self._show_budgets(view.budgets)
        self.audit.setRowCount(len(view.audit))
        for r, a in enumerate(view.audit):
            for c, text in enumerate((_when(a.at), a.actor, a.action, a.subject, a.summary)):
                self.audit.setItem(r, c, _item(text))
        self._show_activity(view)
        _cap(self.keys, {6: 160})
        _cap(self.audit, {1: 180, 3: 220})
        self.tabs.setTabText(2, f"{TABS[2]} ({sum(k.status == 'active' for k in view.keys)} active)")
        self._selection()

    def _show_activity(self, view: TeamView) -> None:
        self.activity_note.setText(
            f"The last {view.activity_days} days, from the telemetry each person's Claude Code sends the team gateway "
            "(pushed with the managed settings; [team.telemetry] in the gateway's config). Lines are those Claude "
            "Code's edits added and removed; tool decisions are the person's answers to permission prompts.")
        self.activity.setRowCount(len(view.activity))
        for r, a in enumerate(view.activity):
            cells = (_item(a.user, tip=a.user), *(_item(f"{n:,}", right=True) for n in (
                a.sessions, a.lines_added, a.lines_removed, a.accepted, a.rejected, a.errors)), _item(_when(a.last_seen)))
            for c, item in enumerate(cells):
                if c == 6 and a.errors:
                    item.setForeground(QColor(STATE_COLORS["error"]))
                self.activity.setItem(r, c, item)

    def _show_budgets(self, budgets: tuple[TeamBudgetView, ...]) -> None:
        self.budgets.setRowCount(len(budgets))
        for r, b in enumerate(budgets):
            words, meaning = state_words(b)
            state = _item(words, tip=meaning)
            color = STATE_COLORS["error" if b.state == "limit" else b.state]
            state.setForeground(QColor(color))
            if b.state != "ok":
                font = state.font()
                font.setBold(True)
                state.setFont(font)
            cells = (_item(b.subject, tip=b.subject), _item(budget_label(b), tip=f"[[budgets]] scope = \"{b.scope}\""),
                     _item(fmt_usd(b.spent_usd), right=True), _item(fmt_usd(b.limit_usd), right=True),
                     _item(f"{b.fraction:.0%}", right=True), state, _item(_resets(b.resets_at)))
            for c, item in enumerate(cells):
                self.budgets.setItem(r, c, item)
        _cap(self.budgets, {1: 180, 6: 150})
        over = [b for b in budgets if b.state == "limit"]
        warn = [b for b in budgets if b.state == "warn"]
        if not budgets:
            self.budget_note.setText("No budgets, or nobody has spent against a per-person one this period. Add "
                                     "[[budgets]] with scope = \"each-user\", \"user:EMAIL\", \"group:NAME\" or "
                                     "\"all\" to the config.")
            self.budget_summary.setText("")
        else:
            self.budget_note.setText("Spent this period, from the ledger's rows (for each-user budgets: everyone "
                                     "who sent a request this period, most used first; for \"all\": every request).")
            parts = []
            if over:
                parts.append(f"<span style='color:{STATE_COLORS['error']}'><b>{len(over)} at the limit</b></span>")
            if warn:
                parts.append(f"<span style='color:{STATE_COLORS['warn']}'><b>{len(warn)} past the warn line</b>"
                             "</span>")
            self.budget_summary.setText("Budgets: " + (", ".join(parts) if parts else "all within their limits")
                                        + f" ({len(budgets)} rows, Budgets tab).")
        self.tabs.setTabText(1, f"{TABS[1]} ({len(over)} at the limit)" if over else TABS[1])

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
        self.tabs.setCurrentIndex(TABS.index("Keys"))  # the secret is shown this once: in sight
        self.secret.setText(secret)
        self.secret.setVisible(True)
        self.secret_note.setText(f"The key {key_id} for {user}, shown this once and not stored: hand it to {user} "
                                 "now (they run `patchbay team join URL` and paste it).")
        self.secret_note.setVisible(True)

    def _revoke(self) -> None:
        sel = self._selected_key()
        if sel is not None:
            self.team.revoke(sel[0])
