"""A searchable list of models: the tray's way to the hundreds an aggregator lists, without a
menu taller than the screen. Type to filter, Enter or a double-click picks."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout

from app.units import plural


class ModelChooser(QDialog):
    picked = Signal(str, str)  # backend id, model

    def __init__(self, backend: str, models: list[str], current: str | None = None) -> None:
        super().__init__(None)
        self.backend = backend
        self.setWindowTitle(f"Choose a model for {backend}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(420, 480)
        lay = QVBoxLayout(self)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Type part of a model's name")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search models")
        self.list = QListWidget()
        self.list.setAccessibleName("Models")
        self.count = QLabel()
        for m in models:
            item = QListWidgetItem(m)
            self.list.addItem(item)
            if m == current:
                self.list.setCurrentItem(item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Use this model")
        buttons.accepted.connect(self.choose)
        buttons.rejected.connect(self.reject)
        lay.addWidget(self.search)
        lay.addWidget(self.list, 1)
        lay.addWidget(self.count)
        lay.addWidget(buttons)
        self.search.textChanged.connect(self.filter)
        self.search.returnPressed.connect(self.choose)
        self.list.itemActivated.connect(lambda _i: self.choose())
        self.filter("")

    def visible_models(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count()) if not self.list.item(i).isHidden()]

    def filter(self, text: str) -> None:
        words = text.lower().split()
        first: QListWidgetItem | None = None
        for i in range(self.list.count()):
            item = self.list.item(i)
            hide = not all(w in item.text().lower() for w in words)
            item.setHidden(hide)
            if not hide and first is None:
                first = item
        cur = self.list.currentItem()
        if (cur is None or cur.isHidden()) and first is not None:
            self.list.setCurrentItem(first)
        shown = len(self.visible_models())
        self.count.setText(f"{plural(shown, 'model')} of {self.list.count():,}" if words
                           else plural(self.list.count(), "model"))

    def choose(self) -> None:
        item = self.list.currentItem()
        if item is None or item.isHidden():
            return
        self.picked.emit(self.backend, item.text())
        self.accept()
