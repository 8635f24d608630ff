"""Settings: the port (and the gateway's address it shows), routes, budgets, capture, the
gateway token, start at login, and Claude Code's settings.json (connect, disconnect, and
noticing edits made by anything else). The Settings page's part."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal, Slot

from app.bridge.convert import sentence
from app.bridge.data import BudgetView, ClaudeCodeView, GatewayView, SettingsView
from app.bridge.engine import EngineApi
from app.bridge.notices import Notices
from app.claude import connect as cc
from app.claude import settings as claude_settings
from app.config import BudgetConfig, Config, ConfigError, PriceConfig, RoutesConfig
from app.desktop import autostart

WATCH_MS = 5000  # settings.json is also stat'ed this often (a watcher can miss a replaced file)
Stamp = tuple[str, int | None, int | None, int | None]


class Settings(QObject):
    settingsChanged = Signal()
    claudeCodeChanged = Signal(object)  # ClaudeCodeView, when settings.json changed (by us or anything else)
    gatewayChanged = Signal(object)  # GatewayView (the bridge feeds it; the page shows the address)
    budgetsChanged = Signal(list)  # list[BudgetView], spent so far (the usage part feeds it)
    budgetsSaved = Signal()
    restartRequested = Signal()  # the port changed: the gateway must listen on the new one

    def __init__(self, notices: Notices, *, config_path: Callable[[], Path], autostart_config: Path | None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._notices = notices
        self._config_path = config_path
        self._autostart_config = autostart_config
        self._engine: EngineApi | None = None
        self._gateway = GatewayView("stopped", None)
        self._budgets: list[BudgetView] = []  # the live ones, from the usage part
        self._watcher: QFileSystemWatcher | None = None
        self._stamp: Stamp | None = None
        self._cc_view: ClaudeCodeView | None = None
        self.claude_credential = "auto"  # which credential Connect gives Claude Code (set_claude_credential)
        self._timer = QTimer(self)
        self._timer.setInterval(WATCH_MS)
        self._timer.timeout.connect(self._claude_settings_touched)

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine
        if engine is None:
            self._timer.stop()
        else:
            self._timer.start()
            self._claude_settings_touched()
            self.settingsChanged.emit()

    def _config(self) -> Config | None:
        return self._engine.config if self._engine is not None else None

    def can_edit(self) -> bool:
        """Whether an engine runs to apply changes (the Connect button, Save)."""
        return self._engine is not None

    # ------------------------------------------------------------------ reads

    def gateway(self) -> GatewayView:
        return self._gateway

    @Slot(object)
    def on_gateway(self, view: GatewayView) -> None:
        self._gateway = view
        self.gatewayChanged.emit(view)

    @Slot(list)
    def on_budgets(self, budgets: list[BudgetView]) -> None:
        self._budgets = list(budgets)
        self.budgetsChanged.emit(self._budgets)

    def settings(self) -> SettingsView:
        cfg = self._config()
        data_dir = str(self._engine.paths.data_dir) if self._engine is not None else ""
        return SettingsView(
            port=cfg.gateway.port if cfg else 8787, host=cfg.gateway.host if cfg else "127.0.0.1",
            capture=cfg.ledger.capture if cfg else "off", budgets=tuple(self._budget_views(cfg)),
            start_at_login=autostart.is_enabled(), start_at_login_supported=autostart.supported(),
            config_path=str(self._config_path()), data_dir=data_dir, ollama_url=cfg.ollama.url if cfg else "",
        )

    def _budget_views(self, cfg: Config | None) -> list[BudgetView]:
        if cfg is None:
            return []
        by_key = {(b.scope, b.period, b.limit_usd): b for b in self._budgets}
        out = []
        for bc in cfg.budgets:
            live = by_key.get((bc.scope, bc.period, bc.limit_usd))
            out.append(BudgetView(
                label=bc.label, scope=bc.scope, period=bc.period, spent_usd=live.spent_usd if live else 0.0,
                limit_usd=bc.limit_usd, warn_at=bc.warn_at, fraction=live.fraction if live else 0.0,
                state=live.state if live else "ok", resets_at=live.resets_at if live else None, action=bc.action))
        return out

    def routes(self) -> RoutesConfig:
        cfg = self._config()
        return cfg.routes if cfg is not None else RoutesConfig()

    def gateway_token(self) -> str:
        if self._engine is None:
            return ""
        try:
            return self._engine.gateway_token()
        except Exception as exc:
            self._notices.say("error", "The gateway token could not be read", sentence(exc), key="token")
            return ""

    # ------------------------------------------------------------------ saving

    def save_routes(self, routes: RoutesConfig) -> bool:
        return self._save(routes=routes)

    def save_port(self, port: int) -> bool:
        if not self._save(port=port):
            return False
        self._notices.say("info", "Port saved", f"The gateway now listens on port {port}. Restarting it; point "
                          "ANTHROPIC_BASE_URL at the new address (Settings → Claude Code does it for you).",
                          key="port")
        self.restartRequested.emit()
        return True

    def save_budgets(self, budgets: list[BudgetConfig]) -> bool:
        ok = self._save(budgets=budgets)
        if ok:
            self.budgetsSaved.emit()
        return ok

    def prices(self) -> list[PriceConfig]:
        """The config's own [[prices]] (they win over the built-in table)."""
        cfg = self._config()
        return list(cfg.prices) if cfg is not None else []

    def save_prices(self, prices: list[PriceConfig]) -> bool:
        return self._save(prices=prices)

    def save_capture(self, mode: str) -> bool:
        return self._save(capture=mode)

    def save_ollama_url(self, url: str) -> bool:
        """Where the local Ollama listens (the Monitor page and Ollama backends' model lists ask it)."""
        return self._save(ollama_url=url.strip())

    def _save(self, *, port: int | None = None, budgets: list[BudgetConfig] | None = None,
              capture: str | None = None, routes: RoutesConfig | None = None, ollama_url: str | None = None,
              prices: list[PriceConfig] | None = None) -> bool:
        if self._engine is None:
            return False
        try:
            self._engine.save_settings(port=port, budgets=budgets, capture=capture, routes=routes,
                                       ollama_url=ollama_url, prices=prices)
        except Exception as exc:
            self._notices.say("error", "The settings were not saved",
                              str(exc) if isinstance(exc, ConfigError) else sentence(exc), key="settings")
            return False
        self._notices.clear("settings")
        self.settingsChanged.emit()
        return True

    def regenerate_token(self) -> str:
        if self._engine is None:
            return ""
        try:
            tok = self._engine.regenerate_token()
        except Exception as exc:
            self._notices.say("error", "A new token could not be made", sentence(exc), key="token")
            return ""
        self._notices.say("info", "New gateway token", "Clients using the old token are refused from now on. "
                          "Reconnect Claude Code (Settings → Claude Code) to give it the new one.", key="token")
        self.settingsChanged.emit()
        return tok

    def set_start_at_login(self, enabled: bool) -> bool:
        try:
            autostart.set_enabled(enabled, self._autostart_config)
        except autostart.AutostartError as exc:
            self._notices.say("error", "Start at login could not be changed",
                              f"{exc} Add Patchbay to your session's startup programs by hand.", key="autostart")
            return False
        self.settingsChanged.emit()
        return True

    # ------------------------------------------------------------------ Claude Code

    def claude_code(self) -> ClaudeCodeView:
        """Claude Code's settings.json as it is now, compared with this gateway (reads the file)."""
        path = str(claude_settings.settings_path())
        note = claude_settings.settings_path_note()
        eng = self._engine
        if eng is None:
            return ClaudeCodeView(False, path, (), path_note=note)
        try:
            env = dict(eng.claude_code_env(self.claude_credential))
            st = eng.claude_code_status()
            said = eng.claude_code_credential(self.claude_credential)
        except Exception as exc:
            return ClaudeCodeView(False, path, (), "invalid", sentence(exc), path_note=note)
        recorded = cc.state_file(eng.paths).exists()
        return ClaudeCodeView(st.connected, str(st.path), tuple(env.items()), st.state, st.message, recorded,
                              st.edited_since, tuple(st.options), tuple(sorted(cc.alias_values(st.path).items())),
                              path_note=note, credential=said)

    def set_claude_credential(self, choice: str) -> None:
        """Which credential Connect gives Claude Code: "auto" (the user's own login or key where
        Patchbay finds one, else Patchbay's token) or "token" (Patchbay's token, no Anthropic account)."""
        self.claude_credential = choice
        self.settingsChanged.emit()

    def connect_claude_code(self, *, nonessential: bool = False, aliases: dict[str, str] | None = None,
                            statusline: bool = False) -> bool:
        """Put the gateway's address and token into Claude Code's settings.json (nothing else changes)."""
        if self._engine is None:
            return False
        try:
            result = self._engine.connect_claude_code(nonessential=nonessential, aliases=aliases,
                                                      statusline=statusline, credential=self.claude_credential)
        except Exception as exc:
            self._notices.say("error", "Claude Code was not connected", sentence(exc), key="claude")
            self._claude_settings_touched()
            return False
        extra = f" The previous file is saved as {result.backup}." if result.backup else ""
        if result.skipped:
            extra += f" Your own {', '.join(result.skipped)} was kept as it is."
        said = self._engine.claude_code_credential(self.claude_credential)
        self._notices.say("info", "Claude Code connected", f"{result.path} now points Claude Code at Patchbay. {said} "
                          f"New Claude Code sessions use it; restart the ones already open.{extra}", key="claude")
        self._claude_code_changed()
        return True

    def disconnect_claude_code(self) -> bool:
        """Put settings.json back as it was before Connect (only our keys change)."""
        if self._engine is None:
            return False
        try:
            result = self._engine.disconnect_claude_code()
        except Exception as exc:
            self._notices.say("error", "Claude Code was not disconnected", sentence(exc), key="claude")
            return False
        self._notices.say("info", "Claude Code disconnected", result.summary() or "Nothing to undo.", key="claude",
                          action="remove_model" if result.gateway_model else None)
        self._claude_code_changed()
        return True

    def remove_claude_code_model(self) -> bool:
        """Remove a "model": "backend,model" that Claude Code's /model saved (offered after Disconnect)."""
        if self._engine is None:
            return False
        try:
            removed = cc.remove_gateway_model(self._engine.paths)
        except Exception as exc:
            self._notices.say("error", "The model setting was not removed", sentence(exc), key="claude")
            return False
        self._notices.say("info", "Claude Code's model setting removed",
                          f'Removed "model": "{removed}" from Claude Code\'s settings.' if removed else
                          "There is no backend,model setting left to remove.", key="claude")
        self._claude_code_changed()
        return removed is not None

    def _claude_code_changed(self) -> None:
        self._stamp = None
        self._claude_settings_touched()
        self.settingsChanged.emit()

    def _watch(self, path: Path) -> None:
        """Notice when something else changes settings.json: a watcher on the file and its folder
        (editors and tools replace the file), and the 5-second timer's stat as a fallback."""
        if self._watcher is None:
            self._watcher = QFileSystemWatcher(self)
            self._watcher.fileChanged.connect(lambda _p: self._claude_settings_touched())
            self._watcher.directoryChanged.connect(lambda _p: self._claude_settings_touched())
        w = self._watcher
        wanted = [str(p) for p in (path, path.parent) if p.exists()]
        stale = [p for p in w.files() + w.directories() if p not in wanted]
        if stale:
            w.removePaths(stale)
        missing = [p for p in wanted if p not in w.files() + w.directories()]
        if missing:
            w.addPaths(missing)

    def _claude_settings_touched(self) -> None:
        path = claude_settings.settings_path()
        stamp: Stamp
        try:
            st = path.stat()
            stamp = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = (str(path), None, None, None)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._watch(path)
        view = self.claude_code()
        if view != self._cc_view:
            self._cc_view = view
            self.claudeCodeChanged.emit(view)
