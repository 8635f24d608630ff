"""The wheel rule: a combo box, spin box or slider takes the mouse wheel only when it has focus.

One notch over the toolbar's Backend combo used to switch (and save) the live backend, and scrolling
the Settings page cycled routing rules, aliases and a budget's period. Over an unfocused one the wheel
event is ignored, so Qt hands it to the parent (the page scrolls), and their focus policy becomes
StrongFocus so a wheel never gives them focus. Click or Tab into one, and the wheel works on it as before.

How it reaches every such widget, those created later too, at no cost to other events: the
application's style is wrapped in a proxy whose ``polish(widget)`` (Qt calls it once per widget, as
the widget is first shown) puts the filter on the guarded widgets alone. An application-wide event
filter did the same but ran Python for every event Qt delivered (about 4 µs each, bench/wheel_bench.py),
which showed in the window's input latency.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QProxyStyle,
    QStyleFactory,
    QWidget,
)

GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider)
_WHEEL = QEvent.Type.Wheel


class WheelGuard(QObject):
    """The event filter of each guarded widget (see the module's text)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == _WHEEL and isinstance(obj, QWidget) and not obj.hasFocus():
            event.ignore()  # not ours: Qt passes an ignored wheel event on to the parent
            return True
        return False

    def guard(self, w: QWidget) -> None:
        """Put the rule on ``w`` if it is a combo box, spin box or slider (never a scroll bar)."""
        if isinstance(w, GUARDED) and not _is_scroll_bar(w) and not w.property("_wheel_guarded"):
            w.setProperty("_wheel_guarded", True)
            if w.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            w.installEventFilter(self)


class WheelStyle(QProxyStyle):
    """The application's own style, unchanged, plus the guard for each widget it polishes."""

    def __init__(self, base: str, guard: WheelGuard) -> None:
        super().__init__(QStyleFactory.create(base) if base else None)
        self.wheel_guard = guard

    def polish(self, arg: Any) -> Any:  # Qt's three overloads: QWidget, QPalette, QApplication
        if isinstance(arg, QWidget):
            super().polish(arg)
            self.wheel_guard.guard(arg)
            return None
        return super().polish(arg)


def _is_scroll_bar(w: QWidget) -> bool:
    """Scroll bars are sliders too, and the wheel is their whole point."""
    return w.inherits("QScrollBar")


def install_wheel_guard(app: QApplication) -> WheelGuard:
    """Wrap ``app``'s style once (a second call returns the first guard). Widgets that exist already
    are guarded at once; later ones as the style polishes them."""
    style = app.style()
    if isinstance(style, WheelStyle):
        return style.wheel_guard
    guard = WheelGuard(app)
    app.setStyle(WheelStyle(style.name() if style is not None else "", guard))
    for w in app.allWidgets():
        guard.guard(w)
    return guard
