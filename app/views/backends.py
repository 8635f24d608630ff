"""Backends: add, edit, remove and reorder; keys go to the OS keychain (else a private file); Test and
model lists."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data import TestOutcome
from app.config import DEFAULT_TOKEN_TTL_S, ActiveSelection, BackendConfig, cloud_base_url, default_auth
from app.units import plural
from app.views.error_text import breakable, readable_error
from app.views.icons import backend_color, health_icon
from app.views.theme import SELECTION_MARKER, STATE_COLORS
from app.views.widgets import SectionLabel

if TYPE_CHECKING:
    from app.bridge.backends import Backends

AUTH_CHOICES = (
    ("keyring", "API key stored by Patchbay"),
    ("env", "API key from an environment variable"),
    ("command", "Token printed by a command (refreshed)"),
    ("client", "The client's own key (passed through)"),
    ("none", "No key (local servers)"),
    ("aws", "AWS credentials (environment, profiles, SSO)"),
    ("google", "Google application-default credentials"),
)
# which auth choices each kind offers (the others are greyed out)
AUTH_FOR_KIND = {
    "anthropic": ("keyring", "env", "command", "client", "none"),
    "openai": ("keyring", "env", "command", "none"),
    "bedrock": ("aws", "keyring", "env", "command"),
    "vertex": ("google", "command", "keyring", "env"),
}
CLOUD_KINDS = ("bedrock", "vertex")

TEMPLATES: tuple[tuple[str, BackendConfig], ...] = (
    ("Anthropic (the client's own key)", BackendConfig("anthropic", "anthropic", "https://api.anthropic.com", "client")),
    ("Anthropic (key stored here)", BackendConfig("anthropic-key", "anthropic", "https://api.anthropic.com", "keyring")),
    ("OpenRouter", BackendConfig("openrouter", "openai", "https://openrouter.ai/api/v1", "keyring",
                                 ("anthropic/claude-sonnet-4.5",))),
    ("DeepSeek", BackendConfig("deepseek", "openai", "https://api.deepseek.com/v1", "keyring",
                               ("deepseek-chat", "deepseek-reasoner"), 8192)),
    ("Groq", BackendConfig("groq", "openai", "https://api.groq.com/openai/v1", "keyring")),
    ("Together", BackendConfig("together", "openai", "https://api.together.xyz/v1", "keyring")),
    ("Ollama (local)", BackendConfig("ollama", "anthropic", "http://localhost:11434", "none")),
    ("LM Studio (local)", BackendConfig("lmstudio", "openai", "http://localhost:1234/v1", "none")),
    ("vLLM (local)", BackendConfig("vllm", "openai", "http://localhost:8000/v1", "none")),
    ("Other OpenAI-compatible", BackendConfig("custom-openai", "openai", "https://", "keyring")),
    ("Other Anthropic-compatible", BackendConfig("custom-anthropic", "anthropic", "https://", "keyring")),
    ("AWS Bedrock", BackendConfig("bedrock", "bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com", "aws",
                                  ("us.anthropic.claude-sonnet-4-5-20250929-v1:0",), region="us-east-1")),
    ("Google Vertex AI", BackendConfig("vertex", "vertex", "https://us-east5-aiplatform.googleapis.com", "google",
                                       ("claude-sonnet-4-5@20250929",), region="us-east5", project="")),
    ("Company gateway (token command)", BackendConfig("company", "anthropic", "https://",
                                                      "command:gcloud auth print-identity-token")),
)
KIND_LABELS = {"anthropic": "Anthropic Messages API", "openai": "OpenAI Chat Completions",
               "bedrock": "AWS Bedrock (Claude)", "vertex": "Google Vertex AI (Claude)"}


class BackendsPage(QWidget):
    def __init__(self, backends: Backends, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backends = backends
        self._fetching: str | None = None  # the backend whose model list is being fetched
        self._testing: str | None = None  # the backend a Test request is out for
        self.items: list[BackendConfig] = []
        self.original_ids: list[str | None] = []  # the saved id of each row (None: new)
        self.current = -1
        self.dirty = False
        self._loading = False

        # ---- list
        self.list = QListWidget()
        self.list.setAccessibleName("Backends")
        self.list.setStyleSheet(SELECTION_MARKER)
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.model().rowsMoved.connect(self._on_rows_moved)
        self.list.currentRowChanged.connect(self._on_select)
        self.add_button = QPushButton("Add")  # its menu arrow clear of the text
        add_menu = QMenu(self.add_button)
        for label, tpl in TEMPLATES:
            a = add_menu.addAction(label)
            a.triggered.connect(lambda _=False, tpl=tpl: self.add_backend(tpl))
        self.add_button.setMenu(add_menu)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_current)
        self.up_button = QToolButton()
        self.up_button.setText("▲")
        self.up_button.setToolTip("Move up (Alt+Up): the order is the order of the menus")
        self.up_button.setShortcut(QKeySequence("Alt+Up"))
        self.up_button.setAccessibleName("Move up")
        self.up_button.clicked.connect(lambda: self.move_current(-1))
        self.down_button = QToolButton()
        self.down_button.setText("▼")
        self.down_button.setToolTip("Move down (Alt+Down)")
        self.down_button.setShortcut(QKeySequence("Alt+Down"))
        self.down_button.setAccessibleName("Move down")
        self.down_button.clicked.connect(lambda: self.move_current(1))
        lbtn = QHBoxLayout()
        lbtn.addWidget(self.add_button)
        lbtn.addWidget(self.remove_button)
        lbtn.addStretch(1)
        lbtn.addWidget(self.up_button)
        lbtn.addWidget(self.down_button)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(SectionLabel("Backends"))
        ll.addWidget(self.list, 1)
        ll.addLayout(lbtn)

        # ---- form
        self.id_edit = QLineEdit()
        self.id_edit.setPlaceholderText("a short name, e.g. deepseek")
        self.kind_combo = QComboBox()
        for k in backends.backend_kinds():
            self.kind_combo.addItem(KIND_LABELS.get(k, k), k)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("https://api.example.com/v1")
        self.auth_combo = QComboBox()
        for k, label in AUTH_CHOICES:
            self.auth_combo.addItem(label, k)
        self.env_edit = QLineEdit()
        self.env_edit.setPlaceholderText("e.g. DEEPSEEK_API_KEY")
        self.command_edit = QLineEdit()
        self.command_edit.setPlaceholderText("e.g. gcloud auth print-identity-token")
        self.command_edit.setToolTip("Run through the shell; what it prints is the token. It runs again when the "
                                     "token is older than the time below, or after the upstream answers 401.")
        self.ttl_spin = QDoubleSpinBox()
        self.ttl_spin.setRange(1, 86400)
        self.ttl_spin.setDecimals(0)
        self.ttl_spin.setSuffix(" s")
        self.ttl_spin.setValue(DEFAULT_TOKEN_TTL_S)
        self.ttl_spin.setToolTip("How long a printed token is used; a new one is fetched in the background "
                                 "after 80 % of this time.")
        self.region_edit = QLineEdit()
        self.region_edit.setPlaceholderText("e.g. us-east-1")
        self.project_edit = QLineEdit()
        self.project_edit.setPlaceholderText("the Google Cloud project id, e.g. my-project-123")
        self.profile_edit = QLineEdit()
        self.profile_edit.setPlaceholderText("optional: a profile of ~/.aws/config (default chain when empty)")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setAccessibleName("API key")
        self.key_button = QPushButton("Store key")
        self.key_button.clicked.connect(self.store_key)
        self.key_state = QLabel()
        self.key_state.setWordWrap(True)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.key_button)
        self.key_row = QWidget()
        self.key_row.setLayout(key_row)
        key_row.setContentsMargins(0, 0, 0, 0)
        self.models_edit = QPlainTextEdit()
        self.models_edit.setPlaceholderText("One model per line. Leave empty to pass the client's model through "
                                            "(Anthropic-format backends).")
        self.models_edit.setTabChangesFocus(True)
        self.models_edit.setMaximumHeight(110)
        self.fetch_button = QPushButton("Fetch from the backend")
        self.fetch_button.clicked.connect(self.fetch_models)
        self.fetch_state = QLabel()
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(0, 1_000_000)
        self.max_tokens.setSpecialValueText("no limit")
        self.max_tokens.setSingleStep(1024)
        self.local_combo = QComboBox()
        self.local_combo.addItem("Guess from the address (loopback = local, free)", None)
        self.local_combo.addItem("Local (free)", True)
        self.local_combo.addItem("Remote (priced)", False)
        self.headers_edit = QPlainTextEdit()
        self.headers_edit.setPlaceholderText("Extra headers, one per line: Name: value (never a key)")
        self.headers_edit.setTabChangesFocus(True)
        self.headers_edit.setMaximumHeight(60)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("&Id:", self.id_edit)
        form.addRow("&Speaks:", self.kind_combo)
        self.region_label = QLabel("Re&gion:")
        self.region_label.setBuddy(self.region_edit)
        form.addRow(self.region_label, self.region_edit)
        self.project_label = QLabel("Pro&ject:")
        self.project_label.setBuddy(self.project_edit)
        form.addRow(self.project_label, self.project_edit)
        form.addRow("Base &URL:", self.url_edit)
        form.addRow("&Auth:", self.auth_combo)
        self.env_label = QLabel("&Variable:")
        self.env_label.setBuddy(self.env_edit)
        form.addRow(self.env_label, self.env_edit)
        self.profile_label = QLabel("AWS pro&file:")
        self.profile_label.setBuddy(self.profile_edit)
        form.addRow(self.profile_label, self.profile_edit)
        self.command_label = QLabel("Co&mmand:")
        self.command_label.setBuddy(self.command_edit)
        form.addRow(self.command_label, self.command_edit)
        self.ttl_label = QLabel("Token &lifetime:")
        self.ttl_label.setBuddy(self.ttl_spin)
        form.addRow(self.ttl_label, self.ttl_spin)
        self.key_label = QLabel("API &key:")
        self.key_label.setBuddy(self.key_edit)
        form.addRow(self.key_label, self.key_row)
        form.addRow("", self.key_state)
        models_row = QVBoxLayout()
        models_row.addWidget(self.models_edit)
        fr = QHBoxLayout()
        fr.addWidget(self.fetch_button)
        fr.addWidget(self.fetch_state, 1)
        models_row.addLayout(fr)
        ml = QLabel("&Models:")
        ml.setBuddy(self.models_edit)
        form.addRow(ml, models_row)
        form.addRow("Max output &tokens:", self.max_tokens)
        self.limit_note = QLabel()  # models whose output limit nobody knows (max_tokens goes out as is)
        self.limit_note.setWordWrap(True)
        form.addRow("", self.limit_note)
        form.addRow("&Pricing:", self.local_combo)
        form.addRow("&Headers:", self.headers_edit)
        details = QGroupBox("Backend")
        details.setLayout(form)

        self.test_model = QComboBox()
        self.test_model.setEditable(True)
        self.test_model.setAccessibleName("Model to test")
        self.test_model.setMinimumWidth(200)
        self.test_button = QPushButton("&Test")
        self.test_button.setToolTip("Send a tiny real request and show the time to first token or the exact error")
        self.test_button.clicked.connect(self.run_test)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        test_box = QGroupBox("Test")
        tl = QVBoxLayout(test_box)
        trow = QHBoxLayout()
        trow.addWidget(QLabel("Model:"))
        trow.addWidget(self.test_model, 1)
        trow.addWidget(self.test_button)
        tl.addLayout(trow)
        tl.addWidget(self.test_result)

        self.save_button = QPushButton("&Save changes")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        self.revert_button = QPushButton("&Revert")
        self.revert_button.clicked.connect(self.load)
        self.dirty_label = QLabel()
        brow = QHBoxLayout()
        brow.addWidget(self.dirty_label, 1)
        brow.addWidget(self.revert_button)
        brow.addWidget(self.save_button)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(details)
        rl.addWidget(test_box)
        rl.addStretch(1)
        rl.addLayout(brow)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        for w in (self.id_edit, self.url_edit, self.env_edit, self.command_edit, self.region_edit,
                  self.project_edit, self.profile_edit):
            w.textEdited.connect(self._on_edit)
        self.ttl_spin.valueChanged.connect(self._on_edit)
        for c in (self.kind_combo, self.auth_combo, self.local_combo):
            c.currentIndexChanged.connect(self._on_edit)
        self.max_tokens.valueChanged.connect(self._on_edit)
        self.models_edit.textChanged.connect(self._on_edit)
        self.headers_edit.textChanged.connect(self._on_edit)
        backends.backendsChanged.connect(self._on_backends_changed)
        backends.testFinished.connect(self._on_test)
        backends.modelsListed.connect(self._on_models)
        self.load()

    # ------------------------------------------------------------ list

    def _on_backends_changed(self) -> None:
        if not self.dirty:
            self.load()
        else:
            self._refresh_list_labels()

    def load(self) -> None:
        self.items = [c for c in (self.backends.backend_config(b.id) for b in self.backends.backends()) if c is not None]
        self.original_ids = [b.id for b in self.items]
        keep = self.current
        self._rebuild_list()
        self.set_dirty(False)
        if self.items:
            self.list.setCurrentRow(min(max(keep, 0), len(self.items) - 1))
        else:
            self._on_select(-1)

    def _rebuild_list(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for i, _b in enumerate(self.items):
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self._refresh_list_labels()

    def _refresh_list_labels(self) -> None:
        views = {v.id: v for v in self.backends.backends()}
        active = self.backends.active()[0]
        for i, b in enumerate(self.items):
            item = self.list.item(i)
            if item is None:
                continue
            v = views.get(b.id)
            bits = [b.id]
            if b.id == active:
                bits.append("(active)")
            where = b.base_url
            if b.kind in CLOUD_KINDS and b.base_url == b.default_base_url:
                where = f"{'AWS Bedrock' if b.kind == 'bedrock' else 'Vertex AI'} · {b.region}"
            text = " ".join(bits) + f"\n{where}"
            tip = KIND_LABELS.get(b.kind, b.kind)
            health = v.health if v else "unknown"
            if v is not None and health == "failing":
                text += "\n⚠ failing"
                tip += f"\nFailing ({v.failures} in a row). Last error: {v.last_error}"
            elif v is not None and health == "open":
                until = time.strftime("%H:%M:%S", time.localtime(v.open_until)) if v.open_until else "?"
                text += f"\n✗ skipped until {until}"
                tip += (f"\nFailed {v.failures} times in a row, so requests with a fallback skip it until {until}; "
                        f"then one trial request is let through.\nLast error: {v.last_error}")
            elif health == "ok":
                tip += "\nHealthy: its last request succeeded."
            else:
                tip += "\nNo request has gone to it yet."
            item.setText(text)
            item.setToolTip(tip)
            item.setIcon(health_icon(backend_color(b.id), health))

    def _on_rows_moved(self, *_: object) -> None:
        # the list was reordered by drag and drop: follow its new order
        QTimer.singleShot(0, self._follow_list_order)

    def _follow_list_order(self) -> None:
        order = [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]
        if sorted(order) != list(range(len(self.items))) or order == sorted(order):
            return
        self.items = [self.items[j] for j in order]
        self.original_ids = [self.original_ids[j] for j in order]
        row = self.list.currentRow()
        self._rebuild_list()
        self.list.setCurrentRow(row)
        self.set_dirty(True)

    def _on_select(self, row: int) -> None:
        self.current = row
        has = 0 <= row < len(self.items)
        for w in (self.remove_button, self.up_button, self.down_button, self.test_button, self.fetch_button):
            w.setEnabled(has)
        self._loading = True
        try:
            b = self.items[row] if has else BackendConfig("", "anthropic", "", "none")
            self.id_edit.setText(b.id)
            self.kind_combo.setCurrentIndex(max(0, self.kind_combo.findData(b.kind)))
            # a cloud kind's own endpoint follows its region: show it as the placeholder, not as text
            self.url_edit.setText("" if b.kind in CLOUD_KINDS and b.base_url == b.default_base_url else b.base_url)
            self.region_edit.setText(b.region or "")
            self.project_edit.setText(b.project or "")
            self.profile_edit.setText(b.profile or "")
            auth = "env" if b.auth.startswith("env:") else "command" if b.auth.startswith("command:") else b.auth
            self.auth_combo.setCurrentIndex(max(0, self.auth_combo.findData(auth)))
            self.env_edit.setText(b.env_var or "")
            self.command_edit.setText(b.token_command or "")
            self.ttl_spin.setValue(b.token_ttl_s or DEFAULT_TOKEN_TTL_S)
            self.key_edit.clear()
            self.models_edit.setPlainText("\n".join(b.models))
            self.max_tokens.setValue(b.max_output_tokens or 0)
            self.local_combo.setCurrentIndex(max(0, self.local_combo.findData(b.local)))
            self.headers_edit.setPlainText("\n".join(f"{k}: {v}" for k, v in b.headers))
            self.test_model.clear()
            self.test_model.addItems(list(b.models) or self.backends.models_for(b.id))
            self.test_result.clear()
            self.fetch_state.clear()
        finally:
            self._loading = False
        self._update_auth_fields()
        self._update_limit_note()

    def _update_kind_fields(self) -> None:
        """Show the fields the selected kind uses, and offer only the auth choices it takes."""
        kind = self.kind_combo.currentData() or "anthropic"
        cloud = kind in CLOUD_KINDS
        for w in (self.region_label, self.region_edit):
            w.setVisible(cloud)
        for w in (self.project_label, self.project_edit):
            w.setVisible(kind == "vertex")
        allowed = AUTH_FOR_KIND.get(kind, ())
        model = self.auth_combo.model()
        for i in range(self.auth_combo.count()):
            item = model.item(i) if isinstance(model, QStandardItemModel) else None  # a QComboBox's own model
            if item is not None:
                item.setEnabled(self.auth_combo.itemData(i) in allowed)
        if self.auth_combo.currentData() not in allowed:
            self.auth_combo.blockSignals(True)
            self.auth_combo.setCurrentIndex(max(0, self.auth_combo.findData(default_auth(kind))))
            self.auth_combo.blockSignals(False)
        endpoint = cloud_base_url(kind, self.region_edit.text().strip() or None)
        if cloud:
            self.url_edit.setPlaceholderText(f"{endpoint or 'from the region'} (leave empty), or a VPC endpoint")
        else:
            self.url_edit.setPlaceholderText("https://api.example.com/v1")
        if kind == "vertex":
            self.fetch_button.setEnabled(False)
            self.fetch_state.setText("Vertex AI cannot list a project's Claude models: type the ids from Model "
                                     "Garden, e.g. claude-sonnet-4-5@20250929.")
        else:
            self.fetch_button.setEnabled(0 <= self.current < len(self.items))
            if self.fetch_state.text().startswith("Vertex AI"):
                self.fetch_state.clear()

    def _update_auth_fields(self) -> None:
        self._update_kind_fields()
        auth = self.auth_combo.currentData()
        self.env_label.setVisible(auth == "env")
        self.env_edit.setVisible(auth == "env")
        for w in (self.command_label, self.command_edit, self.ttl_label, self.ttl_spin):
            w.setVisible(auth == "command")
        for w in (self.profile_label, self.profile_edit):
            w.setVisible(auth == "aws")
        self.key_label.setVisible(auth == "keyring")
        self.key_row.setVisible(auth == "keyring")
        self.key_state.setVisible(auth in ("keyring", "env"))
        bid = self.id_edit.text().strip()
        v = next((x for x in self.backends.backends() if x.id == bid), None)
        if auth == "keyring":
            if v is not None and v.has_key:
                self.key_state.setText(f"✓ A key is stored in {self.backends.key_store_label()}. "
                                       "Type a new one to replace it.")
                self.key_edit.setPlaceholderText("•••••••• (stored)")
            else:
                self.key_state.setText("No key stored yet: paste the key your provider gave you. It goes to "
                                       f"{self.backends.key_store_label()}.")
                self.key_edit.setPlaceholderText("paste the API key")
        elif auth == "env":
            name = self.env_edit.text().strip()
            if v is not None and v.has_key:
                self.key_state.setText(f"✓ {name} is set in Patchbay's environment.")
            else:
                self.key_state.setText(f"{name or 'The variable'} is not set where Patchbay runs: export it "
                                       "before starting Patchbay.")

    def add_backend(self, tpl: BackendConfig) -> None:
        ids = {b.id for b in self.items}
        new_id, n = tpl.id, 2
        while new_id in ids:
            new_id, n = f"{tpl.id}-{n}", n + 1
        self.items.append(replace(tpl, id=new_id))
        self.original_ids.append(None)
        self._rebuild_list()
        self.list.setCurrentRow(len(self.items) - 1)
        self.set_dirty(True)
        self.id_edit.setFocus()
        self.id_edit.selectAll()

    def remove_current(self) -> None:
        row = self.current
        if not 0 <= row < len(self.items):
            return
        if len(self.items) == 1:
            QMessageBox.information(self, "Keep one backend", "Patchbay needs at least one backend. Add another "
                                    "one first, then remove this one.")
            return
        b = self.items[row]
        if QMessageBox.question(self, "Remove backend", f"Remove “{b.id}”? Requests pinned to it go to the active "
                                "backend instead. Its stored key stays where it is.") != \
                QMessageBox.StandardButton.Yes:
            return
        del self.items[row]
        del self.original_ids[row]
        self._rebuild_list()
        self.list.setCurrentRow(min(row, len(self.items) - 1))
        self.set_dirty(True)

    def move_current(self, delta: int) -> None:
        row = self.current
        new = row + delta
        if not (0 <= row < len(self.items) and 0 <= new < len(self.items)):
            return
        self.items[row], self.items[new] = self.items[new], self.items[row]
        self.original_ids[row], self.original_ids[new] = self.original_ids[new], self.original_ids[row]
        self._rebuild_list()
        self.list.setCurrentRow(new)
        self.set_dirty(True)

    # ------------------------------------------------------------ form

    def form_config(self) -> BackendConfig:
        kind = self.kind_combo.currentData()
        auth = self.auth_combo.currentData()
        if auth == "env":
            auth = f"env:{self.env_edit.text().strip()}"
        elif auth == "command":
            auth = f"command:{self.command_edit.text().strip()}"
        models = tuple(m.strip() for m in self.models_edit.toPlainText().splitlines() if m.strip())
        headers = []
        for line in self.headers_edit.toPlainText().splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                if k.strip():
                    headers.append((k.strip(), v.strip()))
        cloud = kind in CLOUD_KINDS
        region = self.region_edit.text().strip() or None if cloud else None
        url = self.url_edit.text().strip().rstrip("/")
        if cloud and not url:
            url = cloud_base_url(kind, region) or ""
        kept = self.items[self.current] if 0 <= self.current < len(self.items) else None
        return BackendConfig(
            id=self.id_edit.text().strip(), kind=kind, base_url=url, auth=auth, models=models,
            max_output_tokens=self.max_tokens.value() or None, headers=tuple(headers),
            local=self.local_combo.currentData(), region=region,
            project=(self.project_edit.text().strip() or None) if kind == "vertex" else None,
            profile=(self.profile_edit.text().strip() or None) if auth == "aws" else None,
            token_ttl_s=self.ttl_spin.value() if auth.startswith("command:") else None,
            # not on the form: kept as the config file has them
            max_connections=kept.max_connections if kept else None,
            quirks=kept.quirks if kept and kind == "openai" else None,
        )

    def _on_edit(self, *_: object) -> None:
        if self._loading or not 0 <= self.current < len(self.items):
            return
        self.items[self.current] = self.form_config()
        if self.auth_combo.currentData() != "keyring":
            self.backends.forget_key_error()  # "No key" (or another way) chosen: the keychain's error is moot
        self._update_auth_fields()
        self._update_limit_note()
        self._refresh_list_labels()
        self.set_dirty(True)

    def _update_limit_note(self) -> None:
        models = [m.strip() for m in self.models_edit.toPlainText().splitlines() if m.strip()]
        unknown = [] if self.max_tokens.value() else self.backends.without_output_limit(models)
        self.limit_note.setText(
            f"No known output limit for {', '.join(unknown)}: max_tokens goes out as the client asks (Claude Code "
            "asks for up to 128000). Set Max output tokens if the server refuses that." if unknown else "")
        self.limit_note.setVisible(bool(unknown))

    def set_dirty(self, dirty: bool) -> None:
        self.dirty = dirty
        self.save_button.setEnabled(dirty)
        self.revert_button.setEnabled(dirty)
        self.dirty_label.setText("Unsaved changes" if dirty else "")

    def problems(self) -> list[str]:
        out = []
        seen: set[str] = set()
        for b in self.items:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", b.id or ""):
                out.append(f"“{b.id}” is not a usable id: use letters, digits, “-”, “_” or “.”.")
            if b.id in seen:
                out.append(f"The id “{b.id}” is used twice: give each backend its own.")
            seen.add(b.id)
            if b.kind in CLOUD_KINDS and not b.region:
                out.append(f"“{b.id}” needs the cloud region its models run in (e.g. us-east-1).")
            elif not re.match(r"^https?://[^\s/]+", b.base_url):
                out.append(f"“{b.id}” needs a base URL starting with http:// or https://.")
            if b.kind == "vertex" and not b.project:
                out.append(f"“{b.id}” needs the Google Cloud project id.")
            if b.auth == "env:":
                out.append(f"“{b.id}” reads its key from an environment variable: name the variable.")
            if b.auth == "command:":
                out.append(f"“{b.id}” gets its token from a command: write the command.")
        return out

    def save(self) -> bool:
        if 0 <= self.current < len(self.items):
            self.items[self.current] = self.form_config()
        problems = self.problems()
        if problems:
            QMessageBox.warning(self, "Not saved", "\n".join(problems))
            return False
        ids = [b.id for b in self.items]
        active, model = self.backends.active()
        renamed = {o: b.id for o, b in zip(self.original_ids, self.items, strict=True) if o is not None}
        new_active: ActiveSelection | None = None
        if active in renamed and renamed[active] != active:
            new_active = ActiveSelection(renamed[active], model)
        elif active not in ids:
            new_active = ActiveSelection(ids[0], None)
        key = self.key_edit.text()
        if not self.backends.save_backends(self.items, new_active):
            return False
        if key.strip() and self.auth_combo.currentData() == "keyring":
            self.store_key()
        self.load()
        return True

    def store_key(self) -> None:
        bid = self.id_edit.text().strip()
        key = self.key_edit.text()
        if not bid or not key.strip():
            self.key_state.setText("Type or paste the key first.")
            return
        if self.backends.set_api_key(bid, key):
            self.key_edit.clear()
            self.key_state.setText(f"✓ Stored in {self.backends.key_store_label()}.")
        else:
            self.key_state.setText("The key was not stored: see the message above.")

    # ------------------------------------------------------------ test and models

    def run_test(self) -> None:
        cfg = self.form_config()
        model = self.test_model.currentText().strip() or None
        self.test_button.setEnabled(False)
        self.test_result.setText("Sending a tiny request…")
        self._testing = cfg.id
        self.backends.test_backend(cfg, model)

    def _on_test(self, out: TestOutcome) -> None:
        if out.backend_id != self._testing:
            return
        self.test_button.setEnabled(True)
        if out.ok:
            ttft = f"{out.ttft_ms:.0f} ms" if out.ttft_ms is not None else "?"
            self.test_result.setText(f"<span style='color:{STATE_COLORS['ok']}'>✓ Works</span> — first token after "
                                     f"{ttft}. {_esc(out.message)}")
        else:
            status = f"HTTP {out.status}: " if out.status else ""
            said = status + readable_error(out.message)  # the message out of a JSON/HTML body, wrappable
            self.test_result.setText(f"<span style='color:{STATE_COLORS['error']}'>✗ Failed</span> — "
                                     f"{_esc(breakable(said))}")
            self.test_result.setToolTip(status + out.message)
        self._refresh_list_labels()

    def fetch_models(self) -> None:
        cfg = self.form_config()
        self.fetch_button.setEnabled(False)
        self.fetch_state.setText("Asking the backend…")
        self._fetching = cfg.id
        self.backends.list_models(cfg)

    def _on_models(self, backend_id: str, models: list[str], error: str) -> None:
        if backend_id != self._fetching:
            return
        self._fetching = None
        self.fetch_button.setEnabled(True)
        if error:
            self.fetch_state.setText(f"✗ {error}")
            return
        have = [m.strip() for m in self.models_edit.toPlainText().splitlines() if m.strip()]
        merged = list(dict.fromkeys(have + models))
        self.models_edit.setPlainText("\n".join(merged))
        self.test_model.clear()
        self.test_model.addItems(merged)
        self.fetch_state.setText(f"✓ {plural(len(models), 'model')} listed by the backend")


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
