"""Issue 26 item 11: the selected row of the page list and the backends list is visible even where the
desktop style's inactive highlight is the list's own colour (as some dark GTK styles give it)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QListWidget


def _left_edge(lst: QListWidget, row: int) -> QColor:
    img = lst.grab().toImage()
    rect = lst.visualItemRect(lst.item(row))
    return QColor(img.pixel(rect.left() + 1, rect.center().y()))


def test_the_selected_row_is_marked_when_the_list_has_no_focus(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    for lst in (r.window.nav, r.window.page("backends").list):
        pal = lst.palette()
        base = pal.color(QPalette.ColorRole.Base)
        for group in (QPalette.ColorGroup.Inactive, QPalette.ColorGroup.Active):
            pal.setColor(group, QPalette.ColorRole.Highlight, base)  # a highlight nobody can see
        lst.setPalette(pal)
        lst.setCurrentRow(0)
        lst.clearFocus()
        qtbot.wait(20)
        marked, plain = _left_edge(lst, 0), _left_edge(lst, 1)
        diff = abs(marked.red() - plain.red()) + abs(marked.green() - plain.green()) + abs(marked.blue() - plain.blue())
        assert diff > 60, (lst.accessibleName(), marked.name(), plain.name())
