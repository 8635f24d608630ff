"""Widgets several pages share: a section heading and a sortable table set up the same way
everywhere. (Plots live in app/views/plot.py, so pyqtgraph loads only with the pages that draw.)"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableView,
    QTableWidget,
    QWidget,
)

from app.views.models import SortProxy


class Table(QTableView):
    """A table that says why it is empty (a grey sentence in the middle) instead of showing nothing."""

    def __init__(self, empty_text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.empty_text = empty_text

    def set_empty_text(self, text: str) -> None:
        if text != self.empty_text:
            self.empty_text = text
            self.viewport().update()

    def paintEvent(self, ev: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(ev)
        _paint_empty(self, self.empty_text)


def _paint_empty(view: QTableView, text: str) -> None:
    model = view.model()
    if text and model is not None and model.rowCount() == 0:
        p = QPainter(view.viewport())
        p.setPen(view.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        r = view.viewport().rect().adjusted(24, 12, -24, -12)
        p.drawText(r, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), text)


class ItemTable(QTableWidget):
    """``Table``'s grey sentence when empty, for a QTableWidget (rows set item by item)."""

    def __init__(self, rows: int, columns: int, empty_text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(rows, columns, parent)
        self.empty_text = empty_text

    def paintEvent(self, ev: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(ev)
        _paint_empty(self, self.empty_text)


def make_table(model: Any, *, sortable: bool = True, sort_column: int = 0,
               order: Qt.SortOrder = Qt.SortOrder.DescendingOrder, empty: str = "") -> tuple[Table, SortProxy]:
    proxy = SortProxy()
    proxy.setSourceModel(model)
    view = Table(empty)
    view.setModel(proxy)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.setShowGrid(False)
    view.setWordWrap(False)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 10)
    view.horizontalHeader().setHighlightSections(False)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.horizontalHeader().setStretchLastSection(False)
    view.setTabKeyNavigation(False)
    for c in model.hidden_columns():
        view.hideColumn(c)
    if sortable:
        view.setSortingEnabled(True)
        view.sortByColumn(sort_column, order)
    return view, proxy


class SectionLabel(QLabel):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        f = self.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.05)
        self.setFont(f)


class ElidedLabel(SectionLabel):
    """A heading that never widens its layout: a long text ends in "…" and the whole of it is
    the tooltip (a long session title must not move the splits or push columns away)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text if self.fontMetrics().horizontalAdvance(text) > max(1, self.width()) else "")

    def full_text(self) -> str:
        return super().text()

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(super().text(), Qt.TextElideMode.ElideRight, self.width())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(40, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(40, super().minimumSizeHint().height())

    def resizeEvent(self, ev: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(ev)
        text = super().text()
        self.setToolTip(text if self.fontMetrics().horizontalAdvance(text) > self.width() else "")

    def paintEvent(self, _ev: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setFont(self.font())
        p.setPen(self.palette().color(self.foregroundRole()))
        p.drawText(self.rect(), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), self.shown_text())


SORT_ARROW_PX = 22  # room for the header's sort indicator beside its text


def fit_columns(view: QTableView, samples: dict[int, str]) -> None:
    """Column widths from the font in use, not fixed pixels: wide enough for the header's text and
    its sort arrow side by side, and for a typical value (``samples``: column -> the widest
    value it usually shows)."""
    fm = view.fontMetrics()
    hfm = view.horizontalHeader().fontMetrics()
    model = view.model()
    for col, sample in samples.items():
        header = str(model.headerData(col, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole) or "")
        view.setColumnWidth(col, max(hfm.horizontalAdvance(header) + SORT_ARROW_PX + 12,
                                     fm.horizontalAdvance(sample) + 16))


class ColumnFitter(QObject):
    """Keeps a table's important columns whole in a narrow window: when the visible columns no longer
    fit beside ``min_stretch`` pixels for the stretching one, the columns in ``expendable`` are hidden
    (first ones first) and shown again when there is room. Their values stay in tooltips and pages."""

    def __init__(self, view: QTableView, stretch: int, expendable: list[int], min_stretch: int = 140) -> None:
        super().__init__(view)
        self.view = view
        self.stretch = stretch
        self.expendable = expendable
        self.min_stretch = min_stretch
        self.hidden: set[int] = set()
        self.remember_widths()
        view.viewport().installEventFilter(self)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802
        if ev.type() == QEvent.Type.Resize:
            self.apply()
        return False

    def apply(self) -> None:
        view, header = self.view, self.view.horizontalHeader()
        avail = view.viewport().width()
        cols = [c for c in range(header.count()) if c != self.stretch
                and (not view.isColumnHidden(c) or c in self.hidden)]
        hide: set[int] = set()
        for c in [None, *self.expendable]:
            if c is not None:
                hide.add(c)
            need = sum(header.sectionSize(x) if not view.isColumnHidden(x) else self._width(x)
                       for x in cols if x not in hide) + self.min_stretch
            if need <= avail:
                break
        for c in self.expendable:
            if (c in hide) != (c in self.hidden):
                view.setColumnHidden(c, c in hide)
        self.hidden = hide

    def _width(self, col: int) -> int:
        return self._widths.get(col, 80)

    def remember_widths(self) -> None:
        header = self.view.horizontalHeader()
        self._widths = {c: header.sectionSize(c) for c in range(header.count())}

    _widths: dict[int, int] = {}
