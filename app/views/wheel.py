"""The wheel rule: a combo box, spin box or slider takes the mouse wheel only when it has focus.

One notch over the toolbar's Backend combo used to switch (and save) the live backend, and scrolling
the Settings page cycled routing rules, aliases and a budget's period. One filter on the application
covers every such widget, those created later too: over an unfocused one the wheel event is ignored,
so Qt hands it to the parent (the page scrolls), and their focus policy becomes StrongFocus so a
wheel never gives them focus. Click or Tab into one, and the wheel works on it as before.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QWidget

GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider)
_WHEEL = QEvent.Type.Wheel
_POLISH = QEvent.Type.Polish


class WheelGuard(QObject):
    """The application-wide event filter (see the module's text). Cheap for every other event: one
    type comparison."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        t = event.type()
        if t == _WHEEL:
            if isinstance(obj, GUARDED) and not obj.hasFocus() and not _is_scroll_bar(obj):
                event.ignore()  # not ours: Qt passes an ignored wheel event on to the parent
                return True
        elif t == _POLISH and isinstance(obj, GUARDED) and not _is_scroll_bar(obj):
            if obj.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                obj.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        return False


def _is_scroll_bar(w: QWidget) -> bool:
    """Scroll bars are sliders too, and the wheel is their whole point."""
    return w.inherits("QScrollBar")


def install_wheel_guard(app: QApplication) -> WheelGuard:
    """Install the filter on ``app`` once (a second call returns the first filter)."""
    for child in app.children():
        if isinstance(child, WheelGuard):
            return child
    guard = WheelGuard(app)
    app.installEventFilter(guard)
    return guard
