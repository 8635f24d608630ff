"""The wheel rule (app/views/wheel.py): no combo box, spin box or slider takes the mouse wheel unless
it has focus; the page scrolls instead. Wheel events go in through Qt's window-system path
(QTest.wheelEvent), as a real mouse's do, so Qt's own propagation to the parent is what is tested."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, QPointF
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.views.wheel import install_wheel_guard


def wheel(qapp: Any, widget: QWidget, notches: int = -1) -> None:
    """One real wheel notch (down for -1) over the middle of ``widget``."""
    window = widget.window()
    pos = widget.mapTo(window, widget.rect().center())
    QTest.wheelEvent(window.windowHandle(), QPointF(pos), QPoint(0, 120 * notches))
    qapp.processEvents()


def make_page(qtbot: Any) -> tuple[QScrollArea, QLineEdit, QComboBox, QDoubleSpinBox, QSlider]:
    area = QScrollArea()
    inner = QWidget()
    lay = QVBoxLayout(inner)
    first = QLineEdit()
    combo = QComboBox()
    combo.addItems(["day", "week", "month"])
    spin = QDoubleSpinBox()
    spin.setValue(20.0)
    slider = QSlider()
    slider.setRange(0, 100)
    slider.setValue(50)
    lay.addWidget(first)
    for i in range(6):  # the inputs a little down the page, so they stay on screen while it scrolls
        lay.addWidget(QLabel(f"heading {i}"))
    for w in (combo, spin, slider):
        lay.addWidget(w)
    for i in range(60):
        lay.addWidget(QLabel(f"row {i}"))
    area.setWidget(inner)
    area.resize(320, 400)
    qtbot.addWidget(area)
    area.show()
    qtbot.waitExposed(area)
    first.setFocus()
    return area, first, combo, spin, slider


def test_a_wheel_over_unfocused_inputs_scrolls_the_page_and_changes_nothing(qapp, qtbot) -> None:
    install_wheel_guard(qapp)
    area, first, combo, spin, slider = make_page(qtbot)
    qtbot.waitUntil(first.hasFocus)
    bar = area.verticalScrollBar()
    for w in (slider, spin, combo):  # bottom up, so each is still on screen when its turn comes
        before = bar.value()
        wheel(qapp, w)
        assert bar.value() > before, type(w).__name__  # the page scrolled instead
        assert not w.hasFocus()  # and the wheel gave it no focus
    assert (combo.currentIndex(), spin.value(), slider.value()) == (0, 20.0, 50)


def test_a_focused_combo_still_takes_the_wheel(qapp, qtbot) -> None:
    install_wheel_guard(qapp)
    area, first, combo, spin, _ = make_page(qtbot)
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus)
    wheel(qapp, combo)
    assert combo.currentIndex() == 1
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    wheel(qapp, spin, notches=1)
    assert spin.value() == 21.0


def test_installing_twice_keeps_one_filter(qapp) -> None:
    assert install_wheel_guard(qapp) is install_wheel_guard(qapp)


def test_the_toolbar_backend_combo_ignores_a_stray_wheel(start_app, config_file, qapp, qtbot) -> None:
    r = start_app(config_file)
    combo = r.window.backend_combo
    text_before = config_file.read_text(encoding="utf-8")
    assert r.bridge.backends.active()[0] == "alpha" and combo.currentData() == "alpha"
    r.window.activateWindow()
    r.window.stack.currentWidget().setFocus()
    qtbot.waitUntil(lambda: not combo.hasFocus())
    wheel(qapp, combo)  # used to switch to "beta" and save it
    assert combo.currentData() == "alpha" and r.bridge.backends.active()[0] == "alpha"
    assert config_file.read_text(encoding="utf-8") == text_before


def test_scrolling_settings_does_not_cycle_a_budget_period(start_app, config_file, qapp, qtbot) -> None:
    r = start_app(config_file)
    r.window.show_page("settings")
    page = r.window.page("settings")
    page._add_budget_row(None)
    t = page.budget_table
    period, limit = t.cellWidget(0, 1), t.cellWidget(0, 2)
    assert isinstance(period, QComboBox) and isinstance(limit, QDoubleSpinBox)
    scroll = page.findChild(QScrollArea)
    scroll.ensureWidgetVisible(period)
    qapp.processEvents()
    before = (period.currentIndex(), limit.value())
    wheel(qapp, period)
    wheel(qapp, limit)
    assert (period.currentIndex(), limit.value()) == before
    assert not period.hasFocus() and not limit.hasFocus()
