"""The tray / menu-bar icon and its menu: backends as a radio group, the active backend's models,
pause/resume, today's spend against the budget, open the window, quit.

Where the platform has no system tray (``QSystemTrayIcon.isSystemTrayAvailable()`` is False, e.g.
offscreen), the menu still exists and works; only the icon is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.views.data import ClaudeCodeView, UserMessage
from app.views.icons import state_icon
from app.views.theme import fmt_usd

if TYPE_CHECKING:
    from app.bridge.main import Bridge

AS_REQUESTED = "As requested by the client"


class Tray(QObject):
    openRequested = Signal()
    quitRequested = Signal()

    def __init__(self, bridge: "Bridge", parent: QObject | None = None, *, use_system_tray: bool | None = None) -> None:
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
        if not backend:
            return
        cfg = self.bridge.backends.backend_config(backend)
        first = AS_REQUESTED if (cfg is None or cfg.kind == "anthropic" or not cfg.models) else \
            f"Default ({cfg.models[0]})"
        entries: list[tuple[str | None, str]] = [(None, first)]
        models = self.bridge.backends.models_for(backend)
        if model and model not in models:
            models = [model] + models
        entries += [(m, m) for m in models]
        for i, (value, label) in enumerate(entries):
            a = QAction(label, self)
            a.setCheckable(True)
            a.setChecked(value == model)
            a.triggered.connect(lambda _=False, v=value: self.choose_model(v))
            self.model_group.addAction(a)
            self.model_actions[value] = a
            mm.addAction(a)
            if i == 0 and len(entries) > 1:
                mm.addSeparator()
        if self._listed_for == backend and len(entries) == 1:
            note = mm.addAction("No models listed by the backend")
            note.setEnabled(False)

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
        return (f"Patchbay: {backend or 'no backend'}{(' · ' + model) if model else ''}"
                f" · today {fmt_usd(self.bridge.usage.spend_today())}{words}" + (f"\n{hw}" if hw else ""))

    def notify(self, msg: UserMessage) -> None:
        if self.icon is None or not msg.notify:
            return
        icon = {"error": QSystemTrayIcon.MessageIcon.Critical, "warn": QSystemTrayIcon.MessageIcon.Warning}.get(
            msg.level, QSystemTrayIcon.MessageIcon.Information)
        self.icon.showMessage(msg.title, msg.text, icon, 8000)

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.openRequested.emit()

    def hide(self) -> None:
        if self.icon is not None:
            self.icon.hide()
