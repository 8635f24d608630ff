"""The main window: the backend switch on a toolbar, six pages, and the message banner."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QSizePolicy,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data import GatewayView, LedgerView, UserMessage
from app.units import plural
from app.views.banner import Banner
from app.views.icons import app_icon, backend_color, dot_icon
from app.views.theme import SELECTION_MARKER, STATE_COLORS, fmt_usd

if TYPE_CHECKING:
    from app.bridge.main import Bridge

PAGES = (("dashboard", "Dashboard"), ("backends", "Backends"), ("spend", "Spend"), ("requests", "Requests"),
         ("monitor", "Monitor"), ("settings", "Settings"), ("team", "Team"))  # Team: in team mode only
AS_REQUESTED = "as requested"


def _page_factory(name: str) -> Callable[[Bridge], QWidget]:
    # Pages are built when first shown (pyqtgraph and friends load only then): a faster start.
    # Each page gets only the parts of the bridge it uses.
    def make(bridge: Bridge) -> QWidget:
        if name == "dashboard":
            from app.views.dashboard import DashboardPage

            return DashboardPage(bridge.live, bridge.backends, bridge.caps, bridge.subscription)
        if name == "backends":
            from app.views.backends import BackendsPage

            return BackendsPage(bridge.backends)
        if name == "spend":
            from app.views.spend import SpendPage

            return SpendPage(bridge.usage)
        if name == "requests":
            from app.views.requests import RequestsPage

            return RequestsPage(bridge.usage, bridge.backends)
        if name == "monitor":
            from app.views.monitor import MonitorPage

            return MonitorPage(bridge.monitor)
        if name == "team":
            from app.views.team import TeamPage

            return TeamPage(bridge.team, bridge.team_caps)
        from app.views.settings import SettingsPage

        return SettingsPage(bridge.settings, bridge.backends)

    return make


MIN_SIZE = (900, 600)

class MainWindow(QMainWindow):
    quitRequested = Signal()
    hiddenToTray = Signal()  # the first time the window closes into the tray

    def __init__(self, bridge: Bridge, *, keep_running_in_tray: bool = False) -> None:
        super().__init__()
        self.bridge = bridge
        self.keep_running_in_tray = keep_running_in_tray
        self._told_about_tray = False
        self.setWindowTitle("Patchbay")
        self.setWindowIcon(app_icon())
        self.resize(1240, 800)
        self.setMinimumSize(*MIN_SIZE)  # every page is laid out to be usable down to this

        # ---- toolbar: the switch, always visible
        tb = QToolBar("Switch")
        tb.setObjectName("switchToolbar")
        tb.setMovable(False)
        tb.setFloatable(False)
        tb.setIconSize(QSize(14, 14))
        tb.setContextMenuPolicy(Qt.ContextMenuPolicy.PreventContextMenu)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        self.toolbar = tb
        bl = QLabel("  &Backend ")
        self.backend_combo = QComboBox()
        self.backend_combo.setAccessibleName("Active backend")
        self.backend_combo.setMinimumWidth(170)
        self.backend_combo.setToolTip("Where the next request goes (Ctrl+B)")
        bl.setBuddy(self.backend_combo)
        ml = QLabel("  &Model ")
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName("Model")
        self.model_combo.setMinimumWidth(230)
        self.model_combo.setToolTip("The model asked of the backend; “as requested” passes the client's own")
        ml.setBuddy(self.model_combo)
        tb.addWidget(bl)
        tb.addWidget(self.backend_combo)
        tb.addWidget(ml)
        tb.addWidget(self.model_combo)
        tb.addSeparator()
        self.pause_action = QAction("Pause", self)
        self.pause_action.setCheckable(True)
        self.pause_action.setToolTip("Pause the gateway: new requests are refused until you resume")
        self.pause_action.toggled.connect(self._pause_toggled)
        tb.addAction(self.pause_action)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.spend_label = QLabel()
        self.spend_label.setToolTip("Today's spend (Spend page for details)")
        tb.addWidget(self.spend_label)
        self.state_label = QLabel()
        tb.addWidget(self.state_label)
        focus_switch = QAction(self)
        focus_switch.setShortcut(QKeySequence("Ctrl+B"))
        focus_switch.triggered.connect(self._open_switch)
        self.addAction(focus_switch)

        # ---- navigation + pages
        self.nav = QListWidget()
        self.nav.setAccessibleName("Pages")
        self.nav.setFixedWidth(150)
        self.nav.setFrameShape(QListWidget.Shape.NoFrame)
        self.nav.setSpacing(2)
        self.nav.setStyleSheet(SELECTION_MARKER)
        self.stack = QStackedWidget()
        self._pages: dict[str, QWidget] = {}
        self._placeholders: dict[str, QWidget] = {}
        for i, (key, title) in enumerate(PAGES):
            item = QListWidgetItem(f"{title}")
            item.setToolTip(f"{title} (Ctrl+{i + 1})")
            item.setSizeHint(QSize(140, 30))
            self.nav.addItem(item)
            ph = QWidget()
            self._placeholders[key] = ph
            self.stack.addWidget(ph)
            act = QAction(self)
            act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, k=key: self.show_page(k))
            self.addAction(act)
        self.nav.currentRowChanged.connect(lambda r: self.show_page(PAGES[r][0]) if r >= 0 else None)
        team_item = self.nav.item(len(PAGES) - 1)
        team_item.setHidden(not bridge.team.view().enabled)
        bridge.team.changed.connect(lambda v: team_item.setHidden(not v.enabled))

        self.banner = Banner()
        self.banner.actionRequested.connect(self._banner_action)
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.banner)
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        cl.addLayout(body, 1)
        self.setCentralWidget(central)
        self.status_gateway = QLabel()
        self.status_gateway.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.statusBar().addWidget(self.status_gateway, 1)
        self.status_ledger = QLabel()  # a team ledger that is away: rows in the spool, what budgets do
        self.status_ledger.hide()
        self.statusBar().addPermanentWidget(self.status_ledger)
        self.status_counts = QLabel()
        self.statusBar().addPermanentWidget(self.status_counts)
        self._requests_seen = 0
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(1000)
        self._count_timer.timeout.connect(self._show_count)

        self.backend_combo.activated.connect(self._backend_chosen)
        self.model_combo.activated.connect(self._model_chosen)
        bridge.backends.backendsChanged.connect(self.sync_switch)
        bridge.backends.activeChanged.connect(lambda *_: self.sync_switch())
        bridge.backends.modelsListed.connect(self._on_models)
        bridge.gatewayChanged.connect(self._on_gateway)
        bridge.live.pausedRefusals.connect(lambda _n: self._on_gateway(self.bridge.gateway()))
        bridge.usage.spendTodayChanged.connect(lambda _v: self._update_spend())
        bridge.usage.budgetsChanged.connect(lambda _v: self._update_spend())
        bridge.notices.message.connect(self.banner.show_message)
        bridge.notices.messageCleared.connect(self.banner.clear)
        bridge.live.requestFinished.connect(self._count_request)
        bridge.ledger.changed.connect(self._on_ledger)
        if bridge.fatal is not None:
            self.banner.show_message(bridge.fatal)
        self.sync_switch()
        self._on_gateway(bridge.gateway())
        self._update_spend()
        self.show_page("dashboard")
        self.setTabOrder(self.backend_combo, self.model_combo)
        self.setTabOrder(self.model_combo, self.nav)

    def _open_switch(self) -> None:
        self.backend_combo.setFocus()
        self.backend_combo.showPopup()

    # ------------------------------------------------------------ pages

    def page(self, key: str) -> QWidget:
        """The page widget, built on first use."""
        if key not in self._pages:
            w = _page_factory(key)(self.bridge)
            w.setObjectName(f"page-{key}")
            ph = self._placeholders.pop(key)
            i = self.stack.indexOf(ph)
            self.stack.insertWidget(i, w)
            self.stack.removeWidget(ph)
            ph.deleteLater()
            self._pages[key] = w
        return self._pages[key]

    def show_page(self, key: str) -> None:
        w = self.page(key)
        self.stack.setCurrentWidget(w)
        self.banner.set_page(key)
        row = [k for k, _ in PAGES].index(key)
        if self.nav.currentRow() != row:
            self.nav.blockSignals(True)
            self.nav.setCurrentRow(row)
            self.nav.blockSignals(False)

    def current_page(self) -> str:
        w = self.stack.currentWidget()
        for k, p in self._pages.items():
            if p is w:
                return k
        return ""

    # ------------------------------------------------------------ the switch

    def sync_switch(self) -> None:
        backend, model = self.bridge.backends.active()
        self.backend_combo.blockSignals(True)
        self.backend_combo.clear()
        for b in self.bridge.backends.backends():
            label = b.id + ("  ⚠" if b.health in ("failing", "open") else "")
            self.backend_combo.addItem(dot_icon(backend_color(b.id)), label, b.id)
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(backend)))
        self.backend_combo.setEnabled(self.backend_combo.count() > 0)
        self.backend_combo.blockSignals(False)
        self._fill_models(backend, model)

    def _fill_models(self, backend: str, model: str | None) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        cfg = self.bridge.backends.backend_config(backend) if backend else None
        if cfg is not None and cfg.kind != "anthropic" and cfg.models:
            self.model_combo.addItem(f"default ({cfg.models[0]})", None)
        else:
            self.model_combo.addItem(AS_REQUESTED, None)
        models = self.bridge.backends.models_for(backend) if backend else []
        if model and model not in models:
            models = [model] + models
        for m in models:
            self.model_combo.addItem(m, m)
        i = self.model_combo.findData(model) if model else 0
        self.model_combo.setCurrentIndex(max(0, i))
        self.model_combo.setEnabled(bool(backend))
        self.model_combo.blockSignals(False)

    def _backend_chosen(self, index: int) -> None:
        bid = self.backend_combo.itemData(index)
        if bid and bid != self.bridge.backends.active()[0]:
            self.bridge.backends.switch(bid, None)
            self.bridge.backends.list_models(bid)
        self.sync_switch()

    def _model_chosen(self, index: int) -> None:
        backend = self.bridge.backends.active()[0]
        self.bridge.backends.switch(backend, self.model_combo.itemData(index))
        self.sync_switch()

    def _on_models(self, backend_id: str, models: list[str], error: str) -> None:
        backend, model = self.bridge.backends.active()
        if backend_id == backend and not self.model_combo.view().isVisible():
            self._fill_models(backend, model)

    def _pause_toggled(self, on: bool) -> None:
        if on != self.bridge.paused():
            self.bridge.set_paused(on)

    # ------------------------------------------------------------ status

    def _on_gateway(self, g: GatewayView) -> None:
        color = {"running": STATE_COLORS["ok"], "paused": STATE_COLORS["warn"], "failed": STATE_COLORS["error"]}.get(
            g.state, STATE_COLORS["stopped"])
        words = {"running": "Running", "paused": "Paused", "failed": "Not running", "stopped": "Stopped",
                 "starting": "Starting"}.get(g.state, g.state)
        refused = self.bridge.live.refused_while_paused if g.state == "paused" else 0
        if refused:
            words += f" · {plural(refused, 'request')} refused"
        self.state_label.setText(f"&nbsp;&nbsp;<span style='color:{color}'>●</span>&nbsp;{words}&nbsp;&nbsp;")  # rich text drops plain spaces
        self.state_label.setToolTip(
            "Paused: requests are refused (Claude Code is told not to retry, and shows why). Resume to forward them."
            if g.state == "paused" else (g.message or g.url or ""))
        self.status_gateway.setText(f"Gateway {g.url}" if g.url else (g.message or "Gateway not running"))
        self.pause_action.blockSignals(True)
        self.pause_action.setChecked(g.state == "paused")
        self.pause_action.setText("Resume" if g.state == "paused" else "Pause")
        self.pause_action.setEnabled(g.state in ("running", "paused"))
        self.pause_action.blockSignals(False)

    def _update_spend(self) -> None:
        spent = self.bridge.usage.spend_today()
        limit = self.bridge.usage.daily_limit()
        state = self.bridge.usage.state()  # the budgets' colour only: a backend that fails is said elsewhere
        color = {"warn": STATE_COLORS["warn"], "limit": STATE_COLORS["error"]}.get(state)
        text = f"Today {fmt_usd(spent)}" + (f" of {fmt_usd(limit)}" if limit else "")
        self.spend_label.setText(f"<span style='color:{color}'>{text}</span>" if color else text)

    def _on_ledger(self, v: LedgerView | None) -> None:
        if v is None:
            self.status_ledger.hide()
            self.status_ledger.clear()
            return
        self.status_ledger.setText(f"<span style='color:{STATE_COLORS[v.level]}'>⚠</span> {v.text}")
        self.status_ledger.setToolTip(v.tip)
        self.status_ledger.show()

    def _count_request(self, _rec: object) -> None:
        self._requests_seen += 1
        if not self._count_timer.isActive():  # the status bar redraws at most once a second
            self._count_timer.start()

    def _show_count(self) -> None:
        self.status_counts.setText(f"{plural(self._requests_seen, 'request')} since start")

    def _banner_action(self, action: str) -> None:
        if action in ("settings", "backends", "spend"):
            self.show_page(action)
        elif action == "retry":
            self.bridge.start()
        elif action == "reset":
            self.bridge.reset_config()
        elif action == "config":
            self.bridge.show_config_file()
        elif action == "remove_model":
            self.bridge.settings.remove_claude_code_model()

    def messages(self) -> list[UserMessage]:
        return self.banner.messages()

    # ------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.keep_running_in_tray:
            event.ignore()
            self.hide()
            if not self._told_about_tray:
                self._told_about_tray = True
                self.hiddenToTray.emit()
            return
        event.accept()
        self.quitRequested.emit()
