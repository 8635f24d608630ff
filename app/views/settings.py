"""Settings: port, gateway token, budgets, routing rules, request capture, start at login, Claude Code."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data import BudgetView, ClaudeCodeView, GatewayView
from app.config import BUDGET_PERIODS, BudgetConfig
from app.views.routes import RoutesBox
from app.views.theme import STATE_COLORS, fmt_usd
from app.views.widgets import SectionLabel

if TYPE_CHECKING:
    from app.bridge.backends import Backends
    from app.bridge.settings import Settings

CAPTURE_LABELS = (("off", "Off: keep only the log line of each request"),
                  ("errors", "Bodies of failed requests"),
                  ("all", "Bodies of every request"))


class SettingsPage(QWidget):
    def __init__(self, settings: Settings, backends: Backends, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.backends = backends
        inner = QWidget()
        col = QVBoxLayout(inner)
        col.addWidget(SectionLabel("Settings"))

        # ---- gateway
        gw = QGroupBox("Gateway")
        gf = QFormLayout(gw)
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.port.setAccessibleName("Port")
        self.port_apply = QPushButton("Apply and restart the gateway")
        self.port_apply.clicked.connect(self.apply_port)
        prow = QHBoxLayout()
        prow.addWidget(self.port)
        prow.addWidget(self.port_apply)
        prow.addStretch(1)
        pl = QLabel("&Port:")
        pl.setBuddy(self.port)
        gf.addRow(pl, prow)
        self.address = QLabel()
        self.address.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        gf.addRow("Address:", self.address)
        self.token = QLineEdit()
        self.token.setReadOnly(True)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("Gateway token")
        self.reveal = QPushButton("Reveal")
        self.reveal.setCheckable(True)
        self.reveal.toggled.connect(self._reveal)
        self.copy = QPushButton("Copy")
        self.copy.clicked.connect(self._copy_token)
        self.regen = QPushButton("Regenerate…")
        self.regen.clicked.connect(self._regenerate)
        trow = QHBoxLayout()
        trow.addWidget(self.token, 1)
        trow.addWidget(self.reveal)
        trow.addWidget(self.copy)
        trow.addWidget(self.regen)
        tl = QLabel("&Token:")
        tl.setBuddy(self.token)
        gf.addRow(tl, trow)
        gf.addRow("", QLabel("Clients send it in the x-patchbay-token header; nothing else may use the gateway."))
        col.addWidget(gw)

        # ---- Claude Code
        cc = QGroupBox("Claude Code")
        self.cc_group = cc
        cl = QVBoxLayout(cc)
        self.cc_state = QLabel()
        self.cc_state.setWordWrap(True)
        self.cc_state.setTextFormat(Qt.TextFormat.RichText)
        self.cc_env = QLabel()
        self.cc_env.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cc_env.setTextFormat(Qt.TextFormat.RichText)
        # short texts (a check box does not wrap: a long one would make the page wider than a small window)
        self.cc_nonessential = QCheckBox("Also turn off Claude Code's non-essential traffic")
        self.cc_nonessential.setToolTip("Telemetry, error reports and update checks: sets "
                                        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
        self.cc_use_token = QCheckBox("Use Patchbay's token instead of my Anthropic login")
        self.cc_use_token.setToolTip("For use without an Anthropic account: Claude Code then sends Patchbay's token "
                                     "(ANTHROPIC_AUTH_TOKEN) instead of your subscription login or API key, so an "
                                     "Anthropic backend that forwards your own credential gets none")
        self.cc_use_token.toggled.connect(self._use_token)
        self.cc_credential = QLabel()  # which credential Claude Code will send, said before Connect
        self.cc_credential.setWordWrap(True)
        self.cc_statusline = QCheckBox("Show backend, model and spend in Claude Code's status line")
        self.cc_statusline.setToolTip("Only where you have no statusLine of your own")
        aliases = QWidget()
        af = QFormLayout(aliases)
        af.setContentsMargins(0, 0, 0, 0)
        af.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.cc_alias: dict[str, QComboBox] = {}
        for name, label in (("haiku", "Haiku (background work):"), ("sonnet", "Sonnet:"), ("opus", "Opus:")):
            combo = QComboBox()
            combo.setAccessibleName(f"Send Claude Code's {name} model to")
            combo.setMinimumContentsLength(28)
            self.cc_alias[name] = combo
            af.addRow(label, combo)
        self.cc_alias_help = QLabel(
            "Model aliases (optional): Claude Code asks for its <i>haiku</i> model for background work (titles, "
            "summaries, quick checks) and <i>sonnet</i>/<i>opus</i> when you pick them with /model. Choosing a "
            "backend and model here sets ANTHROPIC_DEFAULT_…_MODEL to <code>backend,model</code>: those requests "
            "go there whatever is active, and the Requests page shows them under that name, so background "
            "requests are easy to tell apart. \u201cClaude Code's default\u201d leaves the alias alone.")
        self.cc_alias_help.setWordWrap(True)
        self.cc_alias_help.setTextFormat(Qt.TextFormat.RichText)
        self.cc_connect = QPushButton("Connect Claude Code")
        self.cc_target = QLabel()  # which file Connect changes, said before it does
        self.cc_target.setWordWrap(True)
        self.cc_target.setTextFormat(Qt.TextFormat.RichText)
        self.cc_target.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cc_connect.clicked.connect(self.connect_claude)
        self.cc_disconnect = QPushButton("Disconnect")
        self.cc_disconnect.setToolTip("Puts back what settings.json held before Connect (only Patchbay's keys change)")
        self.cc_disconnect.clicked.connect(self.settings.disconnect_claude_code)
        self.cc_copy = QPushButton("Copy shell exports")
        self.cc_copy.clicked.connect(self._copy_exports)
        crow = QHBoxLayout()
        crow.addWidget(self.cc_connect)
        crow.addWidget(self.cc_disconnect)
        crow.addWidget(self.cc_copy)
        crow.addStretch(1)
        once = QLabel("For one terminal only, without touching settings.json: <code>patchbay claude</code> "
                      "(pinned: <code>patchbay claude --backend ID --model NAME</code>).")
        once.setWordWrap(True)
        once.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        cl.addWidget(self.cc_state)
        cl.addWidget(self.cc_env)
        cl.addWidget(self.cc_credential)
        cl.addWidget(self.cc_use_token)
        cl.addWidget(self.cc_nonessential)
        cl.addWidget(self.cc_statusline)
        cl.addWidget(self.cc_alias_help)
        cl.addWidget(aliases)
        cl.addWidget(self.cc_target)
        cl.addLayout(crow)
        cl.addWidget(once)
        col.addWidget(cc)

        # ---- budgets
        bg = QGroupBox("Budgets")
        bl = QVBoxLayout(bg)
        self.budget_table = QTableWidget(0, 6)
        self.budget_table.setHorizontalHeaderLabels(["Scope", "Period", "Limit ($)", "Warn at", "When reached",
                                                     "Spent"])
        self.budget_table.verticalHeader().setVisible(False)
        self.budget_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.budget_table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        for c, w in ((0, 140), (1, 100), (2, 100), (3, 70), (5, 110)):
            self.budget_table.setColumnWidth(c, w)
        self.budget_table.setMinimumHeight(140)
        self.budget_table.setAccessibleName("Budgets")
        self.budget_add = QPushButton("Add budget")
        self.budget_add.clicked.connect(lambda: self._add_budget_row(None))
        self.budget_remove = QPushButton("Remove")
        self.budget_remove.clicked.connect(self._remove_budget_row)
        self.budget_save = QPushButton("Save budgets")
        self.budget_save.clicked.connect(self.save_budgets)
        brow = QHBoxLayout()
        brow.addWidget(self.budget_add)
        brow.addWidget(self.budget_remove)
        self.prices_button = QPushButton("Prices…")
        self.prices_button.setToolTip("Set what a model costs ($ per million tokens): the [[prices]] of the config")
        self.prices_button.clicked.connect(self.open_prices)
        brow.addWidget(self.prices_button)
        brow.addStretch(1)
        brow.addWidget(self.budget_save)
        bl.addWidget(self.budget_table)
        bl.addLayout(brow)
        col.addWidget(bg)

        # ---- routing rules
        self.routes = RoutesBox(settings, backends)
        col.addWidget(self.routes)

        # ---- log and startup
        misc = QGroupBox("Request log and startup")
        mf = QFormLayout(misc)
        self.capture = QComboBox()
        for k, label in CAPTURE_LABELS:
            self.capture.addItem(label, k)
        self.capture.currentIndexChanged.connect(self._capture_changed)
        cap = QLabel("&Keep bodies:")
        cap.setBuddy(self.capture)
        mf.addRow(cap, self.capture)
        self.login = QCheckBox("Start Patchbay when I log in")
        self.login.toggled.connect(self._login_changed)
        mf.addRow("", self.login)
        self.ollama_url = QLineEdit()
        self.ollama_url.setPlaceholderText("http://localhost:11434")
        self.ollama_url.setAccessibleName("Ollama address")
        self.ollama_url.setToolTip("Where the local Ollama server listens: the Monitor page and Ollama backends' "
                                   "model lists ask it. Saved as [ollama] url in the settings file.")
        self.ollama_apply = QPushButton("Apply")
        self.ollama_apply.clicked.connect(self.apply_ollama_url)
        self.ollama_url.returnPressed.connect(self.apply_ollama_url)
        orow = QHBoxLayout()
        orow.addWidget(self.ollama_url, 1)
        orow.addWidget(self.ollama_apply)
        ol = QLabel("&Ollama address:")
        ol.setBuddy(self.ollama_url)
        mf.addRow(ol, orow)
        self.files = QLabel()
        self.files.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.files.setWordWrap(True)
        mf.addRow("Files:", self.files)
        col.addWidget(misc)
        col.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(inner)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll)

        self._loading = False
        settings.settingsChanged.connect(self.load)
        settings.gatewayChanged.connect(self._on_gateway)
        settings.budgetsChanged.connect(self._on_budgets)
        backends.backendsChanged.connect(self.load)
        settings.claudeCodeChanged.connect(self._load_claude)
        self.load()

    # ------------------------------------------------------------ load

    def load(self) -> None:
        self._loading = True
        try:
            s = self.settings.settings()
            self.port.setValue(s.port)
            self._on_gateway(self.settings.gateway())
            self.token.setText(self.settings.gateway_token())
            self.capture.setCurrentIndex(max(0, self.capture.findData(s.capture)))
            self.login.setChecked(s.start_at_login)
            self.login.setEnabled(s.start_at_login_supported)
            self.login.setToolTip("" if s.start_at_login_supported else
                                  "Patchbay does not know how to start at login on this system.")
            self.ollama_url.setText(s.ollama_url)
            self.files.setText(f"Settings: {s.config_path}\nUsage data: {s.data_dir}\n"
                               "Edits to the settings file are applied as soon as it is saved.")
            self.budget_table.setRowCount(0)
            for b in s.budgets:
                self._add_budget_row(b)
            self._load_claude(self.settings.claude_code())
        finally:
            self._loading = False

    def _load_claude(self, cc: ClaudeCodeView) -> None:
        color = {"connected": STATE_COLORS["ok"], "outdated": STATE_COLORS["warn"], "changed": STATE_COLORS["warn"],
                 "other_gateway": STATE_COLORS["warn"], "invalid": STATE_COLORS["error"]}.get(cc.state)
        title = {"connected": "✓ Connected", "not_connected": "Not connected", "outdated": "Connected, out of date",
                 "changed": "Changed by something else", "other_gateway": "Points at another gateway",
                 "invalid": "settings.json cannot be read"}.get(cc.state, "Unknown")
        head = f"<b><span style='color:{color}'>{title}</span></b>" if color else f"<b>{title}</b>"
        self.cc_state.setText(f"{head}: {_esc(cc.message)}" if cc.message else head)
        self.cc_connect.setText("Connect again" if cc.state in ("connected", "outdated", "changed")
                                else "Connect Claude Code")
        self.cc_connect.setEnabled(self.settings.can_edit() and cc.state != "invalid")
        self.cc_disconnect.setEnabled(cc.recorded or cc.connected)
        if cc.connected or cc.recorded:
            self.cc_nonessential.setChecked("nonessential" in cc.options)
            self.cc_statusline.setChecked("statusline" in cc.options)
        current = dict(cc.aliases)
        targets = [f"{b.id},{m}" for b in self.backends.backends() for m in b.models]
        for name, combo in self.cc_alias.items():
            combo.clear()
            combo.addItem("Claude Code's default", "")
            for t in dict.fromkeys(targets + ([current[name]] if name in current else [])):
                combo.addItem(t, t)
            combo.setCurrentIndex(max(0, combo.findData(current.get(name, ""))))
        what = "Connect changes" if not cc.connected else "Connected through"
        note = f"<br>{_esc(cc.path_note)}" if cc.path_note else ""
        self.cc_target.setText(f"{what} <code>{_esc(cc.settings_path)}</code>{note}")
        self.cc_connect.setToolTip(f"Adds ANTHROPIC_BASE_URL and Patchbay's token as an x-patchbay-token line of "
                                   f"ANTHROPIC_CUSTOM_HEADERS (and what you ticked) to the env of {cc.settings_path}; "
                                   "every other byte of that file is kept, and a backup is made first")
        self.cc_credential.setText(cc.credential)
        self.cc_use_token.blockSignals(True)
        self.cc_use_token.setChecked(self.settings.claude_credential == "token")
        self.cc_use_token.blockSignals(False)
        self.cc_env.setText("<br>".join(
            f"<code>{_esc(k)}={_esc(_mask(k, v))}</code>" for k, v in cc.env))

    def _use_token(self, on: bool) -> None:
        self.settings.set_claude_credential("token" if on else "auto")

    def connect_claude(self) -> None:
        aliases = {name: str(c.currentData()) for name, c in self.cc_alias.items() if c.currentData()}
        self.settings.connect_claude_code(nonessential=self.cc_nonessential.isChecked(), aliases=aliases,
                                        statusline=self.cc_statusline.isChecked())

    def _on_gateway(self, g: GatewayView) -> None:
        state = {"running": "running", "paused": "paused (requests are refused)", "failed": "not running",
                 "stopped": "stopped", "starting": "starting"}.get(g.state, g.state)
        self.address.setText(f"{g.url or '—'}  ·  {state}")

    def _on_budgets(self, budgets: list[BudgetView]) -> None:
        by = {(b.scope, b.period, b.limit_usd): b for b in budgets}
        for r in range(self.budget_table.rowCount()):
            cfg = self._row_budget(r)
            item = self.budget_table.cellWidget(r, 5)
            b = by.get((cfg.scope, cfg.period, cfg.limit_usd)) if cfg else None
            if isinstance(item, QLabel):
                item.setText(f"{fmt_usd(b.spent_usd)} ({b.fraction:.0%})" if b else "—")

    # ------------------------------------------------------------ gateway

    def apply_port(self) -> None:
        if self.port.value() == self.settings.settings().port and self.settings.gateway().state in ("running", "paused"):
            return
        self.settings.save_port(self.port.value())

    def _reveal(self, on: bool) -> None:
        self.token.setEchoMode(QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password)
        self.reveal.setText("Hide" if on else "Reveal")

    def _copy_token(self) -> None:
        QGuiApplication.clipboard().setText(self.token.text())

    def _regenerate(self) -> None:
        if QMessageBox.question(self, "Regenerate the gateway token",
                                "Clients using the current token will be refused until they get the new one. "
                                "Continue?") != QMessageBox.StandardButton.Yes:
            return
        tok = self.settings.regenerate_token()
        if tok:
            self.token.setText(tok)

    def _copy_exports(self) -> None:
        cc = self.settings.claude_code()
        QGuiApplication.clipboard().setText("\n".join(f"export {k}={shlex.quote(v)}" for k, v in cc.env))

    # ------------------------------------------------------------ budgets

    def _add_budget_row(self, b: BudgetView | None) -> None:
        t = self.budget_table
        r = t.rowCount()
        t.insertRow(r)
        scope = QComboBox()
        scope.addItem("All backends", "all")
        scope.addItem("Each session", "session")  # a cap per Claude Code session; its period does not apply
        for bv in self.backends.backends():
            scope.addItem(bv.id, f"backend:{bv.id}")
        period = QComboBox()
        for p in BUDGET_PERIODS:
            period.addItem(f"per {p}", p)
        limit = QDoubleSpinBox()
        limit.setRange(0.01, 1_000_000)
        limit.setDecimals(2)
        limit.setPrefix("$")
        limit.setValue(20.0)
        warn = QSpinBox()
        warn.setRange(1, 100)
        warn.setSuffix(" %")
        warn.setValue(80)
        action = QComboBox()
        action.addItem("Block further requests", "block")
        action.addItem("Only warn", "warn")
        # downgrade: go on, on another backend (local ones first: free), as the 429's advice says
        for bv in sorted(self.backends.backends(), key=lambda x: not x.is_local):
            first = bv.models[0] if bv.models else None
            action.addItem(f"Downgrade to {bv.id}" + (f" · {first}" if first else ""),
                           f"downgrade:{bv.id}" + (f",{first}" if first else ""))
        spent = QLabel("—")
        spent.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if b is not None:
            scope.setCurrentIndex(max(0, scope.findData(b.scope)))
            period.setCurrentIndex(max(0, period.findData(b.period)))
            limit.setValue(b.limit_usd)
            warn.setValue(round(b.warn_at * 100))
            i = action.findData(b.action)
            if i < 0:
                target, _, model = b.action.removeprefix("downgrade:").partition(",")
                label = f"Downgrade to {target}" + (f" · {model}" if model else "") \
                    if b.action.startswith("downgrade:") else b.action
                action.addItem(label, b.action)
                i = action.count() - 1
            action.setCurrentIndex(i)
            spent.setText(f"{fmt_usd(b.spent_usd)} ({b.fraction:.0%})")
        for c, w in enumerate((scope, period, limit, warn, action, spent)):
            t.setCellWidget(r, c, w)

    def _remove_budget_row(self) -> None:
        r = self.budget_table.currentRow()
        if r < 0:
            r = self.budget_table.rowCount() - 1
        if r >= 0:
            self.budget_table.removeRow(r)

    def _row_budget(self, r: int) -> BudgetConfig | None:
        t = self.budget_table
        scope, period, limit, warn, action = (t.cellWidget(r, c) for c in range(5))
        if not (isinstance(scope, QComboBox) and isinstance(period, QComboBox) and isinstance(limit, QDoubleSpinBox)
                and isinstance(warn, QSpinBox) and isinstance(action, QComboBox)):
            return None
        return BudgetConfig(scope.currentData(), period.currentData(), float(limit.value()), warn.value() / 100.0,
                            action.currentData())

    def budgets_from_table(self) -> list[BudgetConfig]:
        return [b for b in (self._row_budget(r) for r in range(self.budget_table.rowCount())) if b is not None]

    def open_prices(self) -> None:
        from app.views.prices import PricesDialog

        PricesDialog(self.settings, self).open()

    def save_budgets(self) -> None:
        self.settings.save_budgets(self.budgets_from_table())

    # ------------------------------------------------------------ misc

    def apply_ollama_url(self) -> None:
        url = self.ollama_url.text().strip()
        if url and url != self.settings.settings().ollama_url:
            self.settings.save_ollama_url(url)

    def _capture_changed(self) -> None:
        if not self._loading:
            self.settings.save_capture(self.capture.currentData())

    def _login_changed(self, on: bool) -> None:
        if not self._loading:
            if not self.settings.set_start_at_login(on):
                self._loading = True
                self.login.setChecked(not on)
                self._loading = False


def _mask(key: str, value: str) -> str:
    if "TOKEN" in key or "KEY" in key:
        return value[:4] + "…" + value[-2:] if len(value) > 8 else "…"
    if key == "ANTHROPIC_CUSTOM_HEADERS":  # its x-patchbay-token line holds the gateway token
        return "\n".join(f"{ln.split(':', 1)[0]}: {_mask('TOKEN', ln.split(':', 1)[1].strip())}"
                         if ln.lower().startswith("x-patchbay-token:") else ln for ln in value.splitlines())
    return value


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
