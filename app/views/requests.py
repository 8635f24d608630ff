"""Requests: the request log as a sortable, filterable table; a row opens its details."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QAction, QFontDatabase, QGuiApplication, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data import RequestDetail, RequestRecord
from app.units import plural
from app.views.csv_export import ask_and_export
from app.views.models import KEY_ROLE, RequestsModel
from app.views.widgets import ColumnFitter, SectionLabel, fit_columns, make_table

if TYPE_CHECKING:
    from app.bridge.backends import Backends
    from app.bridge.usage import Usage

MAX_ROWS = 2000  # the newest; older ones stay in the ledger (patchbay usage, or a filter there)


class RequestDetailDialog(QDialog):
    def __init__(self, detail: RequestDetail, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Request {detail.record.request_id}")
        self.resize(720, 560)
        tabs = QTabWidget()
        info = QWidget()
        form = QFormLayout(info)
        for label, value in detail.fields:
            v = QLabel(value)
            v.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            v.setWordWrap(True)
            form.addRow(label + ":", v)
        tabs.addTab(info, "Summary")
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        for title, body in (("Request body", detail.request_body), ("Response body", detail.response_body)):
            edit = QPlainTextEdit()
            edit.setReadOnly(True)
            edit.setFont(mono)
            if body is None:
                edit.setPlaceholderText("Not captured. Turn on capture in Settings → Request log to keep bodies.")
            else:
                edit.setPlainText(body)
            tabs.addTab(edit, title)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy id", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(detail.record.request_id))
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(tabs)
        lay.addWidget(buttons)


class RequestsPage(QWidget):
    def __init__(self, usage: Usage, backends: Backends, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.usage = usage
        self.backends = backends
        self.model = RequestsModel(self)
        self.view, self.proxy = make_table(self.model, sort_column=0,
                                             empty="No requests yet: each request through the gateway is listed here.")
        self.view.setAccessibleName("Request log")
        hh = self.view.horizontalHeader()
        hh.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        hh.setMinimumSectionSize(40)
        fit_columns(self.view, {0: "00:00:00", 1: "a41e0b77", 2: "● openrouter", 4: "529 overloaded", 5: "120k → 1.2k",
                                6: "$0.012 API-equiv.", 7: "1.2 s", 8: "12.3 s"})
        self.fit = ColumnFitter(self.view, 3, [2, 7, 1], min_stretch=120)  # Backend, TTFT, Session
        self.view.activated.connect(self._open)
        self.view.doubleClicked.connect(self._open)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter: session, model, error text…  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_text)
        find = QAction(self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.triggered.connect(self._focus_search)
        self.addAction(find)
        self.backend_filter = QComboBox()
        self.backend_filter.setAccessibleName("Backend filter")
        self.backend_filter.currentIndexChanged.connect(self._apply_filters)
        self.status_filter = QComboBox()
        self.status_filter.setAccessibleName("Status filter")
        self.status_filter.addItems(["All statuses", "Succeeded", "Failed", "In flight"])
        self.status_filter.currentIndexChanged.connect(self._apply_filters)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("Read the log again from disk (F5)")
        self.reload_button.setShortcut(QKeySequence("F5"))
        self.reload_button.clicked.connect(self.reload)
        self.count = QLabel()
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the requests shown (filters apply) as a CSV file")
        self.export_button.clicked.connect(self._ask_export)

        bar = QHBoxLayout()
        bar.addWidget(SectionLabel("Requests"))
        bar.addWidget(self.search, 1)
        bar.addWidget(self.backend_filter)
        bar.addWidget(self.status_filter)
        bar.addWidget(self.reload_button)
        bar.addWidget(self.export_button)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.view)
        lay.addWidget(self.count)
        self.setTabOrder(self.search, self.backend_filter)
        self.setTabOrder(self.backend_filter, self.status_filter)
        self.setTabOrder(self.status_filter, self.reload_button)
        self.setTabOrder(self.reload_button, self.view)

        self._loaded = False
        self._pending: dict[str, RequestRecord] = {}
        self._dialogs: list[QDialog] = []
        self._want_detail: str | None = None
        usage.requestStarted.connect(self._on_record)
        usage.requestFinished.connect(self._on_record)
        usage.requestsReady.connect(self._on_loaded)
        usage.requestDetailReady.connect(self._on_detail)
        backends.backendsChanged.connect(self._fill_backends)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.rowsRemoved.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.proxy.layoutChanged.connect(self._update_count)
        self._fill_backends()

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def showEvent(self, event: QShowEvent) -> None:
        if not self._loaded:
            self.reload()
        elif self._pending:
            for rec in self._pending.values():
                self.model.add_or_update(rec, limit=MAX_ROWS)
            self._pending.clear()
            self._update_count()
        super().showEvent(event)

    def reload(self) -> None:
        self._loaded = True
        self.usage.load_requests(limit=MAX_ROWS)

    def _on_loaded(self, records: list[RequestRecord]) -> None:
        # The ledger commits a finished request a moment after the gateway reports it: keep what
        # we were told about (in flight, finished, or waiting while the page was hidden) that the
        # ledger's answer does not hold yet, so a reload never loses a row.
        seen = {r.request_id for r in records}
        oldest = min((r.started_at for r in records), default=0.0) if len(records) >= MAX_ROWS else 0.0
        extra = {r.request_id: r for r in self.model.rows()
                 if r.request_id not in seen and (r.in_flight or r.started_at >= oldest)}
        extra.update((rid, r) for rid, r in self._pending.items() if rid not in seen)
        self._pending.clear()
        self.model.replace_all(records + sorted(extra.values(), key=lambda r: r.started_at, reverse=True))
        self._update_count()

    def _on_record(self, rec: RequestRecord) -> None:
        if not self.isVisible():  # no table work for a hidden page under a flood: catch up when shown
            # Kept even before the first load: the ledger commits a moment after the gateway reports,
            # so a page first opened just after a request finished would otherwise miss that row.
            self._pending[rec.request_id] = rec
            while len(self._pending) > MAX_ROWS:
                self._pending.pop(next(iter(self._pending)))
            return
        self.model.add_or_update(rec, limit=MAX_ROWS)

    def _fill_backends(self) -> None:
        current = self.backend_filter.currentText()
        self.backend_filter.blockSignals(True)
        self.backend_filter.clear()
        self.backend_filter.addItem("All backends")
        for b in self.backends.backends():
            self.backend_filter.addItem(b.id)
        i = self.backend_filter.findText(current)
        self.backend_filter.setCurrentIndex(max(0, i))
        self.backend_filter.blockSignals(False)

    def _apply_filters(self) -> None:
        b = self.backend_filter.currentText()
        self.proxy.set_constraint("backend", None if self.backend_filter.currentIndex() <= 0 else b)
        states = {0: None, 1: "ok", 2: "failed", 3: "inflight"}
        self.proxy.set_constraint("state", states[self.status_filter.currentIndex()])
        self._update_count()

    def _update_count(self, *_: object) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        self.count.setText(f"{shown} of {plural(total, 'request')}" if shown != total else plural(total, "request"))
        self.view.set_empty_text("No request matches the filter." if total else
                                 "No requests yet: each request through the gateway is listed here.")

    def _open(self, index: QModelIndex) -> None:
        rid = index.data(KEY_ROLE)
        if rid:
            self._want_detail = rid
            self.usage.load_request_detail(rid)

    def _on_detail(self, detail: RequestDetail | None) -> None:
        if detail is None or detail.record.request_id != self._want_detail:
            return
        self._want_detail = None
        dlg = RequestDetailDialog(detail, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._dialogs = [d for d in self._dialogs if d.isVisible()] + [dlg]
        dlg.show()

    # ------------------------------------------------------------ export

    def shown_records(self) -> list[RequestRecord]:
        """The rows the table shows now, in its order (filters and sorting apply)."""
        rows = []
        for i in range(self.proxy.rowCount()):
            src = self.proxy.mapToSource(self.proxy.index(i, 0))
            rows.append(self.model.row(src.row()))
        return rows

    def export_csv(self, path: str) -> None:
        from app.bridge.export import requests_csv, save

        save(path, requests_csv(self.shown_records()))

    def _ask_export(self) -> None:
        ask_and_export(self, "Export requests", "patchbay-requests.csv", self.export_csv)
