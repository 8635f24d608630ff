"""The tray / menu-bar icon and its menu: backends as a radio group, the active backend's models,
pause/resume, today's spend against the budget, a Claude subscription's usage windows (when there
are any), open the window, quit.

Where the platform has no system tray (``QSystemTrayIcon.isSystemTrayAvailable()`` is False, e.g.
offscreen), the menu still exists and works; only the icon is missing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QPoint, Signal
from PySide6.QtGui import QAction, QActionGroup, QCursor, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.bridge.data import ClaudeCodeView, UserMessage
from app.views.icons import state_icon
from app.views.theme import fmt_usd

if TYPE_CHECKING:
    from app.bridge.main import Bridge
    from app.views.model_chooser import ModelChooser

AS_REQUESTED = "As requested by the client"
# Linux and the BSDs: a left click opens the same menu as a right click (one click to switch);
# Windows keeps its convention (a click opens the window); macOS opens the menu by itself.
LEFT_CLICK_MENU = not sys.platform.startswith(("win", "darwin"))
MENU_MODELS_MAX = 12  # listed models past the configured ones shown in the menu itself; more: the chooser


class Tray(QObject):
    openRequested = Signal()
    quitRequested = Signal()

    def __init__(self, bridge: Bridge, parent: QObject | None = None, *, use_system_tray: bool | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.menu = QMenu()
        self.menu.setTitle("Patchbay")
        self.backend_group = QActionGroup(self)
        self.backend_group.setExclusive(True)
        self.backend_actions: dict[str, QAction] = {}
        self.model_group = QActionGroup(self)
        self.model_group.setExclusive(True)
        self.model_actions: dict[str | None, QAction] = {}
        self._listed_for: str | None = None
        self._rest: list[str] = []
        self.more_action: QAction | None = None
        self.chooser: ModelChooser | None = None
        self.icon: QSystemTrayIcon | None = None

        self.header = QAction("Patchbay", self)
        self.header.setEnabled(False)
        self.models_menu = QMenu("Model")
        self.models_menu.aboutToShow.connect(self._models_about_to_show)
        self.pause_action = QAction("Pause the gateway", self)
        self.pause_action.setCheckable(True)
        self.pause_action.toggled.connect(self._pause_toggled)
        self.spend_action = QAction("Today: $0.00", self)
        self.spend_action.setEnabled(False)
        # the Claude subscription's usage windows; hidden while there are none (no subscription traffic)
        self.plan_action = QAction("", self)
        self.plan_action.setEnabled(False)
        self.plan_action.setVisible(False)
        self.cc_status_action = QAction("Claude Code: …", self)
        self.cc_status_action.setEnabled(False)
        self.cc_action = QAction("Connect Claude Code", self)
        self.cc_action.triggered.connect(self.toggle_claude_code)
        self.open_action = QAction("Open Patchbay", self)
        self.open_action.triggered.connect(self.openRequested)
        self.quit_action = QAction("Quit Patchbay", self)
        self.quit_action.triggered.connect(self.quitRequested)
        self.rebuild()

        available = QSystemTrayIcon.isSystemTrayAvailable() if use_system_tray is None else use_system_tray
        if available:
            self.icon = QSystemTrayIcon(self)
            self.icon.setContextMenu(self.menu)
            self.icon.activated.connect(self._activated)
        self.update_icon()
        if self.icon is not None:
            self.icon.show()

        bridge.backends.backendsChanged.connect(self.rebuild)
        bridge.backends.activeChanged.connect(lambda *_: self.sync_active())
        bridge.backends.modelsListed.connect(self._on_models)
        bridge.subscription.windowsChanged.connect(self.sync_plan)
        bridge.usage.spendTodayChanged.connect(lambda _v: self.update_spend())
        bridge.usage.budgetsChanged.connect(lambda _v: self.update_spend())
        bridge.trayStateChanged.connect(lambda _s: self.update_icon())
        bridge.gatewayChanged.connect(lambda _g: self.sync_paused())
        bridge.notices.message.connect(self.notify)
        bridge.monitor.hardwareSampled.connect(self._on_hardware)
        bridge.settings.claudeCodeChanged.connect(self.sync_claude_code)
        bridge.settings.settingsChanged.connect(lambda: self.sync_claude_code(self.bridge.settings.claude_code()))

    # ------------------------------------------------------------ menu

    def rebuild(self) -> None:
        m = self.menu
        m.clear()
        for a in list(self.backend_group.actions()):
            self.backend_group.removeAction(a)
            a.deleteLater()
        self.backend_actions = {}
        m.addAction(self.header)
        m.addSeparator()
        for b in self.bridge.backends.backends():
            a = QAction(b.id, self)
            a.setCheckable(True)
            tip = b.base_url + (" · failing: " + (b.last_error or "") if b.health in ("failing", "open") else "")
            a.setToolTip(tip)
            if b.health in ("failing", "open"):
                a.setText(f"{b.id}  ⚠")
            a.triggered.connect(lambda _=False, bid=b.id: self.choose_backend(bid))
            self.backend_group.addAction(a)
            self.backend_actions[b.id] = a
            m.addAction(a)
        m.addSeparator()
        m.addMenu(self.models_menu)
        m.addAction(self.pause_action)
        m.addSeparator()
        m.addAction(self.spend_action)
        m.addAction(self.plan_action)
        m.addSeparator()
        m.addAction(self.cc_status_action)
        m.addAction(self.cc_action)
        m.addSeparator()
        m.addAction(self.open_action)
        m.addAction(self.quit_action)
        self.sync_active()
        self.sync_paused()
        self.update_spend()
        self.sync_claude_code(self.bridge.settings.claude_code())
        self.sync_plan(self.bridge.subscription.text())

    def sync_plan(self, text: str) -> None:
        """The subscription's windows as one line of the menu (and the tooltip); none: hidden."""
        self.plan_action.setText(f"Claude plan: {text}" if text else "")
        self.plan_action.setVisible(bool(text))
        if self.icon is not None:
            self.icon.setToolTip(self.tooltip())

    def sync_active(self) -> None:
        backend, model = self.bridge.backends.active()
        for bid, a in self.backend_actions.items():
            a.blockSignals(True)
            a.setChecked(bid == backend)
            a.blockSignals(False)
        self.models_menu.setTitle(f"Model ({backend})" if backend else "Model")
        self.models_menu.setEnabled(bool(backend))
        self._fill_models()
        self.update_icon()

    def _fill_models(self) -> None:
        backend, model = self.bridge.backends.active()
        mm = self.models_menu
        mm.clear()
        for a in list(self.model_group.actions()):
            self.model_group.removeAction(a)
            a.deleteLater()
        self.model_actions = {}
        self.more_action = None
        if not backend:
            return
        cfg = self.bridge.backends.backend_config(backend)
        first = AS_REQUESTED if (cfg is None or cfg.kind == "anthropic" or not cfg.models) else \
            f"Default ({cfg.models[0]})"
        configured = list(cfg.models) if cfg is not None else []
        listed = self.bridge.backends.models_for(backend)
        top = list(dict.fromkeys(configured + ([model] if model else [])))  # the configured ones, then the active
        rest = [m for m in listed if m not in top]
        self._rest = rest
        inline = rest if len(rest) <= MENU_MODELS_MAX else []  # a short list fits; hundreds go to the chooser
        self._add_model(None, first, model)
        if top or inline:
            mm.addSeparator()
        for m in top:
            self._add_model(m, m, model)
        if top and inline:
            mm.addSeparator()
        for m in inline:
            self._add_model(m, m, model)
        if rest and not inline:
            mm.addSeparator()
            more = mm.addAction(f"All {len(rest) + len(top):,} models from {backend}…")
            more.setToolTip("A searchable list of every model the backend lists")
            more.triggered.connect(lambda _=False, b=backend: self.open_chooser(b))
            self.more_action = more
        if self._listed_for == backend and not top and not rest:
            note = mm.addAction("No models listed by the backend")
            note.setEnabled(False)

    def _add_model(self, value: str | None, label: str, active: str | None) -> None:
        a = QAction(label, self)
        a.setCheckable(True)
        a.setChecked(value == active)
        a.triggered.connect(lambda _=False, v=value: self.choose_model(v))
        self.model_group.addAction(a)
        self.model_actions[value] = a
        self.models_menu.addAction(a)

    def open_chooser(self, backend: str) -> ModelChooser:
        """Every model the backend lists, searchable; picking one switches to it."""
        from app.views.model_chooser import ModelChooser

        if self.chooser is not None:
            self.chooser.close()
        cfg = self.bridge.backends.backend_config(backend)
        configured = list(cfg.models) if cfg is not None else []
        models = list(dict.fromkeys(configured + self.bridge.backends.models_for(backend)))
        active_backend, active_model = self.bridge.backends.active()
        self.chooser = ModelChooser(backend, models, active_model if active_backend == backend else None)
        self.chooser.picked.connect(self._chosen)
        self.chooser.destroyed.connect(lambda _o=None: setattr(self, "chooser", None))
        self.chooser.show()
        self.chooser.raise_()
        self.chooser.activateWindow()
        return self.chooser

    def _chosen(self, backend: str, model: str) -> None:
        self.bridge.backends.switch(backend, model)
        self.sync_active()

    def _models_about_to_show(self) -> None:
        backend = self.bridge.backends.active()[0]
        if backend:
            self._listed_for = backend
            self.bridge.backends.list_models(backend)  # the menu refreshes when the answer comes (Ollama: installed now)

    def _on_models(self, backend_id: str, models: list[str], error: str) -> None:
        if backend_id == self.bridge.backends.active()[0]:
            self._fill_models()

    def choose_backend(self, backend_id: str) -> None:
        """One click makes one backend active (the model goes back to the default)."""
        self.bridge.backends.switch(backend_id, None)
        self.sync_active()

    def choose_model(self, model: str | None) -> None:
        backend = self.bridge.backends.active()[0]
        self.bridge.backends.switch(backend, model)
        self.sync_active()

    def _pause_toggled(self, on: bool) -> None:
        if on != self.bridge.paused():
            self.bridge.set_paused(on)
        self.sync_paused()

    def sync_paused(self) -> None:
        paused = self.bridge.paused()
        self.pause_action.blockSignals(True)
        self.pause_action.setChecked(paused)
        self.pause_action.setText("Resume the gateway" if paused else "Pause the gateway")
        self.pause_action.blockSignals(False)
        self.pause_action.setEnabled(self.bridge.running)
        self.update_icon()

    def update_spend(self) -> None:
        spent = self.bridge.usage.spend_today()
        limit = self.bridge.usage.daily_limit()
        text = f"Today: {fmt_usd(spent)}" + (f" of {fmt_usd(limit)}" if limit else "")
        budgets = self.bridge.usage.budgets()
        if any(b.state == "limit" for b in budgets):
            text += " — budget reached"
        elif any(b.state == "warn" for b in budgets):
            text += " — near the budget"
        self.spend_action.setText(text)
        self.update_icon()

    # ------------------------------------------------------------ Claude Code

    def sync_claude_code(self, cc: ClaudeCodeView) -> None:
        words = {"connected": "connected", "not_connected": "not connected", "outdated": "connected, out of date",
                 "changed": "changed by something else", "other_gateway": "points at another gateway",
                 "invalid": "settings.json cannot be read"}.get(cc.state, "…")
        self.cc_status_action.setText(f"Claude Code: {words}")
        self.cc_status_action.setToolTip(cc.message)
        if cc.connected:
            self.cc_action.setText("Disconnect Claude Code")
        elif cc.state in ("outdated", "changed"):
            self.cc_action.setText("Connect Claude Code again")
        else:
            self.cc_action.setText("Connect Claude Code")
        self.cc_action.setEnabled(cc.state != "invalid" and self.bridge.settings.can_edit())

    def toggle_claude_code(self) -> None:
        """Connect (keeping the options the file has now) or disconnect, as the menu item says."""
        cc = self.bridge.settings.claude_code()
        if cc.connected:
            self.bridge.settings.disconnect_claude_code()
        else:
            self.bridge.settings.connect_claude_code(nonessential="nonessential" in cc.options, aliases=dict(cc.aliases),
                                            statusline="statusline" in cc.options)
        self.sync_claude_code(self.bridge.settings.claude_code())

    # ------------------------------------------------------------ icon

    def current_icon(self) -> QIcon:
        backend = self.bridge.backends.active()[0] or "Patchbay"
        return state_icon(backend, self.bridge.tray_state())

    def update_icon(self) -> None:
        if self.icon is None:
            return
        self.icon.setIcon(self.current_icon())
        self.icon.setToolTip(self.tooltip())

    def _on_hardware(self, _h: object) -> None:
        if self.icon is not None and self.bridge.backends.active_is_local():  # only then does the tooltip show it
            self.icon.setToolTip(self.tooltip())

    def tooltip(self) -> str:
        """Backend, model, today's spend; GPU and VRAM at a glance when the active backend is local."""
        state = self.bridge.tray_state()
        backend, model = self.bridge.backends.active()
        words = {"ok": "", "warn": " — near a budget", "error": " — needs attention", "paused": " — paused",
                 "stopped": " — stopped"}.get(state, "")
        hw = self.bridge.monitor.hardware_summary() if self.bridge.backends.active_is_local() else ""
        plan = self.bridge.subscription.text()
        return (f"Patchbay: {backend or 'no backend'}{(' · ' + model) if model else ''}"
                f" · today {fmt_usd(self.bridge.usage.spend_today())}{words}" + (f"\n{hw}" if hw else "")
                + (f"\nClaude plan: {plan}" if plan else ""))

    def notify(self, msg: UserMessage) -> None:
        if self.icon is None or not msg.notify:
            return
        icon = {"error": QSystemTrayIcon.MessageIcon.Critical, "warn": QSystemTrayIcon.MessageIcon.Warning}.get(
            msg.level, QSystemTrayIcon.MessageIcon.Information)
        self.icon.showMessage(msg.title, msg.text, icon, 8000)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        R = QSystemTrayIcon.ActivationReason
        if reason == R.Trigger and LEFT_CLICK_MENU:
            self.popup_menu()  # one click to switch, as on macOS (where the system opens the menu itself)
        elif reason in (R.Trigger, R.DoubleClick, R.MiddleClick):
            self.openRequested.emit()

    def popup_menu(self) -> None:
        """The tray menu at the icon (or the pointer where the tray host does not say where the icon is)."""
        geo = self.icon.geometry() if self.icon is not None else None
        if geo is not None and geo.isValid() and not geo.isEmpty():
            at = geo.bottomLeft() if geo.top() < 100 else geo.topLeft() - QPoint(0, self.menu.sizeHint().height())
        else:
            at = QCursor.pos()
        self.menu.popup(at)

    def hide(self) -> None:
        if self.icon is not None:
            self.icon.hide()
