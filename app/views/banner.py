"""The message strip under the toolbar: what happened and what to do, with a button for the fix.

Errors and warnings stay until their cause goes (or the user closes them); an informational message
("Claude Code connected", "Settings file re-read") replaces the previous one and closes by itself after
``INFO_TIMEOUT_MS``, so they never pile up."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from app.bridge.data import UserMessage
from app.views.theme import STATE_COLORS

INFO_TIMEOUT_MS = 15_000
ACTION_LABELS = {
    "settings": "Open Settings",
    "backends": "Open Backends",
    "spend": "Open Spend",
    "config": "Show the file",
    "retry": "Retry",
    "reset": "Start with a fresh config",
    "remove_model": "Remove that model setting",
}


class MessageCard(QFrame):
    actionRequested = Signal(str)
    closed = Signal(str)

    def __init__(self, msg: UserMessage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.msg = msg
        self.setObjectName("messageCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        color = QColor({"error": STATE_COLORS["error"], "warn": STATE_COLORS["warn"]}.get(msg.level, "#4e79a7"))
        pal = self.palette()
        base = pal.color(QPalette.ColorRole.Window)
        tint = QColor(
            int(base.red() * 0.85 + color.red() * 0.15),
            int(base.green() * 0.85 + color.green() * 0.15),
            int(base.blue() * 0.85 + color.blue() * 0.15),
        )
        pal.setColor(QPalette.ColorRole.Window, tint)
        self.setPalette(pal)
        self.setStyleSheet(f"#messageCard {{ border-left: 4px solid {color.name()}; }}")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        texts = QVBoxLayout()
        self.title = QLabel(f"<b>{_esc(msg.title)}</b>")
        self.body = QLabel(_esc(msg.text).replace("\n", "<br>"))
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        texts.addWidget(self.title)
        texts.addWidget(self.body)
        lay.addLayout(texts, 1)
        actions = [msg.action] if msg.action else []
        if msg.key == "startup" and msg.action == "config":
            actions = ["config", "retry", "reset"]
        elif msg.key == "startup":
            actions = ([msg.action] if msg.action else []) + ["retry"]
        self.buttons: dict[str, QPushButton] = {}
        for a in actions:
            if a in ACTION_LABELS:
                b = QPushButton(ACTION_LABELS[a])
                b.clicked.connect(lambda _=False, a=a: self.actionRequested.emit(a))
                lay.addWidget(b, 0, Qt.AlignmentFlag.AlignVCenter)
                self.buttons[a] = b
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(lambda: self.closed.emit(self.msg.key or str(id(self))))
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)


class Banner(QWidget):
    """A stack of message cards; a message with the same key replaces the older one."""

    actionRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(8, 4, 8, 0)
        self._lay.setSpacing(4)
        self._cards: dict[str, MessageCard] = {}
        self._page = ""
        self.info_timeout_ms = INFO_TIMEOUT_MS
        self.setVisible(False)

    def set_page(self, page: str) -> None:
        """No "Open Backends" button while the Backends page is the one showing."""
        self._page = page
        for card in self._cards.values():
            self._fit_buttons(card)

    def _fit_buttons(self, card: MessageCard) -> None:
        for action, button in card.buttons.items():
            button.setVisible(action != self._page)

    def show_message(self, msg: UserMessage) -> None:
        key = msg.key or f"anon:{len(self._cards)}:{msg.title}"
        self.clear(key)
        if msg.level == "info":  # one at a time: a newer one says what matters now
            for old in [k for k, c in self._cards.items() if c.msg.level == "info"]:
                self.clear(old)
        card = MessageCard(msg, self)
        if msg.level == "info":
            timer = QTimer(card)  # goes with the card: a replaced card's timer never fires
            timer.setSingleShot(True)
            timer.timeout.connect(lambda key=key, card=card: self.clear(key) if self._cards.get(key) is card else None)
            timer.start(self.info_timeout_ms)
        card.actionRequested.connect(self.actionRequested)
        card.closed.connect(lambda _k, key=key: self.clear(key))
        self._cards[key] = card
        self._fit_buttons(card)
        self._lay.addWidget(card)
        while len(self._cards) > 4:  # keep the newest few
            self.clear(next(iter(self._cards)))
        self.setVisible(True)

    def clear(self, key: str) -> None:
        card = self._cards.pop(key, None)
        if card is not None:
            card.hide()
            card.deleteLater()
        self.setVisible(bool(self._cards))

    def messages(self) -> list[UserMessage]:
        return [c.msg for c in self._cards.values()]


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
