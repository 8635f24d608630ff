"""The plot every graph uses: a pyqtgraph PlotWidget coloured from the palette."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QWidget

pg.setConfigOptions(antialias=True, useOpenGL=False)


class Plot(pg.PlotWidget):
    """A PlotWidget coloured from the palette, redrawn when the palette changes."""

    def __init__(self, date_axis: bool = True, parent: QWidget | None = None,
                 axes: dict[str, pg.AxisItem] | None = None) -> None:
        axis = {"bottom": pg.DateAxisItem(orientation="bottom")} if date_axis else {}
        axis.update(axes or {})
        super().__init__(parent=parent, axisItems=axis)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMinimumHeight(150)
        self.showGrid(x=False, y=True, alpha=0.15)
        self.getPlotItem().layout.setContentsMargins(12, 9, 12, 2)  # room for the axes' end labels ($0, 100 %)
        self.apply_palette()

    def apply_palette(self) -> None:
        if getattr(self, "plotItem", None) is None:  # still inside pyqtgraph's constructor
            return
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        for name in ("left", "bottom", "right"):
            ax = self.getPlotItem().getAxis(name)
            ax.setPen(pg.mkPen(fg))
            ax.setTextPen(pg.mkPen(fg))

    def changeEvent(self, ev: QEvent) -> None:
        if ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.apply_palette()
        super().changeEvent(ev)
