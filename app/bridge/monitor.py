"""Monitor: the hardware sampler (its own thread, once a second), the local Ollama (polled,
backing off while it is down), pulls with progress, Unload and Remove, and local tokens/s from
the requests served on this machine. The Monitor page's part."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.bridge.convert import hardware_view, sentence
from app.bridge.data import RequestRecord
from app.bridge.data_host import HardwareView, LocalModelView, OllamaView, PullView
from app.bridge.engine import EngineApi
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.host.hardware import HardwareSampler, Sample, SamplerThread
from app.host.ollama import OllamaError, OllamaMonitor, OllamaState, PullMeter, check_model_name, model_warnings
from app.host.throughput import Throughput

log = logging.getLogger("app.bridge")

HW_HISTORY = 600  # hardware samples kept for the Monitor page (10 minutes at 1 s)
PULL_EMIT_S = 0.12  # pull progress reaches the view at most this often
HardwareFactory = Callable[[], HardwareSampler]


class Monitor(QObject):
    hardwareSampled = Signal(object)  # HardwareView, about once a second
    ollamaChanged = Signal(object)  # OllamaView, after each poll of the local Ollama
    pullProgress = Signal(object)  # PullView, at most ~8 times a second while a pull runs
    ollamaModels = Signal(list)  # the names installed now, after each poll while Ollama runs
    _hwSample = Signal(object)  # from the sampler thread

    def __init__(self, jobs: Jobs, notices: Notices, hardware_factory: HardwareFactory | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._notices = notices
        self._engine: EngineApi | None = None
        self._hardware_factory = hardware_factory
        self._sampler: SamplerThread | None = None
        self._hw_history: collections.deque[HardwareView] = collections.deque(maxlen=HW_HISTORY)
        self._hwSample.connect(self.on_hw_sample)
        self.throughput = Throughput(600.0)
        self._monitor: OllamaMonitor | None = None
        self._ollama = OllamaView("", None)
        self._ollama_state: OllamaState | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh_ollama)
        self._polling = False
        self._monitoring = False
        self._last_used: dict[str, float] = {}
        self._pulls: dict[str, asyncio.Future[None]] = {}

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine
        if engine is None:
            self._stop()
        else:
            self._start(engine)

    def _start(self, engine: EngineApi) -> None:
        if self._sampler is None:
            try:
                sampler = self._hardware_factory() if self._hardware_factory is not None else HardwareSampler()
            except Exception:  # a broken driver costs the graphs, never the app
                log.exception("hardware sampler")
                sampler = HardwareSampler([])
            self._sampler = SamplerThread(sampler, self._hwSample.emit, interval_s=1.0)
            self._sampler.start()
        url = engine.config.ollama.url
        if url and (self._monitor is None or self._monitor.url != url):
            self._monitor = OllamaMonitor(url)
            self._ollama = OllamaView(url, None)
        self._monitoring = True
        self._timer.start(0)

    def _stop(self) -> None:
        self._monitoring = False
        self._polling = False
        self._timer.stop()
        for fut in list(self._pulls.values()):
            fut.cancel()
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    # ------------------------------------------------------------------ hardware

    @Slot(object)
    def on_hw_sample(self, s: Sample) -> None:
        view = hardware_view(s)
        self._hw_history.append(view)
        self.hardwareSampled.emit(view)

    def hardware_history(self) -> list[HardwareView]:
        return list(self._hw_history)

    def hardware_name(self) -> str:
        return self._sampler.sampler.describe() if self._sampler is not None else "not sampling"

    def hardware_summary(self) -> str:
        """A few words for the tray: GPU and VRAM (CPU where no GPU is found); "" before a sample."""
        if not self._hw_history:
            return ""
        h = self._hw_history[-1]
        if h.gpu_util is None and h.vram_used is None:
            return f"no GPU found · CPU {h.cpu_pct:.0f}%"
        parts = []
        if h.gpu_util is not None:
            parts.append(f"GPU {h.gpu_util:.0f}%")
        if h.vram_used is not None and h.vram_total:
            parts.append(f"VRAM {h.vram_used / 1024**3:.1f} of {h.vram_total / 1024**3:.1f} GiB")
        return " · ".join(parts)

    @Slot(object)
    def on_finished(self, rec: RequestRecord) -> None:
        """Local tokens/s and each model's last use come from the requests served on this machine."""
        b = self._engine.config.backend(rec.backend) if self._engine is not None else None
        if rec.error_type is None and b is not None and b.is_local:
            ended = rec.started_at + rec.duration_ms / 1000.0
            self.throughput.add(rec.started_at, rec.ttft_ms, ended, rec.output_tokens)
            self._last_used[rec.model] = max(self._last_used.get(rec.model, 0.0), ended)

    def local_throughput(self, now: float | None = None) -> tuple[list[float], list[float]]:
        """Output tokens/s of requests served by local backends, per second of the last 10 minutes."""
        return self.throughput.series(time.time() if now is None else now)

    # ------------------------------------------------------------------ Ollama

    def ollama(self) -> OllamaView:
        return self._ollama

    def refresh_ollama(self) -> None:
        """Poll the local Ollama now; ``ollamaChanged`` follows. The next poll is scheduled from the
        answer: every few seconds while it runs, backing off while it does not."""
        mon = self._monitor
        if mon is None or self._polling or not self._monitoring:
            return
        self._timer.stop()
        self._polling = True

        def done(state: OllamaState | None, error: BaseException | None) -> None:
            self._polling = False
            if self._monitor is not mon:
                return
            if error is None and state is not None:
                self._ollama_state = state
                self._publish_ollama(state)
            if self._monitoring:
                self._timer.start(int(mon.next_delay_s * 1000))

        self._jobs.spawn(mon.poll(), done)

    def _publish_ollama(self, state: OllamaState) -> None:
        hw = self._hw_history[-1] if self._hw_history else None
        free = None
        if hw is not None and hw.vram_total is not None and hw.vram_used is not None:
            free = max(0, hw.vram_total - hw.vram_used)
        warns = model_warnings(state, free)
        by_model: dict[str, list[str]] = {}
        for w in warns:
            by_model.setdefault(w.model, []).append(w.text)
        rows: list[LocalModelView] = []
        for m in state.installed:
            info = state.info.get(m.name)
            lm = state.loaded_model(m.name)
            rows.append(LocalModelView(
                m.name, m.size, m.family, m.parameter_size, m.quantization,
                info.context_length if info else None, info.capabilities if info else (), True, lm is not None,
                lm.size if lm else None, lm.vram_share if lm else None, lm.context_length if lm else None,
                lm.expires_at if lm else None, self._last_used.get(m.name), tuple(by_model.get(m.name, ()))))
        for lm in state.loaded:  # loaded but not listed (removed while in memory)
            if not any(r.name == lm.name for r in rows):
                rows.append(LocalModelView(lm.name, 0, None, None, None, None, (), False, True, lm.size, lm.vram_share,
                                           lm.context_length, lm.expires_at, self._last_used.get(lm.name),
                                           tuple(by_model.get(lm.name, ()))))
        loaded_first = sorted(warns, key=lambda w: state.loaded_model(w.model) is None)
        view = OllamaView(state.url, state.running, state.version, state.message, tuple(rows),
                          tuple(w.text for w in loaded_first), state.next_check_s)
        if view != self._ollama:
            self._ollama = view
            self.ollamaChanged.emit(view)
        if state.running:  # Ollama backends offer what is installed now
            self.ollamaModels.emit(sorted(state.names))

    def pulling(self) -> list[str]:
        return list(self._pulls)

    def ollama_pull(self, model: str) -> bool:
        """Start pulling ``model``; ``pullProgress(PullView)`` follows until it is done, failed or cancelled."""
        if self._monitor is None:
            return False
        try:
            model = check_model_name(model)
        except OllamaError as exc:
            self.pullProgress.emit(PullView(model, "failed", error=str(exc)))
            return False
        if model in self._pulls:
            return True
        client = self._monitor.client
        meter = PullMeter()
        self.pullProgress.emit(PullView(model, "running", "starting"))

        async def pull() -> None:
            last = 0.0
            async for p in client.pull(model):
                meter.add(p)
                now = time.monotonic()
                if now - last >= PULL_EMIT_S or p.done:
                    last = now
                    self.pullProgress.emit(PullView(model, "running", p.status, meter.completed, meter.total,
                                                    meter.bytes_per_s))

        def done(_result: None, error: BaseException | None) -> None:
            self._pulls.pop(model, None)
            if error is None:
                self.pullProgress.emit(PullView(model, "done", "success", meter.total, meter.total))
                self._notices.clear("ollama-pull")
            else:
                text = sentence(error)
                self.pullProgress.emit(PullView(model, "failed", meter.status, meter.completed, meter.total,
                                                error=text))
                self._notices.say("error", f"{model} was not pulled", text, key="ollama-pull")
            self.refresh_ollama()

        fut = self._jobs.spawn(pull(), done)
        if fut is not None:
            self._pulls[model] = fut
            fut.add_done_callback(lambda f: self._pull_cancelled(model, meter, f))
        return True

    def _pull_cancelled(self, model: str, meter: PullMeter, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            self._pulls.pop(model, None)
            self.pullProgress.emit(PullView(model, "cancelled", meter.status, meter.completed, meter.total))
            self.refresh_ollama()

    def ollama_cancel_pull(self, model: str) -> None:
        fut = self._pulls.get(model)
        if fut is not None:
            fut.cancel()

    def ollama_unload(self, model: str) -> None:
        mon = self._monitor
        if mon is not None:
            self._ollama_done(mon.client.unload(model), model, f"{model} was not unloaded")

    def ollama_remove(self, model: str) -> None:
        mon = self._monitor
        if mon is not None:
            self._ollama_done(mon.client.remove(model), model, f"{model} was not removed", then=mon.forget)

    def _ollama_done(self, work: Coroutine[Any, Any, object], model: str, failed: str,
                     then: Callable[[str], None] | None = None) -> None:
        def done(_result: object, error: BaseException | None) -> None:
            if error is not None:
                self._notices.say("error", failed, sentence(error), key="ollama-action")
            else:
                self._notices.clear("ollama-action")
                if then is not None:
                    then(model)
            self.refresh_ollama()

        self._jobs.spawn(work, done)
