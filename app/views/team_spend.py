"""The Team page's chart: spend per day over the last 30 days, stacked by user or by group (a
toggle), the most expensive on their own and the rest as "others". Hovering a day shows its
numbers; the legend names every series with its total."""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QCursor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolTip, QVBoxLayout, QWidget

from app.bridge.data_team import TeamSeriesView, TeamSpendView
from app.units import plural
from app.views.axes import MoneyAxis, nice_top
from app.views.colors import assign_colors
from app.views.plot import Plot
from app.views.theme import fmt_usd, usd_tip
from app.views.widgets import SectionLabel

DAY = 86400.0
OTHERS_COLOR = "#9a9a9a"
LEGEND_CHARS = 34  # a longer e-mail is cut in its middle in the legend (the tooltip has it whole)
EMPTY = "No team requests yet"


def series_name(s: TeamSeriesView, by: str) -> str:
    if s.others:
        return f"{s.others} other {'users' if by == 'user' else 'groups'}"
    if s.key == "-":
        return "no user recorded" if by == "user" else "in no group"
    return s.key


def elide_middle(text: str, limit: int = LEGEND_CHARS) -> str:
    """"alexandra.konstantinopoulou@…example.com": the start and the domain stay readable."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    head = keep - keep // 2
    return text[:head] + "…" + text[len(text) - keep // 2:]


def colors_for(view: TeamSpendView) -> dict[str, QColor]:
    """Series key -> colour: the same person keeps their colour from one refresh to the next
    (colours follow the names, not the ranking); "others" is grey."""
    named = assign_colors(s.key for s in view.series if not s.others)
    return {s.key: QColor(OTHERS_COLOR if s.others else named[s.key]) for s in view.series}


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class TeamSpendChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.by_user: TeamSpendView | None = None
        self.by_group: TeamSpendView | None = None
        self.by = QComboBox()
        self.by.setAccessibleName("Spend by")
        self.by.addItem("By user", "user")
        self.by.addItem("By group", "group")
        self.by.currentIndexChanged.connect(lambda _i: self.redraw())
        self.totals = QLabel()
        self.plot = Plot(axes={"left": MoneyAxis("left")})
        self.plot.setMinimumHeight(140)
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setMinimumWidth(100)
        self.empty = pg.TextItem(EMPTY, anchor=(0.5, 0.5), color="#888888")
        self.hover_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((128, 128, 128, 120), width=1))
        self.plot.addItem(self.hover_line, ignoreBounds=True)
        self.hover_line.hide()
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self._bars: list[pg.GraphicsObject] = []

        bar = QHBoxLayout()
        bar.addWidget(SectionLabel("Spend per day, last 30 days"))
        bar.addWidget(self.totals, 1)
        bar.addWidget(self.by)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.legend)

    def current(self) -> TeamSpendView | None:
        return self.by_user if self.by.currentData() == "user" else self.by_group

    def set_data(self, by_user: TeamSpendView | None, by_group: TeamSpendView | None) -> None:
        if (by_user, by_group) == (self.by_user, self.by_group):
            return  # the 15 s refresh found nothing new: no redraw, no flicker
        self.by_user, self.by_group = by_user, by_group
        self.redraw()

    def redraw(self) -> None:
        for item in self._bars:
            self.plot.removeItem(item)
        self._bars = []
        view = self.current()
        if view is None:
            self.totals.setText("")
            self.legend.setText("")
            return
        days = list(view.days)
        centers = [d + DAY / 2 for d in days]
        colors = colors_for(view)
        base = [0.0] * len(days)
        legend = []
        for s in view.series:
            color = colors[s.key]
            item = pg.BarGraphItem(x=centers, height=list(s.costs), width=DAY * 0.8, y0=list(base),
                                   brush=pg.mkBrush(color), pen=pg.mkPen(color.darker(115), width=0.5))
            self.plot.addItem(item)
            self._bars.append(item)
            base = [b + c for b, c in zip(base, s.costs, strict=True)]
            name = series_name(s, view.by)
            legend.append(f"<span style='color:{color.name()}'>■</span>&nbsp;{_esc(elide_middle(name))}"
                          f"&nbsp;{fmt_usd(s.total_usd)}")
        self.legend.setText("&nbsp;&nbsp; ".join(legend))
        self.legend.setToolTip("\n".join(f"{series_name(s, view.by)}: {usd_tip(s.total_usd)}, "
                                         f"{plural(s.requests, 'request')}" for s in view.series))
        if days:
            self.plot.setXRange(days[0], days[-1] + DAY, padding=0.01)
        self.plot.getPlotItem().getAxis("left").setStyle(showValues=bool(view.series))  # no "$0.0075" for nothing
        top = max(base, default=0.0)
        self.plot.setYRange(0, nice_top(top) if top > 0 else 0.01, padding=0)
        if not view.series:
            self.totals.setText("")
            if days:
                self.empty.setPos((days[0] + days[-1] + DAY) / 2, 0.005)
            self.plot.addItem(self.empty)
            self._bars.append(self.empty)
        else:
            self.totals.setText(f"  {fmt_usd(view.total_usd)} over {plural(view.requests, 'request')}")
        if view.by == "group" and view.series:
            self.legend.setText(self.legend.text() + "&nbsp;&nbsp; <span style='color:#888888'>(a request of "
                                "someone in two groups is in both)</span>")

    def shown(self) -> dict[str, float]:
        """What the chart draws now: series name -> dollars over the 30 days (for the tests)."""
        view = self.current()
        return {series_name(s, view.by): s.total_usd for s in view.series} if view is not None else {}

    def _hover(self, pos: QPointF) -> None:
        view = self.current()
        if view is None or not view.series or not self.plot.sceneBoundingRect().contains(pos):
            return
        x = self.plot.getPlotItem().vb.mapSceneToView(pos).x()
        for i, d in enumerate(view.days):
            if d <= x < d + DAY:
                lines = [f"<b>{time.strftime('%a %d %b', time.localtime(d))}</b>"]
                total = 0.0
                for s in sorted(view.series, key=lambda s: -s.costs[i]):
                    if s.costs[i]:
                        lines.append(f"{_esc(series_name(s, view.by))}: {usd_tip(s.costs[i])}")
                        total += s.costs[i]
                lines.append(f"total {usd_tip(total)}")
                self.hover_line.setPos(d + DAY / 2)
                self.hover_line.show()
                QToolTip.showText(QCursor.pos(), "<br>".join(lines), self.plot)
                return
        self.hover_line.hide()
        QToolTip.hideText()
