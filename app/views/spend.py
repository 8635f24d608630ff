"""Spend: cost over time stacked by backend or model, tokens per minute, budget bars with their
warn line, and the top sessions. Hovering a plot shows the exact values."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtGui import QColor, QCursor, QHideEvent, QPalette, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data import BudgetView, RequestRecord, SpendData
from app.units import plural
from app.views.axes import MoneyAxis, PercentAxis, TokenAxis, nice_top
from app.views.csv_export import ask_and_export
from app.views.icons import backend_color
from app.views.models import TopSessionsModel
from app.views.plot import Plot
from app.views.theme import STATE_COLORS, fmt_tokens, fmt_usd, series_color, usd_tip
from app.views.widgets import ColumnFitter, SectionLabel, fit_columns, make_table

if TYPE_CHECKING:
    from app.bridge.usage import Usage

MAX_KEYS = 8
BUCKETS = (("hour", "Last 24 hours, by hour"), ("day", "Last 30 days, by day"), ("month", "Last 12 months, by month"))
GROUPS = (("backend", "Stack by backend"), ("model", "Stack by model"))


def stack(data: SpendData) -> tuple[list[float], list[tuple[str, list[float]]]]:
    """Buckets (sorted starts) and, per key (largest first, the rest folded into "other"), the cost
    in each bucket. Pure, so the tests can check what the plot shows."""
    starts = sorted({p.bucket_start for p in data.series})
    pos = {s: i for i, s in enumerate(starts)}
    totals: dict[str, float] = {}
    for p in data.series:
        totals[p.key] = totals.get(p.key, 0.0) + p.cost_usd
    keys = sorted(totals, key=lambda k: (-totals[k], k))
    shown = keys[:MAX_KEYS] if len(keys) <= MAX_KEYS else keys[: MAX_KEYS - 1]
    rows: dict[str, list[float]] = {k: [0.0] * len(starts) for k in shown}
    if len(keys) > len(shown):
        rows["other"] = [0.0] * len(starts)
    for p in data.series:
        k = p.key if p.key in rows else "other"
        rows[k][pos[p.bucket_start]] += p.cost_usd
    return starts, list(rows.items())


def _key_color(key: str, i: int, group_by: str) -> QColor:
    if group_by == "backend":
        return backend_color(key)
    return series_color(i)


class SpendPage(QWidget):
    def __init__(self, usage: Usage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.usage = usage
        self.data: SpendData | None = None
        self.stacked: tuple[list[float], list[tuple[str, list[float]]]] = ([], [])

        self.bucket = QComboBox()
        self.bucket.setAccessibleName("Time range")
        for k, label in BUCKETS:
            self.bucket.addItem(label, k)
        self.group = QComboBox()
        self.group.setAccessibleName("Stacking")
        for k, label in GROUPS:
            self.group.addItem(label, k)
        self.bucket.currentIndexChanged.connect(self.reload)
        self.group.currentIndexChanged.connect(self.reload)
        self.totals = QLabel()
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.cost_plot = Plot(axes={"left": MoneyAxis("left")})
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setMinimumWidth(100)
        self.empty = pg.TextItem("No requests in this period yet", anchor=(0.5, 0.5))
        self.hover_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((128, 128, 128, 120), width=1))
        self.cost_plot.addItem(self.hover_line, ignoreBounds=True)
        self.hover_line.hide()
        self.cost_plot.scene().sigMouseMoved.connect(self._hover_cost)

        self.tpm_plot = Plot(axes={"left": TokenAxis("left"), "right": TokenAxis("right")})
        self.tpm_plot.setLabel("left", "input / min")
        self.tpm_in = self.tpm_plot.plot([], [], pen=pg.mkPen(series_color(0), width=1.5),
                                         fillLevel=0, brush=pg.mkBrush(78, 121, 167, 50), name="input")
        # output tokens are a few % of input (cache reads): they get their own axis on the right
        pi = self.tpm_plot.getPlotItem()
        self.tpm_vb2 = pg.ViewBox()
        pi.showAxis("right")
        pi.scene().addItem(self.tpm_vb2)
        pi.getAxis("right").linkToView(self.tpm_vb2)
        pi.getAxis("right").setLabel("output / min")
        self.tpm_vb2.setXLink(pi)
        self.tpm_vb2.setMouseEnabled(x=False, y=False)
        self.tpm_out = pg.PlotCurveItem([], [], pen=pg.mkPen(series_color(1), width=2))
        self.tpm_vb2.addItem(self.tpm_out)
        pi.vb.sigResized.connect(self._sync_tpm_views)
        self.tpm_plot.apply_palette()
        self.tpm_plot.scene().sigMouseMoved.connect(self._hover_tpm)

        self.budget_plot = Plot(date_axis=False, axes={"bottom": PercentAxis("bottom", fraction=True)})
        self.budget_plot.setLabel("bottom", "spent, as a share of the limit")
        self.budget_plot.getPlotItem().getAxis("left").setStyle(showValues=False)
        self.budget_plot.setMinimumHeight(120)
        self.budget_plot.scene().sigMouseMoved.connect(self._hover_budget)
        self.budget_text = QLabel()
        self.budget_text.setWordWrap(True)
        self.budget_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.top_model = TopSessionsModel(self)
        self.top_view, _ = make_table(self.top_model, sort_column=4, empty="No sessions in this period.")
        self.top_view.setAccessibleName("Top sessions")
        th = self.top_view.horizontalHeader()
        th.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        th.setMinimumSectionSize(40)
        fit_columns(self.top_view, {0: "webshop-api", 2: "120", 3: "3.4M", 4: "$12.30", 5: "33 min ago"})
        self.top_fit = ColumnFitter(self.top_view, 1, [5, 2], min_stretch=70)  # Last, Requests

        bar = QHBoxLayout()
        bar.addWidget(SectionLabel("Spend"))
        bar.addWidget(self.totals, 1)
        bar.addWidget(self.bucket)
        bar.addWidget(self.group)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the spend shown (per bucket and backend or model) as a CSV file")
        self.export_button.clicked.connect(self._ask_export)
        bar.addWidget(self.export_button)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Cost over time"))
        ll.addWidget(self.cost_plot, 3)
        ll.addWidget(self.legend)
        tpm_title = QLabel("Tokens per minute, last 3 hours: <span style='color:#4e79a7'>■</span> input "
                           "with cache (left axis) <span style='color:#f28e2b'>■</span> output (right axis)")
        tpm_title.setWordWrap(True)  # never wider than the plot below it
        ll.addWidget(tpm_title)
        ll.addWidget(self.tpm_plot, 2)
        right = QWidget()
        rl = QGridLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("Budgets"), 0, 0)
        rl.addWidget(self.budget_plot, 1, 0)
        rl.addWidget(self.budget_text, 2, 0)
        rl.addWidget(QLabel("Top sessions"), 3, 0)
        rl.addWidget(self.top_view, 4, 0)
        rl.setRowStretch(1, 2)
        rl.setRowStretch(4, 3)
        left.setMinimumWidth(300)
        right.setMinimumWidth(280)  # the budget bars' labels and the top sessions stay readable
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        self.splitter = split
        self._user_split = False
        split.splitterMoved.connect(lambda *_: setattr(self, "_user_split", True))
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(split, 1)

        self._bars: list[Any] = []
        self._budget_items: list[Any] = []
        self._budgets: list[BudgetView] = []
        self._debounce = QTimer(self)  # after a request finishes: let the ledger write it, then read
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(1500)
        self._debounce.timeout.connect(self.reload)
        self._periodic = QTimer(self)
        self._periodic.setInterval(30_000)
        self._periodic.timeout.connect(self.reload)
        self.live = False  # follow new requests even while hidden (tests, screenshots)
        usage.spendReady.connect(self.show_data)
        usage.requestFinished.connect(self._on_finished)
        usage.budgetsChanged.connect(self._on_budgets)

    # ------------------------------------------------------------ loading

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if not self._user_split:  # the split follows the page's width (3:2), not what the halves show
            w = max(2, event.size().width() - 20)
            self.splitter.setSizes([w * 3 // 5, w - w * 3 // 5])

    def showEvent(self, event: QShowEvent) -> None:
        self.reload()
        self._periodic.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self._periodic.stop()
        super().hideEvent(event)

    def reload(self) -> None:
        self.usage.load_spend(self.bucket.currentData(), self.group.currentData())

    def _on_finished(self, rec: RequestRecord) -> None:
        if (self.isVisible() or self.live) and not self._debounce.isActive():
            self._debounce.start()

    def _on_budgets(self, budgets: list[BudgetView]) -> None:
        self._budgets = budgets
        self._draw_budgets(budgets)

    # ------------------------------------------------------------ drawing

    def show_data(self, data: SpendData) -> None:
        if data.bucket != self.bucket.currentData() or data.group_by != self.group.currentData():
            return  # an answer to an older question
        self.data = data
        self.stacked = stack(data)
        self._draw_cost(data)
        self._draw_tpm(data)
        self._budgets = list(data.budgets)
        self._draw_budgets(self._budgets)
        self.top_model.set_rows(list(data.top_sessions))
        unpriced = f" · {data.unpriced_requests} without a known price" if data.unpriced_requests else ""
        plan = (f" · {fmt_usd(data.api_equiv_usd)} API-equiv. paid by the Claude plan ({plural(data.plan_requests, 'request')}, "
                "not spent)") if data.plan_requests else ""
        self.totals.setText(f"  {fmt_usd(data.total_cost)} over {plural(data.total_requests, 'request')}{unpriced}{plan}")

    def _draw_cost(self, data: SpendData) -> None:
        plot = self.cost_plot
        for item in self._bars:
            plot.removeItem(item)
        self._bars = []
        starts, rows = self.stacked
        width = data.bucket_seconds * 0.8
        base = [0.0] * len(starts)
        legend = []
        centers = [s + data.bucket_seconds / 2 for s in starts]
        for i, (key, values) in enumerate(rows):
            color = _key_color(key, i, data.group_by) if key != "other" else QColor("#9a9a9a")
            item = pg.BarGraphItem(x=centers, height=values, width=width, y0=list(base),
                                   brush=pg.mkBrush(color), pen=pg.mkPen(color.darker(115), width=0.5))
            plot.addItem(item)
            self._bars.append(item)
            base = [b + v for b, v in zip(base, values, strict=True)]
            legend.append(f"<span style='color:{color.name()}'>■</span>&nbsp;{_esc(key)} "
                          f"{fmt_usd(sum(values))}")
        self.legend.setText("&nbsp;&nbsp; ".join(legend))
        # to the end of the current bucket: its bar (the one still filling) is drawn whole, not cut in half
        end = max([data.until] + [s + data.bucket_seconds for s in starts])
        plot.setXRange(data.since, end, padding=0.01)
        top = max(base) if base else 0.0
        plot.setYRange(0, nice_top(top) if top > 0 else 0.01, padding=0)
        if not starts:
            self.empty.setPos((data.since + data.until) / 2, 0.005)
            if self.empty.scene() is None:
                plot.addItem(self.empty)
            self._bars.append(self.empty)

    def _draw_tpm(self, data: SpendData) -> None:
        xs = [t + 30 for t, _, _ in data.tokens_per_minute]
        ins = [float(i) for _, i, _ in data.tokens_per_minute]
        outs = [float(o) for _, _, o in data.tokens_per_minute]
        self.tpm_in.setData(xs, ins)
        self.tpm_out.setData(xs, outs)
        self.tpm_plot.setXRange(data.until - 3 * 3600, data.until, padding=0.01)
        self.tpm_plot.setYRange(0, nice_top(max(ins, default=0.0), minimum=10.0), padding=0)
        self.tpm_vb2.setYRange(0, nice_top(max(outs, default=0.0), minimum=10.0), padding=0)
        self._sync_tpm_views()

    def _sync_tpm_views(self) -> None:
        vb = self.tpm_plot.getPlotItem().vb
        self.tpm_vb2.setGeometry(vb.sceneBoundingRect())
        self.tpm_vb2.linkedViewChanged(vb, self.tpm_vb2.XAxis)

    def _draw_budgets(self, budgets: list[BudgetView]) -> None:
        plot = self.budget_plot
        for item in self._budget_items:
            plot.removeItem(item)
        self._budget_items = []
        if not budgets:
            self.budget_text.setText("No budgets set. Add one in Settings to be warned before you overspend.")
            plot.hide()
            return
        plot.show()
        lines = []
        n = len(budgets)
        for i, b in enumerate(budgets):
            y = n - 1 - i
            color = QColor(STATE_COLORS["error"] if b.state == "limit" else STATE_COLORS["warn"]
                           if b.state == "warn" else STATE_COLORS["ok"])
            frac = min(b.fraction, 1.25)
            track = pg.BarGraphItem(x0=[0], y=[y], width=[1.0], height=0.55, brush=pg.mkBrush(128, 128, 128, 40),
                                    pen=pg.mkPen(None))
            bar = pg.BarGraphItem(x0=[0], y=[y], width=[max(frac, 0.002)], height=0.55, brush=pg.mkBrush(color),
                                  pen=pg.mkPen(None))
            warn = pg.PlotDataItem([b.warn_at, b.warn_at], [y - 0.38, y + 0.38],
                                   pen=pg.mkPen(STATE_COLORS["warn"], width=2, style=Qt.PenStyle.DashLine))
            label = pg.TextItem(f"{b.label}  {fmt_usd(b.spent_usd)} / {fmt_usd(b.limit_usd)}",
                                color=self.palette().color(QPalette.ColorRole.Text), anchor=(0, 1))
            label.setPos(0, y + 0.3 + 0.0)
            for it in (track, bar, warn, label):
                plot.addItem(it)
                self._budget_items.append(it)
            resets = (time.strftime(" · resets %a %H:%M", time.localtime(b.resets_at)) if b.resets_at else "")
            lines.append(f"<b>{_esc(b.label)}</b>: {fmt_usd(b.spent_usd)} of {fmt_usd(b.limit_usd)} "
                         f"({b.fraction:.0%}; warns at {b.warn_at:.0%}, then {_esc(action_words(b.action))}){resets}")
        limit = pg.InfiniteLine(pos=1.0, angle=90, pen=pg.mkPen(STATE_COLORS["error"], width=1))
        plot.addItem(limit)
        self._budget_items.append(limit)
        plot.setXRange(0, 1.25, padding=0)
        plot.setYRange(-0.6, n - 0.1 + 0.3, padding=0)
        self.budget_text.setText("<br>".join(lines))

    # ------------------------------------------------------------ hover

    def _hover_cost(self, pos: QPointF) -> None:
        data = self.data
        vb = self.cost_plot.getPlotItem().vb
        if data is None or not self.cost_plot.sceneBoundingRect().contains(pos):
            return
        x = vb.mapSceneToView(pos).x()
        starts, rows = self.stacked
        for i, s in enumerate(starts):
            if s <= x < s + data.bucket_seconds:
                fmt = {"hour": "%a %H:00", "day": "%a %b %d", "month": "%B %Y"}[data.bucket]
                lines = [f"<b>{time.strftime(fmt, time.localtime(s))}</b>"]
                total = 0.0
                for key, values in rows:
                    if values[i]:
                        lines.append(f"{_esc(key)}: {usd_tip(values[i])}")
                        total += values[i]
                reqs = sum(p.requests for p in data.series if p.bucket_start == s)
                toks = sum(p.tokens for p in data.series if p.bucket_start == s)
                lines.append(f"total {usd_tip(total)} · {reqs} request{'' if reqs == 1 else 's'} · "
                             f"{fmt_tokens(toks)} tokens")
                self.hover_line.setPos(s + data.bucket_seconds / 2)
                self.hover_line.show()
                QToolTip.showText(QCursor.pos(), "<br>".join(lines), self.cost_plot)
                return
        self.hover_line.hide()
        QToolTip.hideText()

    def _hover_tpm(self, pos: QPointF) -> None:
        data = self.data
        if data is None or not data.tokens_per_minute:
            return
        x = self.tpm_plot.getPlotItem().vb.mapSceneToView(pos).x()
        best = min(data.tokens_per_minute, key=lambda p: abs(p[0] + 30 - x))
        if abs(best[0] + 30 - x) <= 90:
            QToolTip.showText(QCursor.pos(), f"{time.strftime('%H:%M', time.localtime(best[0]))}: "
                              f"{best[1]:,} input · {best[2]:,} output tokens", self.tpm_plot)

    def _hover_budget(self, pos: QPointF) -> None:
        budgets = self._budgets
        if not budgets:
            return
        y = self.budget_plot.getPlotItem().vb.mapSceneToView(pos).y()
        i = len(budgets) - 1 - round(y)
        if 0 <= i < len(budgets):
            b = budgets[i]
            QToolTip.showText(QCursor.pos(), f"{b.label}: {usd_tip(b.spent_usd)} of {usd_tip(b.limit_usd)} "
                              f"({b.fraction:.1%}); warns at {b.warn_at:.0%}", self.budget_plot)

    # ------------------------------------------------------------ for tests

    def plot_series(self) -> dict[str, list[tuple[float, float]]]:
        """What the cost plot draws: per key, (bucket start, cost) for the buckets that had requests."""
        starts, rows = self.stacked
        data = self.data
        present = {(p.key, p.bucket_start) for p in data.series} if data else set()
        out: dict[str, list[tuple[float, float]]] = {}
        for k, vals in rows:
            pts = [(s, v) for s, v in zip(starts, vals, strict=True) if v or (k, s) in present]
            if pts:
                out[k] = pts
        return out


    # ------------------------------------------------------------ export

    def export_csv(self, path: str) -> bool:
        """False when nothing is loaded yet."""
        from app.bridge.export import save, spend_csv

        if self.data is None:
            return False
        save(path, spend_csv(self.data))
        return True

    def _ask_export(self) -> None:
        ask_and_export(self, "Export spend", "patchbay-spend.csv", self.export_csv)


def action_words(action: str) -> str:
    if action == "block":
        return "blocks requests"
    if action == "warn":
        return "only warns"
    if action.startswith("downgrade:"):
        target, _, model = action[len("downgrade:"):].partition(",")
        return f"switches to {target}" + (f" · {model}" if model else "")
    return action


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
