"""Monitor: the machine (GPU, VRAM, CPU, RAM) and the gateway's local tokens/s over the last ten
minutes, and the local Ollama's models with Pull, Unload and Remove.

The plots keep absolute times on the x axis and slide their window along with the clock while the
page is visible, one pixel's worth of time at a step (a 600 s window on a 350-pixel plot moves
less than a pixel a second), so the curves scroll smoothly without repainting more often than the
eye can see: each repaint redraws the axes, which is what costs CPU. A reading the machine does
not have (no GPU) is said in words, never drawn as zero.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.bridge.data_host import HardwareView, LocalModelView, OllamaView, PullView
from app.units import fmt_bytes
from app.views.axes import left_axis_for
from app.views.models import Column, R, RowsModel, key_of
from app.views.plot import Plot
from app.views.theme import STATE_COLORS, fmt_ago, series_color
from app.views.widgets import ColumnFitter, SectionLabel, fit_columns, make_table

if TYPE_CHECKING:
    from app.bridge.monitor import Monitor

SPAN_S = 600.0
GIB = 1024**3  # memory the way the OS and the GPU tools count it (a "24 GB" card is 24 GiB)
SCROLL_MIN_MS = 100  # the fastest the window slides (a very wide plot)
MIN_CONTEXT = 65536
_WARN = QColor(STATE_COLORS["warn"])
_OK = QColor(STATE_COLORS["ok"])


def fmt_ctx(n: int | None) -> str:
    if not n:
        return "—"
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def placement(m: LocalModelView) -> str:
    """Where a loaded model sits, the way ``ollama ps`` says it."""
    if not m.loaded or m.vram_share is None:
        return "—"
    gpu = round(m.vram_share * 100)
    if gpu >= 100:
        return "100% GPU"
    if gpu <= 0:
        return "100% CPU"
    return f"{gpu}% GPU / {100 - gpu}% CPU"


def _context_text(m: LocalModelView) -> str:
    if m.loaded and m.context_loaded:
        return f"{fmt_ctx(m.context_loaded)} of {fmt_ctx(m.context_max)}" if m.context_max else fmt_ctx(m.context_loaded)
    return f"max {fmt_ctx(m.context_max)}" if m.context_max else "—"


def _state_text(m: LocalModelView) -> str:
    if not m.loaded:
        return "on disk"
    if m.expires_at:
        left = m.expires_at - time.time()
        return "loaded" + (f", unloads in {left / 60:.0f} min" if left > 90 else ", unloading soon")
    return "loaded"


class LocalModelsModel(RowsModel):
    columns = (
        Column("Model", lambda m: m.name + ("  ⚠" if m.warnings else ""),
                tip=lambda m: "\n\n".join(m.warnings) or ", ".join(m.capabilities) or None,
                color=lambda m: _WARN if m.warnings else None),
        Column("Size", lambda m: fmt_bytes(m.size) if m.installed else "—", lambda m: float(m.size), R,
                tip=lambda m: f"{m.size:,} bytes on disk" + (f"; {fmt_bytes(m.memory)} in memory" if m.memory else "")),
        Column("Params", lambda m: m.parameter_size or "—", tip=lambda m: m.family),
        Column("Quantisation", lambda m: m.quantization or "—"),
        Column("Context", _context_text, lambda m: float(m.context_loaded or m.context_max or 0), R,
                tip=lambda m: "loaded with / trained for" if m.loaded else "trained for (Ollama loads it with less "
                "unless OLLAMA_CONTEXT_LENGTH or num_ctx says otherwise)",
                color=lambda m: _WARN if m.loaded and m.context_loaded and m.context_loaded < MIN_CONTEXT else None),
        Column("State", _state_text, lambda m: 1.0 if m.loaded else 0.0,
                color=lambda m: _OK if m.loaded else None),
        Column("VRAM share", placement, lambda m: -1.0 if m.vram_share is None else float(m.vram_share), R,
                tip=lambda m: f"{fmt_bytes(m.memory)} in memory" if m.memory else None,
                color=lambda m: _WARN if m.loaded and m.vram_share is not None and m.vram_share < 0.995 else None),
        Column("Last used", lambda m: fmt_ago(m.last_used), lambda m: float(m.last_used or 0.0), R,
                tip=lambda m: "the last request a local backend served with it" if m.last_used else
                "not used through Patchbay since it started"),
    )

    def key(self, row: LocalModelView) -> str:
        return row.name


class _FitsViewport(QWidget):
    """The page inside its scroll area: as tall as the window when it fits there (the plots share
    the height), taller (and scrolled) only below the minimum. Without this, the word-wrapped
    labels would make the scroll area size the page to the plots' preferred height."""

    MIN_HEIGHT = 580  # below this the page scrolls

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return False

    def heightForWidth(self, _w: int) -> int:  # noqa: N802 - QScrollArea asks this of a layout with word wrap
        return self.MIN_HEIGHT

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(0, self.MIN_HEIGHT)  # never wider than the window: the rows squeeze, nothing scrolls sideways

    def sizeHint(self) -> QSize:  # noqa: N802
        return self.minimumSizeHint()


class _Series:
    """One time-series plot: a curve over absolute time, a title, and a note when the data is absent."""

    def __init__(self, title: str, unit: str, color: int, *, y_max: float | None = None) -> None:
        self.plot = Plot(axes=left_axis_for(unit))
        self.plot.setMinimumHeight(120)
        self.plot.showGrid(x=False, y=False)
        self.plot.setLabel("left", unit)
        self.plot.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        c = series_color(color)
        # no fill, no antialiasing, at most one point per pixel: redrawn ten times a second, a
        # filled antialiased 600-point path cost most of a core under software rendering
        self.curve = self.plot.plot([], [], pen=pg.mkPen(c, width=1.5), antialias=False)
        self.curve.setDownsampling(auto=True, method="peak")
        self.curve.setClipToView(True)
        self.title = QLabel(title)
        self.value = QLabel("—")
        self.value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.y_max = y_max
        self._top: float | None = None
        self.note = pg.TextItem("", anchor=(0.5, 0.5), color=(128, 128, 128))
        self.plot.addItem(self.note, ignoreBounds=True)
        self.absent = False
        self.widget = QWidget()
        lay = QVBoxLayout(self.widget)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addWidget(self.value, 1)
        lay.addLayout(head)
        lay.addWidget(self.plot, 1)

    def set_absent(self, text: str | None) -> None:
        if (text is not None) == self.absent and (text or "") == self.note.toPlainText():
            return  # unchanged: touching the item would repaint the plot
        self.absent = text is not None
        self.note.setText(text or "")
        self.note.setVisible(self.absent)
        for name in ("left", "bottom"):  # no axes drawn under "No GPU found": nothing is measured
            self.plot.getPlotItem().showAxis(name, not self.absent)
        if self.absent:
            self.curve.setData([], [])
            self.value.setText("—")

    def set_data(self, xs: list[float], ys: list[float], top: float | None = None) -> None:
        self.curve.setData(xs, ys)
        limit = top if top is not None else self.y_max
        if limit is None:
            limit = max(ys + [1.0]) * 1.2
        if limit != self._top:
            self._top = limit
            self.plot.setYRange(0, limit, padding=0)

    def scroll(self, now: float) -> None:
        self.plot.setXRange(now - SPAN_S, now, padding=0)
        if self.absent:
            vb = self.plot.getPlotItem().vb
            (x0, x1), (y0, y1) = vb.viewRange()
            self.note.setPos((x0 + x1) / 2, (y0 + y1) / 2)


class MonitorPage(QWidget):
    def __init__(self, monitor: Monitor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor = monitor
        self.history: collections.deque[HardwareView] = collections.deque(monitor.hardware_history(), maxlen=600)
        self.pull_state: PullView | None = None

        self.hw_label = QLabel()
        self.hw_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.gpu = _Series("GPU utilisation", "%", 0, y_max=100)
        self.vram = _Series("GPU memory", "GiB", 1)
        self.cpu = _Series("CPU (all cores)", "%", 2, y_max=100)
        self.ram = _Series("RAM", "GiB", 4)
        self.tps = _Series("Local tokens/s", "tok/s", 6)
        self.tps.title.setToolTip("Tokens a second of the requests served by local backends")
        grid = QGridLayout()
        grid.setSpacing(10)
        grid.addWidget(self.gpu.widget, 0, 0)
        grid.addWidget(self.vram.widget, 0, 1)
        grid.addWidget(self.tps.widget, 0, 2)
        grid.addWidget(self.cpu.widget, 1, 0)
        grid.addWidget(self.ram.widget, 1, 1)
        grid.addWidget(self.hw_label, 1, 2, Qt.AlignmentFlag.AlignTop)
        for c in range(3):
            grid.setColumnStretch(c, 1)  # three equal columns, whatever the titles say
        self.series = (self.gpu, self.vram, self.cpu, self.ram, self.tps)

        self.ollama_label = QLabel()
        self.ollama_label.setWordWrap(True)
        self.ollama_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings_label = QLabel()
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings_label.hide()
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Ask Ollama again now")
        self.refresh_button.clicked.connect(self.monitor.refresh_ollama)

        self.models = LocalModelsModel(self)
        self.view, self.proxy = make_table(self.models, sort_column=5,
                                            empty="No local models to show: start Ollama, or pull a model with Pull….")
        self.view.setAccessibleName("Local models")
        hh = self.view.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        hh.setMinimumSectionSize(40)
        fit_columns(self.view, {1: "18.6 GB", 2: "30.5B", 3: "Q4_K_M", 4: "64k of 256k", 5: "loaded, unloads in 25 min",
                                6: "35% GPU / 65% CPU", 7: "12 min ago"})
        self.fit = ColumnFitter(self.view, 0, [2, 3, 7, 6], min_stretch=140)  # Params, Quantisation, Last used
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self._sync_buttons())

        self.pull_button = QPushButton("Pull…")
        self.pull_button.setToolTip("Download a model from the Ollama library")
        self.pull_button.clicked.connect(self.ask_pull)
        self.unload_button = QPushButton("Unload")
        self.unload_button.setToolTip("Free the selected model's memory now (it loads again on the next request)")
        self.unload_button.clicked.connect(self.unload_selected)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setToolTip("Delete the selected model from disk")
        self.remove_button.clicked.connect(self.remove_selected)
        self.pull_bar = QProgressBar()
        self.pull_bar.setRange(0, 1000)
        self.pull_bar.setTextVisible(False)
        self.pull_bar.setMaximumWidth(260)
        self.pull_text = QLabel()
        self.pull_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download (finished layers are kept by Ollama)")
        self.cancel_button.clicked.connect(self.cancel_pull)
        self.pull_bar.hide()
        self.cancel_button.hide()

        top = QHBoxLayout()
        top.addWidget(SectionLabel("Monitor"))
        top.addWidget(self.ollama_label, 1)
        top.addWidget(self.refresh_button)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Local models"))
        actions.addWidget(self.pull_button)
        actions.addWidget(self.unload_button)
        actions.addWidget(self.remove_button)
        actions.addSpacing(16)
        actions.addWidget(self.pull_bar)
        actions.addWidget(self.pull_text, 1)
        actions.addWidget(self.cancel_button)
        inner = _FitsViewport()
        lay = QVBoxLayout(inner)
        lay.setSizeConstraint(QVBoxLayout.SizeConstraint.SetNoConstraint)  # the height is the scroll area's call
        lay.addLayout(top)
        lay.addWidget(self.warnings_label)
        lay.addLayout(grid, 3)
        lay.addLayout(actions)
        lay.addWidget(self.view, 2)
        self.view.setMinimumHeight(110)
        for sr in (self.gpu, self.vram, self.cpu, self.ram, self.tps):
            sr.plot.setMinimumHeight(110)
        # a small window scrolls the page instead of squeezing the plots and the model list to slivers
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self._scroll_timer = QTimer(self)
        self._scroll_timer.setInterval(1000)
        self._scroll_timer.timeout.connect(self._scroll)
        monitor.hardwareSampled.connect(self._on_sample)
        monitor.ollamaChanged.connect(self.show_ollama)
        monitor.pullProgress.connect(self.show_pull)
        self.show_ollama(monitor.ollama())
        self._redraw()
        self._sync_buttons()

    # ------------------------------------------------------------ time series

    def showEvent(self, event: Any) -> None:
        self._redraw()
        self._scroll()
        self._scroll_timer.start()
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self._scroll_timer.stop()
        super().hideEvent(event)

    def _on_sample(self, h: HardwareView) -> None:
        self.history.append(h)
        if self.isVisible():  # new data and the slide in one repaint; the timer waits a full step again
            self._redraw()
            self._scroll()
            self._scroll_timer.start()

    def _scroll(self) -> None:
        now = time.time()
        for s in self.series:
            s.scroll(now)
        width = max(1, self.gpu.plot.getPlotItem().vb.width())  # a pixel's worth of time per step
        step = int(max(SCROLL_MIN_MS, 1000.0 * SPAN_S / width))
        if step >= 1000:  # the 1 s samples slide the plots already; the timer only covers a pause in them
            step = 2500
        if step != self._scroll_timer.interval():
            self._scroll_timer.setInterval(step)

    def _redraw(self) -> None:
        hist = list(self.history)
        xs = [h.t for h in hist]
        last = hist[-1] if hist else None
        if last is None:
            for s in (self.gpu, self.vram, self.cpu, self.ram):
                s.set_absent("Waiting for the first sample…")
        else:
            gpu_pts = [(h.t, h.gpu_util) for h in hist if h.gpu_util is not None]
            if last.gpu_util is None and not gpu_pts:
                self.gpu.set_absent("No GPU found on this machine")
            else:
                self.gpu.set_absent(None)
                self.gpu.set_data([t for t, _ in gpu_pts], [float(v) for _, v in gpu_pts])
                self.gpu.value.setText(f"{last.gpu_util:.0f}%" if last.gpu_util is not None else "—")
            mem_pts = [(h.t, h.vram_used) for h in hist if h.vram_used is not None]
            if last.vram_used is None and not mem_pts:
                self.vram.set_absent("No GPU memory to show")
            else:
                self.vram.set_absent(None)
                total = last.vram_total
                self.vram.set_data([t for t, _ in mem_pts], [v / GIB for _, v in mem_pts],
                                   top=(total / GIB) if total else None)
                unified = any(g.unified for g in last.gpus)
                self.vram.title.setText("GPU memory (unified with RAM)" if unified else "GPU memory")
                if last.vram_used is not None:
                    self.vram.value.setText(f"{last.vram_used / GIB:.1f} of {(total or 0) / GIB:.1f} GiB"
                                            if total else f"{last.vram_used / GIB:.1f} GiB")
            self.cpu.set_absent(None)
            self.cpu.set_data(xs, [h.cpu_pct for h in hist])
            self.cpu.value.setText(f"{last.cpu_pct:.0f}%")
            self.ram.set_absent(None)
            self.ram.set_data(xs, [h.ram_used / GIB for h in hist], top=last.ram_total / GIB)
            self.ram.value.setText(f"{last.ram_used / GIB:.1f} of {last.ram_total / GIB:.1f} GiB")
            self.hw_label.setText(self._hardware_text(last))
        txs, tys = self.monitor.local_throughput()
        self.tps.set_data(txs, tys)
        recent = tys[-10:]
        self.tps.value.setText(f"{sum(recent) / len(recent):.0f} tok/s (10 s)" if recent and any(recent) else "idle")

    def _hardware_text(self, h: HardwareView) -> str:
        lines = []
        for g in h.gpus:
            bits = [f"<b>{_esc(g.name)}</b>"]
            if g.temp_c is not None:
                bits.append(f"{g.temp_c:.0f} °C")
            if g.power_w is not None:
                bits.append(f"{g.power_w:.0f} W")
            lines.append(" · ".join(bits))
        if not h.gpus:
            name = self.monitor.hardware_name()  # "no GPU found" itself when there is nothing to add
            lines.append("<b>No GPU found</b>" + (f" ({_esc(name)})" if name.lower() != "no gpu found" else "")
                         + ": local models run on the CPU.")
        if h.swap_total:
            lines.append(f"Swap {(h.swap_used or 0) / GIB:.1f} of {h.swap_total / GIB:.1f} GiB")
        else:
            lines.append("No swap configured")
        return "<br>".join(lines)

    # ------------------------------------------------------------ Ollama

    def show_ollama(self, o: OllamaView) -> None:
        if o.running is None:
            text = f"Ollama at {_esc(o.url) or '—'}: checking…"
        elif o.running:
            loaded = sum(1 for m in o.models if m.loaded)
            text = (f"<span style='color:{STATE_COLORS['ok']}'>●</span> Ollama {_esc(o.version or '')} at "
                    f"{_esc(o.url)} · {len(o.models)} installed · {loaded} loaded")
        else:
            wait = f" Next check in {o.next_check_s:.0f} s." if o.next_check_s else ""
            text = (f"<span style='color:{STATE_COLORS['error']}'>●</span> {_esc(o.message or 'Ollama is not running.')}"
                    f"{wait}")
        self.ollama_label.setText(text)
        if o.warnings:
            shown = list(o.warnings[:4])
            more = len(o.warnings) - len(shown)
            self.warnings_label.setText(f"<span style='color:{STATE_COLORS['warn']}'>⚠</span> " +
                                        f"<br><span style='color:{STATE_COLORS['warn']}'>⚠</span> ".join(
                                            _esc(w) for w in shown) + (f"<br>… and {more} more" if more > 0 else ""))
            self.warnings_label.show()
        else:
            self.warnings_label.hide()
        self.models.set_rows(list(o.models) if o.running else [])
        self._sync_buttons()

    def selected_model(self) -> LocalModelView | None:
        name = key_of(self.view.currentIndex())
        return next((m for m in self.models.rows() if m.name == name), None) if name else None

    def select_model(self, name: str) -> None:
        i = self.models.find(name)
        if i < 0:
            return
        idx = self.proxy.mapFromSource(self.models.index(i, 0))
        self.view.setCurrentIndex(idx)
        self.view.selectRow(idx.row())

    def _sync_buttons(self) -> None:
        m = self.selected_model()
        running = bool(self.monitor.ollama().running)
        self.pull_button.setEnabled(running and not self.monitor.pulling())
        self.unload_button.setEnabled(running and m is not None and m.loaded)
        self.remove_button.setEnabled(running and m is not None and m.installed)

    # ------------------------------------------------------------ actions

    def ask_pull(self) -> None:
        name, ok = QInputDialog.getText(self, "Pull a model", "Model name from the Ollama library "
                                        "(e.g. qwen3-coder:30b, gpt-oss:20b):")
        if ok and name.strip():
            self.monitor.ollama_pull(name.strip())
            self._sync_buttons()

    def cancel_pull(self) -> None:
        if self.pull_state is not None:
            self.monitor.ollama_cancel_pull(self.pull_state.model)

    def unload_selected(self) -> None:
        m = self.selected_model()
        if m is not None and m.loaded:
            self.monitor.ollama_unload(m.name)

    def remove_selected(self) -> None:
        m = self.selected_model()
        if m is None:
            return
        if QMessageBox.question(self, "Remove model", f"Delete {m.name} ({fmt_bytes(m.size)}) from disk? Pulling it "
                                "again downloads it all again.") != QMessageBox.StandardButton.Yes:
            return
        self.monitor.ollama_remove(m.name)

    def show_pull(self, p: PullView) -> None:
        self.pull_state = p
        running = p.state == "running"
        self.pull_bar.setVisible(running)
        self.cancel_button.setVisible(running)
        if p.total:
            self.pull_bar.setValue(int(1000 * p.completed / p.total))
        else:
            self.pull_bar.setValue(0)
        amount = f"{fmt_bytes(p.completed)} of {fmt_bytes(p.total)}" if p.total else ""
        speed = f"{fmt_bytes(p.bytes_per_s)}/s" if p.bytes_per_s else ""
        if running:
            text = " · ".join(x for x in (f"Pulling {p.model}", p.status, amount, speed) if x)
        elif p.state == "done":
            text = f"✓ {p.model} pulled ({fmt_bytes(p.total)})" if p.total else f"✓ {p.model} pulled"
        elif p.state == "cancelled":
            text = f"Pull of {p.model} cancelled" + (f" at {amount}" if amount else "")
        else:
            text = f"<span style='color:{STATE_COLORS['error']}'>✗</span> {_esc(p.error or 'The pull failed.')}"
        self.pull_text.setText(text)
        self._sync_buttons()


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
