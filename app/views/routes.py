"""The routing rules ([routes]): which backend serves which kind of request, and the fallbacks."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.config import ROUTE_RULES, RoutesConfig, RouteTarget

if TYPE_CHECKING:
    from app.bridge.backends import Backends
    from app.bridge.settings import Settings

RULE_LABELS = {
    "web_search": ("&Web search:", "Requests that offer the web_search server tool"),
    "long_context": ("&Long context:", "Requests whose estimated input passes the threshold below"),
    "compaction": ("&Compaction:", "/compact and auto-compaction (as Claude Code marks them)"),
    "subagent": ("&Subagents:", "Claude Code's subagents (Task/Agent tool)"),
    "background": ("&Background:", "Titles, summaries and side requests (Claude Code's hints; without them two of: "
                                   "no tools, max_tokens ≤ 512, a haiku model, a subagent header)"),
    "think": ("T&hinking:", "An explicit reasoning request: thinking enabled with a budget, or a high effort"),
    "image": ("&Images:", "Requests with an image in them"),
}
UNSET = "— not routed (skip this rule) —"


class RoutesBox(QGroupBox):
    def __init__(self, settings: Settings, backends: Backends, parent: QWidget | None = None) -> None:
        super().__init__("Routing", parent)
        self.settings = settings
        self.backends = backends
        self.dirty = False
        self._loading = False
        lay = QVBoxLayout(self)
        intro = QLabel("The first rule that matches picks the backend; a model written “backend,model” and pinned "
                       "sessions come before all of them, the active backend after. Rules in priority order:")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        self.combos: dict[str, QComboBox] = {}
        for rule in ROUTE_RULES:
            label, tip = RULE_LABELS[rule]
            combo = QComboBox()
            combo.setEditable(True)
            combo.setMinimumWidth(280)
            combo.setToolTip(tip)
            combo.setAccessibleName(label.replace("&", "").rstrip(":"))
            combo.currentTextChanged.connect(self._on_edit)
            lbl = QLabel(label)
            lbl.setBuddy(combo)
            lbl.setToolTip(tip)
            form.addRow(lbl, combo)
            self.combos[rule] = combo
        self.threshold = QSpinBox()
        self.threshold.setRange(1000, 10_000_000)
        self.threshold.setSingleStep(10_000)
        self.threshold.setSuffix(" tokens")
        self.threshold.setAccessibleName("Long context threshold")
        self.threshold.valueChanged.connect(self._on_edit)
        tl = QLabel("Long context &from:")
        tl.setBuddy(self.threshold)
        form.addRow(tl, self.threshold)
        self.fallback = QLineEdit()
        self.fallback.setPlaceholderText("e.g. deepseek,deepseek-chat; ollama,qwen3-coder:30b")
        self.fallback.setToolTip("Tried in order when a backend fails (connection error, timeout, 429, 5xx) before "
                                 "the client saw a byte. Separate targets with “;”.")
        self.fallback.setAccessibleName("Fallback")
        self.fallback.textEdited.connect(self._on_edit)
        fl = QLabel("&Fallback:")
        fl.setBuddy(self.fallback)
        form.addRow(fl, self.fallback)
        lay.addLayout(form)
        self.state = QLabel()
        self.save_button = QPushButton("Save routing")
        self.save_button.clicked.connect(self.save)
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(self.load)
        row = QHBoxLayout()
        row.addWidget(self.state, 1)
        row.addWidget(self.revert_button)
        row.addWidget(self.save_button)
        lay.addLayout(row)
        settings.settingsChanged.connect(self._reload_if_clean)
        backends.backendsChanged.connect(self._reload_if_clean)
        self.load()

    def _reload_if_clean(self) -> None:
        if not self.dirty:
            self.load()

    def load(self) -> None:
        self._loading = True
        try:
            routes = self.settings.routes()
            choices = self.backends.route_choices()
            for rule, combo in self.combos.items():
                combo.clear()
                combo.addItem(UNSET, None)
                for c in choices:
                    combo.addItem(c, c)
                target = routes.target(rule)
                if target is None:
                    combo.setCurrentIndex(0)
                else:
                    i = combo.findData(target.spec)
                    if i < 0:
                        combo.addItem(target.spec, target.spec)
                        i = combo.count() - 1
                    combo.setCurrentIndex(i)
            self.threshold.setValue(routes.long_context_threshold)
            self.fallback.setText("; ".join(t.spec for t in routes.fallback))
        finally:
            self._loading = False
        self.set_dirty(False)

    def _on_edit(self, *_: object) -> None:
        if not self._loading:
            self.set_dirty(True)

    def set_dirty(self, dirty: bool) -> None:
        self.dirty = dirty
        self.save_button.setEnabled(dirty)
        self.revert_button.setEnabled(dirty)
        self.state.setText("Unsaved changes" if dirty else "")

    def form_routes(self) -> RoutesConfig:
        targets: dict[str, RouteTarget | None] = {}
        for rule, combo in self.combos.items():
            text = combo.currentText().strip()
            targets[rule] = None if not text or text == UNSET else RouteTarget.parse(text)
        fallback = tuple(RouteTarget.parse(p) for p in self.fallback.text().replace("\n", ";").split(";") if p.strip())
        return replace(self.settings.routes(), background=targets.get("background"), think=targets.get("think"),
                       long_context=targets.get("long_context"), web_search=targets.get("web_search"),
                       image=targets.get("image"), long_context_threshold=self.threshold.value(), fallback=fallback)

    def save(self) -> bool:
        routes = self.form_routes()
        known = {c.split(",")[0] for c in self.backends.route_choices()}
        bad = [t.spec for t in [routes.target(r) for r in ROUTE_RULES] + list(routes.fallback)
               if t is not None and t.backend not in known]
        if bad:
            QMessageBox.warning(self, "Not saved", "These targets name no configured backend: " + ", ".join(bad)
                                + ". Write “backend” or “backend,model” with a backend from the Backends page.")
            return False
        if not self.settings.save_routes(routes):
            return False
        self.load()
        return True
