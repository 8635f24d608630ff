"""Widgets several pages share: a section heading and a sortable table set up the same way
everywhere. (Plots live in app/views/plot.py, so pyqtgraph loads only with the pages that draw.)"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView, QWidget

from app.views.models import SortProxy


def make_table(model: Any, *, sortable: bool = True, sort_column: int = 0,
               order: Qt.SortOrder = Qt.SortOrder.DescendingOrder) -> tuple[QTableView, SortProxy]:
    proxy = SortProxy()
    proxy.setSourceModel(model)
    view = QTableView()
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
