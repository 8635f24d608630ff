"""The message board every bridge part posts to: the window's banner and the tray's
notifications listen here, so no part needs to know who shows its messages."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.bridge.data import UserMessage


class Notices(QObject):
    message = Signal(object)  # UserMessage
    messageCleared = Signal(str)  # key

    def say(self, level: str, title: str, text: str, *, key: str | None = None, action: str | None = None,
            notify: bool = False) -> None:
        self.message.emit(UserMessage(level, title, text, action=action, key=key, notify=notify))

    def clear(self, key: str) -> None:
        self.messageCleared.emit(key)
