"""The bridge: owns the engine and the feature parts, runs the life cycle (start, stop,
restart, a broken config), and keeps the gateway's and the tray's state.

Each part is a small QObject with its own signals; a page holds only the part it needs
(``BackendsPage(bridge.backends)``). The parts never call one another: what one learns reaches
another through a signal connected here, and each gets the engine from :meth:`Bridge.start`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices

from app.bridge.backends import Backends
from app.bridge.caps import Caps
from app.bridge.config_watch import ConfigWatch
from app.bridge.convert import sentence
from app.bridge.data import GatewayView, UserMessage
from app.bridge.engine import EngineApi, EngineFactory
from app.bridge.jobs import Jobs
from app.bridge.ledger_watch import LedgerWatch
from app.bridge.live import Live
from app.bridge.monitor import HardwareFactory, Monitor
from app.bridge.notices import Notices
from app.bridge.settings import Settings
from app.bridge.subscription import Subscription
from app.bridge.team import Team
from app.bridge.team_caps import TeamCaps
from app.bridge.usage import Usage
from app.config import ConfigError
from app.events import GatewayState
from app.paths import Paths, default_paths

log = logging.getLogger("app.bridge")


def _default_engine(config_path: Path | None, *, paths: Paths | None, gui: bool) -> EngineApi:
    from app.core import Engine

    return Engine(config_path, paths=paths, gui=gui)


def _log_message(msg: UserMessage) -> None:
    if msg.level in ("error", "warn"):
        log.log(logging.ERROR if msg.level == "error" else logging.WARNING, "%s: %s", msg.title, msg.text)


class Bridge(QObject):
    """Owns the engine and the parts; the window and the tray hold this, pages hold one part."""

    gatewayChanged = Signal(object)  # GatewayView
    trayStateChanged = Signal(str)  # ok | warn | error | paused | stopped
    _ledgerError = Signal(str)  # from the ledger's writer thread

    def __init__(self, config_path: Path | None = None, *, paths: Paths | None = None, parent: QObject | None = None,
                 engine_factory: EngineFactory | None = None,
                 hardware_factory: HardwareFactory | None = None) -> None:
        super().__init__(parent)
        self._config_path = config_path
        self._paths = paths
        self._engine_factory: EngineFactory = engine_factory or _default_engine
        self.engine: EngineApi | None = None  # the views never read this
        self.fatal: UserMessage | None = None
        self._gateway = GatewayView("stopped", None)
        self._tray_state = "stopped"

        self.notices = Notices(self)
        self.jobs = Jobs(self)
        self.live = Live(self.jobs, self.notices, self)
        self.backends = Backends(self.jobs, self.notices, self)
        self.usage = Usage(self.jobs, self.notices, seen=self.live.record, session_labels=self.live.session_labels,
                           parent=self)
        self.monitor = Monitor(self.jobs, self.notices, hardware_factory, self)
        self.settings = Settings(self.notices, config_path=self.config_path, autostart_config=config_path,
                                 parent=self)
        self.team = Team(self.jobs, self.notices, self)
        self.team_caps = TeamCaps(self.jobs, self.notices, self)  # the Team page's Caps tab
        self.ledger = LedgerWatch(self.notices, self)
        self.subscription = Subscription(self)
        self.caps = Caps(self)
        self._parts = (self.live, self.backends, self.usage, self.monitor, self.settings, self.team, self.ledger,
                       self.caps, self.team_caps)
        self.config_watch = ConfigWatch(self)
        self.config_watch.changed.connect(self.reload_config)

        # what one part learns, another needs: wired here, once
        self.live.gatewayState.connect(self._on_gateway_state)
        self.live.backendHealth.connect(self.backends.on_backend_health)
        self.live.subscriptionLimits.connect(self.subscription.on_limits)
        self.live.budgetAlert.connect(self.usage.on_budget_alert)
        self.live.requestStarted.connect(self.usage.requestStarted)
        self.live.requestFinished.connect(self.usage.on_finished)
        self.live.requestFinished.connect(self.monitor.on_finished)
        self.monitor.ollamaModels.connect(self.backends.on_ollama_models)
        self.usage.budgetsChanged.connect(self.settings.on_budgets)
        self.usage.budgetsChanged.connect(lambda _b: self._update_tray_state())
        self.backends.healthChanged.connect(self._update_tray_state)
        self.ledger.changed.connect(lambda _v: self._update_tray_state())
        self.backends.activeChanged.connect(lambda *_: self._update_tray_state())
        self.settings.budgetsSaved.connect(self.usage.budgets_saved)
        self.settings.restartRequested.connect(self.restart_gateway)
        self.gatewayChanged.connect(self.settings.on_gateway)
        self.notices.message.connect(_log_message)  # what the window says goes to patchbay.log too
        self._ledgerError.connect(lambda text: self.notices.say(
            "error", "Usage is not being recorded", text, key="ledger-write", notify=True))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> bool:
        """Create and start the engine. False (with a message) when the config or the port fails."""
        self.fatal = None
        self.notices.clear("startup")
        self.config_watch.watch(self.config_path())  # even a broken file: fixing it starts the gateway
        if self.engine is None:
            try:
                self.engine = self._engine_factory(self._config_path, paths=self._paths, gui=True)
            except Exception as exc:  # a broken config, a keychain or platform problem: say it, never a traceback
                text = sentence(exc)
                about_config = isinstance(exc, ConfigError) or str(self.config_path()) in text
                self._fail_start("The settings file cannot be used" if about_config else "Patchbay could not start",
                                 text, "config" if about_config else None)
                return False
        eng = self.engine
        if eng.ledger.on_error is None:
            eng.ledger.on_error = self._ledgerError.emit  # a full disk, a locked file: said, not swallowed
        for part in (self.live, self.backends, self.settings):  # the config can be edited even if the port fails
            part.attach(eng)
        try:
            eng.start()
        except Exception as exc:
            action = "settings" if "port" in str(exc).lower() else None
            self._set_gateway(GatewayView("failed", None, str(exc)))
            self._fail_start("The gateway could not start", sentence(exc), action, keep_engine=True)
            return False
        self._set_gateway(GatewayView("paused" if eng.paused else "running", eng.url))
        self.usage.attach(eng)
        self.caps.attach(eng)
        self.monitor.attach(eng)
        self.team.attach(eng)
        self.team_caps.attach(eng)
        self.ledger.attach(eng)
        self.subscription.attach(eng)
        self.live.start_seeding()
        self.backends.backendsChanged.emit()
        self.backends.activeChanged.emit(*self.backends.active())
        return True

    def _fail_start(self, title: str, text: str, action: str | None, keep_engine: bool = False) -> None:
        msg = UserMessage("error", title, text, action=action, key="startup", notify=True)
        self.fatal = msg
        if not keep_engine:
            self.engine = None
        self._update_tray_state()
        self.notices.message.emit(msg)

    def _stop_engine(self) -> None:
        if self.engine is None:
            return
        try:
            self.engine.stop()
        except Exception:
            log.exception("stopping the engine")
        self.live.tick()  # the last events (GatewayState stopped, finished records)

    def stop(self) -> None:
        """Stop the gateway cleanly (requests in flight are given a moment by the engine)."""
        self.config_watch.stop()
        for part in self._parts:
            if part is not self.live:
                part.attach(None)
        self.jobs.cancel_tasks()
        self._stop_engine()
        self.live.attach(None)
        self.jobs.shutdown()
        self._set_gateway(GatewayView("stopped", None))

    def restart_gateway(self) -> bool:
        """Stop and start the gateway (after a port change). Requests in flight finish first.

        A stopped engine has closed its ledger, so a fresh one is made from the saved config."""
        self._stop_engine()
        self.engine = None
        return self.start()

    def reload_config(self) -> bool:
        """The settings file changed on disk: apply it if it loads, else say what is wrong and keep
        running on the last good settings. True when something new was applied."""
        eng = self.engine
        if eng is None:  # not started, or a broken file at start-up: a fixed file starts the gateway
            return self.fatal is not None and self.fatal.action == "config" and self.start()
        port = (eng.config.gateway.host, eng.config.gateway.port)
        try:
            changed = eng.reload()
        except Exception as exc:
            self.notices.say("error", "The edited settings file cannot be used",
                             f"{sentence(exc)} Patchbay keeps running on the settings it had; fix the file and save "
                             "it again.", action="config", key="config-edit", notify=True)
            return False
        self.notices.clear("config-edit")
        if not changed:
            return False
        log.info("settings file re-read: %s", self.config_path())
        if (eng.config.gateway.host, eng.config.gateway.port) != port:
            return self.restart_gateway()  # a new address needs a new listener
        self.monitor.attach(eng)  # the Ollama address may have changed
        self.usage.budgets_saved()
        self.backends.backendsChanged.emit()
        self.backends.activeChanged.emit(*self.backends.active())
        self.settings.settingsChanged.emit()
        self.notices.say("info", "Settings file re-read", f"Applied the edit to {self.config_path()}.",
                         key="config-edit")
        return True

    def reset_config(self) -> bool:
        """Move a broken config file aside (keeping it as ``.broken``) and start with the default."""
        path = self.config_path()
        if path.exists():
            broken = path.with_name(path.name + ".broken")
            try:
                os.replace(path, broken)
            except OSError as exc:
                self.notices.say("error", "The settings file could not be moved",
                                 f"{path}: {exc.strerror}. Move or fix it by hand, then press Retry.", key="startup")
                return False
            self.notices.say("info", "A fresh settings file was written", f"The broken one is kept as {broken}.",
                             key="reset")
        return self.start()

    def show_config_file(self) -> None:
        """Open the folder holding the config file in the platform's file manager."""
        folder = self.config_path().parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.notices.say("info", "The settings file", f"It is {self.config_path()}. Open it in a text editor, "
                             "fix the line named above, then press Retry.", key="config-path")

    def config_path(self) -> Path:
        if self.engine is not None:
            return Path(self.engine.config_path)
        if self._config_path is not None:
            return Path(self._config_path)
        return (self._paths or default_paths()).config_file

    @property
    def running(self) -> bool:
        return self.engine is not None and self.engine.running

    # ------------------------------------------------------------------ the gateway and the tray

    def gateway(self) -> GatewayView:
        return self._gateway

    def _on_gateway_state(self, ev: GatewayState) -> None:
        self._set_gateway(GatewayView(ev.state, ev.address or self._url(), ev.message))
        if ev.state == "failed" and ev.message:
            self.notices.say("error", "The gateway stopped", ev.message,
                             action="settings" if "port" in ev.message.lower() else None, key="gateway", notify=True)

    def _url(self) -> str | None:
        return self.engine.url if self.engine is not None else None

    def _set_gateway(self, view: GatewayView) -> None:
        if view != self._gateway:
            self._gateway = view
            self.gatewayChanged.emit(view)
        self._update_tray_state()

    def paused(self) -> bool:
        return self.engine is not None and self.engine.paused

    def set_paused(self, paused: bool) -> None:
        if self.engine is None:
            return
        try:
            self.engine.pause() if paused else self.engine.resume()
        except Exception as exc:
            self.notices.say("error", "Could not pause the gateway" if paused else "Could not resume the gateway",
                             sentence(exc), key="pause")
            return
        self._set_gateway(GatewayView("paused" if paused else "running", self._url()))

    def tray_state(self) -> str:
        if self.engine is None or self._gateway.state == "failed":
            return "error"
        if self._gateway.state == "stopped":
            return "stopped"
        if self.paused() or self._gateway.state == "paused":
            return "paused"
        if self.backends.active_failing():
            return "error"
        budgets = self.usage.state()
        if budgets == "limit":
            return "error"
        ledger = self.ledger.view()
        if ledger is not None:
            return ledger.level
        return "warn" if budgets == "warn" else "ok"

    def _update_tray_state(self) -> None:
        state = self.tray_state()
        if state != self._tray_state:
            self._tray_state = state
            self.trayStateChanged.emit(state)
