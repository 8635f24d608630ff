"""Dashboard: the live Claude Code sessions, one session's token stream, and its last requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data import RequestRecord, StreamPiece
from app.units import plural
from app.views.icons import backend_color, dot_icon
from app.views.models import KEY_ROLE, RequestsModel, SessionsModel
from app.views.plan_strip import PlanStrip
from app.views.stream import StreamView
from app.views.theme import fmt_usd
from app.views.widgets import ColumnFitter, ElidedLabel, SectionLabel, fit_columns, make_table

if TYPE_CHECKING:
    from app.bridge.backends import Backends
    from app.bridge.caps import Caps
    from app.bridge.live import Live
    from app.bridge.subscription import Subscription


class DashboardPage(QWidget):
    def __init__(self, live: Live, backends: Backends, caps: Caps, subscription: Subscription | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.live = live
        self.backends = backends
        self.caps = caps
        # a Claude subscription's windows above the sessions; hidden without subscription traffic
        self.plan = PlanStrip(subscription) if subscription is not None else None
        self.selected: str | None = None

        self.sessions_model = SessionsModel(self)
        self.sessions_view, self.sessions_proxy = make_table(
            self.sessions_model, sort_column=8,
            empty="No Claude Code sessions yet. Connect Claude Code (Settings → Claude Code) or run "
                  "“patchbay claude”: its sessions show up here as they stream.")
        self.sessions_view.setAccessibleName("Live sessions")
        self.sessions_proxy.setDynamicSortFilter(True)
        hh = self.sessions_view.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        hh.setMinimumSectionSize(40)
        # widths from the font in use (under a larger font every column still fits its header and a value)
        fit_columns(self.sessions_view, {1: "a41e0b77", 2: "● openrouter 📌", 3: "claude-sonnet-4-5", 4: "12 (1 live)",
                                         5: "88 tok/s", 6: "≈1.5M", 7: "$12.30 API-equiv.", 8: "streaming"})
        self.sessions_fit = ColumnFitter(self.sessions_view, 0, [1, 3, 2], min_stretch=150)  # Id, Model, Backend
        self.sessions_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.sessions_view.customContextMenuRequested.connect(self._context_menu)
        self.sessions_view.selectionModel().currentRowChanged.connect(self._on_current)

        self.pin_button = QPushButton("Pin session to")  # a push button keeps its menu arrow clear of the text
        self.pin_button.setToolTip("Send only the selected session to another backend/model (Ctrl+P)")
        self.pin_menu = QMenu(self.pin_button)
        self.pin_menu.aboutToShow.connect(lambda: self._fill_pin_menu(self.pin_menu, self.selected))
        self.pin_button.setMenu(self.pin_menu)
        self.unpin_button = QPushButton("Unpin")
        self.unpin_button.setToolTip("Let the selected session follow the active backend again")
        self.unpin_button.clicked.connect(self._unpin_selected)
        self.cap_button = QPushButton("Cost cap…")
        self.cap_button.setToolTip("Stop the selected session once it has spent this much (other sessions go on)")
        self.cap_button.clicked.connect(self._ask_cap)
        pin_shortcut = QAction(self)
        pin_shortcut.setShortcut(QKeySequence("Ctrl+P"))
        pin_shortcut.triggered.connect(lambda: self.pin_button.showMenu() if self.selected else None)
        self.addAction(pin_shortcut)

        self.summary = QLabel()
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(SectionLabel("Live sessions"))
        head.addWidget(self.summary, 1)
        head.addWidget(self.pin_button)
        head.addWidget(self.unpin_button)
        head.addWidget(self.cap_button)
        tl.addLayout(head)
        tl.addWidget(self.sessions_view)

        self.stream_title = ElidedLabel("Token stream")  # a long session title ends in "…" (full text: tooltip)
        self.stream = StreamView()
        legend = QLabel(
            "<span style='color:#8a7fd6'><i>thinking</i></span>&nbsp;·&nbsp;text&nbsp;·&nbsp;"
            "<span style='color:#d08a2c'><b>⚙&nbsp;tool&nbsp;call</b></span>&nbsp;·&nbsp;"
            "<span style='color:#2f9c8f'>tool&nbsp;input</span>")
        legend.setTextFormat(Qt.TextFormat.RichText)
        legend.setToolTip("How the stream shows each kind of content")
        self.legend = legend
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        sh = QHBoxLayout()
        sh.setSpacing(16)  # the title never runs into the legend
        sh.addWidget(self.stream_title, 1)
        sh.addWidget(legend)
        ll.addLayout(sh)
        ll.addWidget(self.stream)

        self.recent_model = RequestsModel(self)
        self.recent_view, self.recent_proxy = make_table(self.recent_model, sort_column=0,
                                                         empty="Select a session to see its last requests.")
        self.recent_view.setAccessibleName("Last requests of the selected session")
        self.recent_view.hideColumn(1)  # the session: it is the selected one
        rh = self.recent_view.horizontalHeader()
        rh.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        rh.setMinimumSectionSize(40)
        fit_columns(self.recent_view, {0: "00:00:00", 2: "● deepseek", 4: "200", 5: "12k/1.2k", 6: "$0.0021",
                                       7: "1.2 s", 8: "12.3 s"})
        # Backend, TTFT, then Time give way in a narrow window; Status never does (a refusal would read "0 → 0")
        self.recent_fit = ColumnFitter(self.recent_view, 3, [2, 7, 0], min_stretch=90)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(SectionLabel("Last requests"))
        rl.addWidget(self.recent_view)

        # stable splits: the halves come from the page's size, never from what they show (a title's
        # length, a font); a user's drag is kept for the session
        for w in (left, right):
            w.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
            w.setMinimumSize(220, 120)
        top.setMinimumHeight(120)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(left)
        bottom.addWidget(right)
        bottom.setStretchFactor(0, 1)
        bottom.setStretchFactor(1, 1)
        bottom.setChildrenCollapsible(False)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setChildrenCollapsible(False)
        self.splitter = split
        self.bottom_splitter = bottom
        self._user_split = False
        bottom.splitterMoved.connect(self._split_moved)
        split.splitterMoved.connect(self._split_moved)
        lay = QVBoxLayout(self)
        if self.plan is not None:
            lay.addWidget(self.plan)
        lay.addWidget(split)
        self.page_layout = lay

        self._refresh_pending = False
        self._stream_buffer: list[StreamPiece] = []
        self._stream_timer = QTimer(self)  # the stream view redraws at most ~12 times a second
        self._stream_timer.setSingleShot(True)
        self._stream_timer.setInterval(80)
        self._stream_timer.timeout.connect(self._flush_stream)
        live.sessionsChanged.connect(self._schedule_refresh)
        live.streamBatch.connect(self._on_stream)
        live.requestStarted.connect(self._on_request)
        live.requestFinished.connect(self._on_request)
        live.pinsChanged.connect(self.refresh)
        self._throttle = QTimer(self)  # the table redraws at most twice a second
        self._throttle.setSingleShot(True)
        self._throttle.setInterval(500)
        self._throttle.timeout.connect(self.refresh)
        self.refresh()
        self._update_buttons()

    def resizeEvent(self, ev: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(ev)
        m = self.page_layout.contentsMargins()
        w, h = ev.size().width() - m.left() - m.right(), ev.size().height() - m.top() - m.bottom()
        if not self._user_split:
            self.balance(w, h)
        self._fit_legend(self.bottom_splitter.sizes()[0] if self._user_split else w // 2)

    def _split_moved(self, *_: object) -> None:
        self._user_split = True
        self._fit_legend(self.bottom_splitter.sizes()[0])

    def _fit_legend(self, stream_width: int) -> None:
        """The legend gives way to the session's title when the stream's half is narrow."""
        self.legend.setVisible(stream_width >= 480)

    def balance(self, w: int | None = None, h: int | None = None) -> None:
        """The default splits: sessions over the stream 2:3, the stream beside the requests 1:1,
        whatever the panes show (a long title, a large font)."""
        h = max(2, self.splitter.height() if h is None else h)
        self.splitter.setSizes([h * 2 // 5, h - h * 2 // 5])
        w = max(2, self.bottom_splitter.width() if w is None else w)
        self.bottom_splitter.setSizes([w // 2, w - w // 2])

    # --------------------------------------------------------------- sessions

    def _schedule_refresh(self) -> None:
        if not self._throttle.isActive():
            self._throttle.start()

    def refresh(self) -> None:
        sessions = self.live.sessions()
        self.sessions_model.set_rows(sessions)
        live = sum(1 for s in sessions if s.in_flight)
        cost = sum(s.cost_usd for s in sessions)
        value = sum(s.api_equiv_usd for s in sessions)  # paid by a Claude plan: said apart, never as spend
        plan = f" · {fmt_usd(value)} API-equiv. on the Claude plan" if value else ""
        self.summary.setText(f"  {plural(len(sessions), 'session')} · {live} streaming · {fmt_usd(cost)} so far{plan}")
        if self.selected is None and sessions:
            self.select_session(sessions[0].session_id)
        self._update_buttons()

    def select_session(self, session_id: str) -> None:
        row = self.sessions_model.find(session_id)
        if row < 0:
            return
        idx = self.sessions_proxy.mapFromSource(self.sessions_model.index(row, 0))
        self.sessions_view.selectionModel().setCurrentIndex(
            idx, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        sid = current.data(KEY_ROLE) if current.isValid() else None
        if sid == self.selected:
            return
        self.selected = sid
        self._show_session()

    def _show_session(self) -> None:
        sid = self.selected
        if sid is None:
            self.stream_title.setText("Token stream")
            self.stream.reset()
            self.recent_model.set_rows([])
            return
        s = self.live.session(sid)
        label = s.label if s else sid
        self.stream_title.setText(f"Token stream — {label}")
        self._stream_buffer = []
        self.stream.reset(self.live.stream_pieces(sid))
        self.recent_model.set_rows(self.live.recent_requests(sid, limit=50))
        self._update_buttons()

    def _ask_cap(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        sid = self.selected
        if not sid:
            return
        now = self.caps.session_cap(sid)
        amount, ok = QInputDialog.getDouble(
            self, "Cost cap for this session",
            "Stop this session once it has spent (US$; 0 removes the cap set here):", now[1] if now else 5.0,
            0.0, 1_000_000.0, 2)
        if ok:
            self.set_cap_for_selected(amount or None)

    def set_cap_for_selected(self, amount: float | None) -> None:
        if self.selected:
            self.caps.set_session_cap(self.selected, amount)
            self._update_buttons()

    def _update_buttons(self) -> None:
        has = bool(self.selected)
        self.pin_button.setEnabled(has)
        self.cap_button.setEnabled(has)
        cap = self.caps.session_cap(self.selected) if self.selected else None
        self.cap_button.setText(f"Cap {fmt_usd(cap[1])}" if cap else "Cost cap…")
        s = self.live.session(self.selected) if self.selected else None
        self.unpin_button.setEnabled(bool(s and s.pinned_backend))

    # --------------------------------------------------------------- live updates

    def _on_stream(self, pieces: list[StreamPiece]) -> None:
        if self.selected is None:
            return
        mine = [p for p in pieces if p.session_id == self.selected]
        if mine:
            self._stream_buffer.extend(mine)
            if not self._stream_timer.isActive():
                self._stream_timer.start()

    def _flush_stream(self) -> None:
        pieces, self._stream_buffer = self._stream_buffer, []
        if pieces and self.selected is not None:
            self.stream.append_pieces([p for p in pieces if p.session_id == self.selected])

    def _on_request(self, rec: RequestRecord) -> None:
        if self.selected is not None and rec.session_id == self.selected:
            self.recent_model.add_or_update(rec, limit=50)

    # --------------------------------------------------------------- pinning

    def _context_menu(self, pos: QPoint) -> None:
        idx = self.sessions_view.indexAt(pos)
        if not idx.isValid():
            return
        sid = idx.data(KEY_ROLE)
        menu = QMenu(self)
        pin = menu.addMenu("Pin to")
        self._fill_pin_menu(pin, sid)
        s = self.live.session(sid)
        un = menu.addAction("Unpin (follow the active backend)")
        un.setEnabled(bool(s and s.pinned_backend))
        un.triggered.connect(lambda: self.live.unpin_session(sid))
        menu.addSeparator()
        cp = menu.addAction("Copy session id")
        cp.setEnabled(bool(sid))
        cp.triggered.connect(lambda: QGuiApplication.clipboard().setText(sid))
        menu.exec(self.sessions_view.viewport().mapToGlobal(pos))

    def _fill_pin_menu(self, menu: QMenu, session_id: str | None) -> None:
        menu.clear()
        if not session_id:
            a = menu.addAction("Requests without a session id cannot be pinned")
            a.setEnabled(False)
            return
        s = self.live.session(session_id)
        for b in self.backends.backends():
            sub = menu.addMenu(dot_icon(backend_color(b.id)), b.id)
            default = sub.addAction("Model as requested" if b.kind == "anthropic" else "Default model")
            default.setCheckable(True)
            default.setChecked(bool(s and s.pinned_backend == b.id and not s.pinned_model))
            default.triggered.connect(lambda _=False, bid=b.id: self.pin(session_id, bid, None))
            models = self.backends.models_for(b.id)
            if models:
                sub.addSeparator()
            for m in models[:40]:
                a = sub.addAction(m)
                a.setCheckable(True)
                a.setChecked(bool(s and s.pinned_backend == b.id and s.pinned_model == m))
                a.triggered.connect(lambda _=False, bid=b.id, m=m: self.pin(session_id, bid, m))

    def pin(self, session_id: str, backend: str, model: str | None) -> None:
        self.live.pin_session(session_id, backend, model)
        self.refresh()

    def _unpin_selected(self) -> None:
        if self.selected:
            self.live.unpin_session(self.selected)
            self.refresh()
