"""The one door between the Qt views and the gateway.

``Bridge`` owns the :class:`app.core.Engine`. A QTimer on the GUI thread drains the engine's event
queue about 25 times a second, folds the events into per-session view models, coalesces token
deltas into one batch per tick, and emits Qt signals. Reads from the usage ledger run on one
worker thread and come back as signals; the engine's async helpers (Test, list models) run on
the qasync loop. The views never see an engine object: only the snapshots of
:mod:`app.views.data`, and the action methods below.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.config import ActiveSelection, BackendConfig, BudgetConfig, ConfigError, RoutesConfig
from app.events import BackendHealth, BudgetAlert, ContentDelta, GatewayState, RequestFinished, RequestStarted, Usage
from app.services import autostart
from app.views.data import (
    BackendView,
    BudgetView,
    ClaudeCodeView,
    GatewayView,
    GpuView,
    HardwareView,
    LocalModelView,
    OllamaView,
    PullView,
    RequestDetail,
    RequestRecord,
    SeriesPoint,
    SessionView,
    SettingsView,
    SpendData,
    StreamPiece,
    TestOutcome,
    TopSession,
    UserMessage,
)

log = logging.getLogger(__name__)

TICK_MS = 40  # ≈ 25 Hz
HW_HISTORY = 600  # hardware samples kept for the Monitor page (10 minutes at 1 s)
PULL_EMIT_S = 0.12  # pull progress reaches the view at most this often
DRAIN_LIMIT = 8000  # events handled per tick at most; the rest wait for the next tick
STREAM_CHARS_PER_SESSION = 60_000  # what the dashboard keeps to show when a session is selected
RATE_WINDOW_S = 5.0
SESSIONS_MAX = 300
RECENT_MAX = 2000  # finished requests kept in memory for the dashboard
BUCKET_SECONDS = {"hour": 3600.0, "day": 86400.0, "month": 30 * 86400.0}
BUCKET_SPAN = {"hour": 24 * 3600.0, "day": 30 * 86400.0, "month": 365 * 86400.0}
_UPSTREAM_FAILURES = {"api_error", "overloaded_error", "timeout_error", "upstream_error", "connection_error",
                      "authentication_error", "permission_error"}


# --------------------------------------------------------------------------- per-session state


@dataclass
class _Session:
    session_id: str
    first_seen: float
    last_seen: float
    backend: str = ""
    model: str = ""
    cwd: str | None = None
    prompt: str | None = None
    client: str | None = None
    requests: int = 0
    in_flight: set[str] = field(default_factory=set)
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: bool = False
    last_rate: float = 0.0
    rate_samples: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    pieces: collections.deque[StreamPiece] = field(default_factory=collections.deque)
    piece_chars: int = 0

    def add_piece(self, piece: StreamPiece) -> None:
        if self.pieces:
            last = self.pieces[-1]
            if last.request_id == piece.request_id and last.index == piece.index and last.kind == piece.kind:
                self.pieces[-1] = replace(last, text=last.text + piece.text)
                self.piece_chars += len(piece.text)
                self._trim()
                return
        self.pieces.append(piece)
        self.piece_chars += len(piece.text)
        self._trim()

    def _trim(self) -> None:
        while self.piece_chars > STREAM_CHARS_PER_SESSION and len(self.pieces) > 1:
            self.piece_chars -= len(self.pieces.popleft().text)

    def rate(self, now: float) -> float:
        while self.rate_samples and self.rate_samples[0][0] < now - RATE_WINDOW_S:
            self.rate_samples.popleft()
        if self.in_flight and self.rate_samples:
            span = max(1.0, now - self.rate_samples[0][0])
            return sum(n for _, n in self.rate_samples) / 4.0 / span  # ≈ 4 characters a token
        return self.last_rate

    def view(self, now: float, pin: Any | None) -> SessionView:
        label = _session_label(self.session_id, self.cwd, self.prompt)
        return SessionView(
            session_id=self.session_id, label=label, cwd=self.cwd, prompt=self.prompt,
            backend=self.backend, model=self.model,
            pinned_backend=getattr(pin, "backend", None), pinned_model=getattr(pin, "model", None),
            requests=self.requests, in_flight=len(self.in_flight), errors=self.errors,
            input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            tokens_per_s=self.rate(now), cost_usd=self.cost_usd, unpriced=self.unpriced,
            first_seen=self.first_seen, last_seen=self.last_seen, client=self.client,
        )


def _session_label(session_id: str, cwd: str | None, prompt: str | None) -> str:
    if cwd:
        name = Path(cwd.rstrip("/\\")).name or cwd
        return name
    if prompt:
        p = " ".join(prompt.split())
        return p if len(p) <= 60 else p[:57] + "…"
    return session_id[:8] if session_id else "(no session)"


def coalesce(deltas: Iterable[ContentDelta]) -> list[StreamPiece]:
    """Merge deltas of the same request, block and kind (in order of first appearance)."""
    merged: dict[tuple[str, int, str], list[Any]] = {}
    for d in deltas:
        key = (d.request_id, d.index, d.kind)
        entry = merged.get(key)
        if entry is None:
            merged[key] = [d.session_id or "", [d.text]]
        else:
            entry[1].append(d.text)
    return [StreamPiece(sid, rid, idx, kind, "".join(parts)) for (rid, idx, kind), (sid, parts) in merged.items()]


def record_from_finished(ev: RequestFinished, cost: float | None) -> RequestRecord:
    u = ev.usage
    return RequestRecord(
        request_id=ev.request_id, started_at=ev.started_at, session_id=ev.session_id or "",
        backend=ev.backend, model=ev.model, requested_model=ev.requested_model, route=ev.route,
        status=ev.status, error_type=ev.error_type, error_message=ev.error_message,
        input_tokens=u.input_tokens, output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_input_tokens, cache_write_tokens=u.cache_creation_input_tokens,
        cost_usd=cost, ttft_ms=ev.ttft_ms, duration_ms=ev.duration_ms, stop_reason=ev.stop_reason,
        client=ev.client, stream=ev.stream,
    )


def record_from_row(row: Any) -> RequestRecord:
    """A ledger row (``app.services.ledger.RequestRow``) as the views' record."""
    g = lambda name, default=None: getattr(row, name, default)  # noqa: E731
    cost = g("cost_usd")
    if g("priced", True) is False:
        cost = None
    return RequestRecord(
        request_id=str(g("request_id", "")), started_at=float(g("started_at", 0.0) or 0.0),
        session_id=g("session_id") or "", backend=g("backend", "") or "", model=g("model", "") or "",
        requested_model=g("requested_model", "") or "", route=g("route", "") or "",
        status=int(g("status", 0) or 0), error_type=g("error_type"), error_message=g("error_message"),
        input_tokens=int(g("input_tokens", 0) or 0), output_tokens=int(g("output_tokens", 0) or 0),
        cache_read_tokens=int(g("cache_read_input_tokens", g("cache_read_tokens", 0)) or 0),
        cache_write_tokens=int(g("cache_creation_input_tokens", g("cache_write_tokens", 0)) or 0),
        cost_usd=None if cost is None else float(cost), ttft_ms=g("ttft_ms"),
        duration_ms=float(g("duration_ms", 0.0) or 0.0), stop_reason=g("stop_reason"), client=g("client"),
        stream=bool(g("stream", True)),
    )


def budget_view(status: Any) -> BudgetView:
    b = getattr(status, "budget", None)
    scope = getattr(b, "scope", "all")
    period = getattr(b, "period", "day")
    limit = float(getattr(status, "limit_usd", getattr(b, "limit_usd", 0.0)) or 0.0)
    spent = float(getattr(status, "spent_usd", 0.0) or 0.0)
    frac = float(getattr(status, "fraction", (spent / limit) if limit else 0.0) or 0.0)
    label = f"{'All backends' if scope == 'all' else scope.partition(':')[2]} · per {period}"
    return BudgetView(label=label, scope=scope, period=period, spent_usd=spent, limit_usd=limit,
                      warn_at=float(getattr(b, "warn_at", 0.8)), fraction=frac,
                      state=str(getattr(status, "state", "ok")), resets_at=getattr(status, "resets_at", None),
                      action=str(getattr(b, "action", "block")))


def start_of_day(now: float | None = None) -> float:
    lt = time.localtime(now or time.time())
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


# --------------------------------------------------------------------------- the bridge


class Bridge(QObject):
    """Owns the engine; turns its events into Qt signals; offers the views' actions."""

    sessionsChanged = Signal()
    streamBatch = Signal(list)  # list[StreamPiece], coalesced per tick
    requestStarted = Signal(object)  # RequestRecord with in_flight=True
    requestFinished = Signal(object)  # RequestRecord
    activeChanged = Signal(str, object)  # backend id, model or None
    backendsChanged = Signal()
    pinsChanged = Signal()
    budgetsChanged = Signal(list)  # list[BudgetView]
    spendTodayChanged = Signal(float)
    gatewayChanged = Signal(object)  # GatewayView
    trayStateChanged = Signal(str)  # ok | warn | error | paused | stopped
    message = Signal(object)  # UserMessage
    messageCleared = Signal(str)  # key
    spendReady = Signal(object)  # SpendData
    requestsReady = Signal(list)  # list[RequestRecord]
    requestDetailReady = Signal(object)  # RequestDetail | None
    testFinished = Signal(object)  # TestOutcome
    modelsListed = Signal(str, list, str)  # backend id, models, error ("" when fine)
    settingsChanged = Signal()
    hardwareSampled = Signal(object)  # HardwareView, about once a second
    ollamaChanged = Signal(object)  # OllamaView, after each poll of the local Ollama
    pullProgress = Signal(object)  # PullView, at most ~8 times a second while a pull runs
    claudeCodeChanged = Signal(object)  # ClaudeCodeView, when settings.json changed (by us or anything else)
    _jobDone = Signal(object, object, object)  # callback, result, exception
    _hwSample = Signal(object)  # from the sampler thread
    _ledgerError = Signal(str)  # from the ledger's writer thread

    def __init__(self, config_path: Path | None = None, *, paths: Any = None, parent: QObject | None = None,
                 engine_factory: Callable[..., Any] | None = None,
                 hardware_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(parent)
        self._config_path = config_path
        self._paths = paths
        self._engine_factory = engine_factory
        self._hardware_factory = hardware_factory
        self._sampler: Any = None  # app.services.hardware.SamplerThread
        self._hw_history: collections.deque[HardwareView] = collections.deque(maxlen=HW_HISTORY)
        self._hwSample.connect(self._on_hw_sample)
        from app.services.throughput import Throughput

        self._throughput = Throughput(600.0)
        self._monitor: Any = None  # app.services.ollama.OllamaMonitor
        self._ollama = OllamaView("", None)
        self._ollama_state: Any = None
        self._ollama_timer = QTimer(self)
        self._ollama_timer.setSingleShot(True)
        self._ollama_timer.timeout.connect(self.refresh_ollama)
        self._ollama_polling = False
        self._monitoring = False
        self._last_used: dict[str, float] = {}
        self._pulls: dict[str, asyncio.Future[Any]] = {}
        self.engine: Any = None  # the views never read this
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._slow = QTimer(self)  # budgets / spend today / health, every few seconds
        self._slow.setInterval(5000)
        self._slow.timeout.connect(self.refresh_budgets)
        self._slow.timeout.connect(self._claude_settings_touched)
        self._cc_watcher: Any = None
        self._cc_stamp: tuple[Any, ...] | None = None
        self._cc_view: ClaudeCodeView | None = None
        self._budget_debounce = QTimer(self)
        self._budget_debounce.setSingleShot(True)
        self._budget_debounce.setInterval(1500)
        self._budget_debounce.timeout.connect(self.refresh_budgets)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchbay-ledger")
        self._jobDone.connect(self._on_job_done)
        self._ledgerError.connect(lambda text: self.message.emit(UserMessage(
            "error", "Usage is not being recorded", text, key="ledger-write", notify=True)))
        self._sessions: dict[str, _Session] = {}
        self._live: dict[str, RequestRecord] = {}
        self._recent: collections.deque[RequestRecord] = collections.deque(maxlen=RECENT_MAX)
        self._health: dict[str, tuple[str, str | None]] = {}
        self._breakers: dict[str, BackendHealth] = {}  # the gateway's circuit breakers, as last published
        self._models_cache: dict[str, list[str]] = {}
        self._budgets: list[BudgetView] = []
        self._spend_today = 0.0
        self._gateway = GatewayView("stopped", None)
        self._tray_state = "stopped"
        self._sessions_dirty = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._alerted: set[tuple[str, str]] = set()
        self.fatal: UserMessage | None = None
        self.dropped_deltas = 0
        self.max_tick_ms = 0.0

    # ------------------------------------------------------------------ life cycle

    def start(self) -> bool:
        """Create and start the engine. False (with a message) when the config or the port fails."""
        self.fatal = None
        self.messageCleared.emit("startup")
        if self.engine is None:
            try:
                self.engine = self._make_engine()
            except Exception as exc:  # a broken config, a keychain or platform problem: say it, never a traceback
                text = _sentence(exc)
                about_config = isinstance(exc, ConfigError) or str(self.config_path()) in text
                self._fail_start("The settings file cannot be used" if about_config else "Patchbay could not start",
                                 text, "config" if about_config else None)
                return False
        ledger = getattr(self.engine, "ledger", None)
        if ledger is not None and getattr(ledger, "on_error", "absent") is None:
            ledger.on_error = self._ledgerError.emit  # a full disk, a locked file: said, not swallowed
        self._timer.start()
        try:
            self.engine.start()
        except Exception as exc:
            title = "The gateway could not start"
            action = "settings" if "port" in str(exc).lower() else None
            self._set_gateway(GatewayView("failed", None, str(exc)))
            self._fail_start(title, _sentence(exc), action, keep_engine=True)
            return False
        self._set_gateway(GatewayView("paused" if self._engine_paused() else "running", self._engine_url()))
        self._slow.start()
        self.refresh_budgets()
        self._seed_sessions()
        self._start_monitoring()
        self._claude_settings_touched()
        self.backendsChanged.emit()
        self.activeChanged.emit(*self.active())
        self.settingsChanged.emit()
        return True

    def _make_engine(self) -> Any:
        if self._engine_factory is not None:
            return self._engine_factory(self._config_path, paths=self._paths, gui=True)
        from app.core import Engine

        return Engine(self._config_path, paths=self._paths, gui=True)

    def _fail_start(self, title: str, text: str, action: str | None, keep_engine: bool = False) -> None:
        msg = UserMessage("error", title, text, action=action, key="startup", notify=True)
        self.fatal = msg
        if not keep_engine:
            self.engine = None
        self._update_tray_state()
        self.message.emit(msg)

    def stop(self) -> None:
        """Stop the gateway cleanly (requests in flight are given a moment by the engine)."""
        self._timer.stop()
        self._slow.stop()
        self._budget_debounce.stop()
        self._stop_monitoring()
        for t in list(self._tasks):
            t.cancel()
        if self.engine is not None:
            try:
                self.engine.stop()
            except Exception:
                log.exception("stopping the engine")
            self._tick()  # the last events (GatewayState stopped, finished records)
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._set_gateway(GatewayView("stopped", None))

    def restart_gateway(self) -> bool:
        """Stop and start the gateway (after a port change). Requests in flight finish first.

        A stopped engine has closed its ledger, so a fresh one is made from the saved config."""
        if self.engine is not None:
            try:
                self.engine.stop()
            except Exception:
                log.exception("stopping the engine")
            self._tick()
            self.engine = None
        return self.start()

    def reset_config(self) -> bool:
        """Move a broken config file aside (keeping it as ``.broken``) and start with the default."""
        path = self.config_path()
        if path.exists():
            broken = path.with_name(path.name + ".broken")
            try:
                os.replace(path, broken)
            except OSError as exc:
                self.message.emit(UserMessage("error", "The settings file could not be moved",
                                              f"{path}: {exc.strerror}. Move or fix it by hand, then press Retry.",
                                              key="startup"))
                return False
            self.message.emit(UserMessage("info", "A fresh settings file was written",
                                          f"The broken one is kept as {broken}.", key="reset"))
        return self.start()

    def show_config_file(self) -> None:
        """Open the folder holding the config file in the platform's file manager."""
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        folder = self.config_path().parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.message.emit(UserMessage("info", "The settings file", f"It is {self.config_path()}. Open it in "
                                          "a text editor, fix the line named above, then press Retry.",
                                          key="config-path"))

    def config_path(self) -> Path:
        if self.engine is not None:
            return Path(self.engine.config_path)
        if self._config_path is not None:
            return Path(self._config_path)
        from app.paths import default_paths

        return (self._paths or default_paths()).config_file

    @property
    def running(self) -> bool:
        return self.engine is not None and bool(getattr(self.engine, "running", False))

    # ------------------------------------------------------------------ event pump

    @Slot()
    def _tick(self) -> None:
        eng = self.engine
        if eng is None:
            return
        t0 = time.perf_counter()
        events = eng.events.drain(DRAIN_LIMIT)
        if not events:
            if self._sessions_dirty or any(s.in_flight for s in self._sessions.values()):
                self._sessions_dirty = False
                self.sessionsChanged.emit()
            return
        self.dropped_deltas = getattr(eng.events, "dropped", 0)
        now = time.time()
        deltas: list[ContentDelta] = []
        pieces: list[StreamPiece] = []
        finished: list[RequestRecord] = []

        def flush() -> None:
            if deltas:
                for p in coalesce(deltas):
                    pieces.append(p)
                deltas.clear()

        for ev in events:
            t = type(ev)
            if t is ContentDelta:
                deltas.append(ev)
                s = self._sessions.get(ev.session_id or "")
                if s is not None and ev.kind != "tool_use":
                    s.rate_samples.append((now, len(ev.text)))
            elif t is RequestStarted:
                flush()
                pieces.append(self._on_started(ev))
            elif t is RequestFinished:
                flush()
                rec, piece = self._on_finished(ev)
                finished.append(rec)
                pieces.append(piece)
            elif t is BudgetAlert:
                self._on_budget_alert(ev)
            elif t is GatewayState:
                self._on_gateway_state(ev)
            elif t is BackendHealth:
                self._breakers[ev.backend] = ev
                self.backendsChanged.emit()
        flush()
        for p in pieces:
            s = self._sessions.get(p.session_id)
            if s is not None:
                s.add_piece(p)
        if pieces:
            self.streamBatch.emit(pieces)
        for rec in finished:
            self.requestFinished.emit(rec)
        if finished and not self._budget_debounce.isActive():
            self._budget_debounce.start()  # at most one budget read per 1.5 s under a flood
        self.sessionsChanged.emit()
        self._sessions_dirty = False
        dt = (time.perf_counter() - t0) * 1000
        if dt > self.max_tick_ms:
            self.max_tick_ms = dt

    def _session(self, sid: str, now: float) -> _Session:
        s = self._sessions.get(sid)
        if s is None:
            s = self._sessions[sid] = _Session(sid, now, now)
            if len(self._sessions) > SESSIONS_MAX:
                idle = sorted((x for x in self._sessions.values() if not x.in_flight), key=lambda x: x.last_seen)
                for x in idle[: len(self._sessions) - SESSIONS_MAX]:
                    del self._sessions[x.session_id]
        return s

    def _on_started(self, ev: RequestStarted) -> StreamPiece:
        sid = ev.session_id or ""
        s = self._session(sid, ev.started_at)
        s.last_seen = max(s.last_seen, ev.started_at)
        s.backend, s.model = ev.backend, ev.model
        s.in_flight.add(ev.request_id)
        if ev.cwd:
            s.cwd = ev.cwd
        if ev.prompt and not s.prompt:
            s.prompt = ev.prompt
        if ev.client:
            s.client = ev.client
        rec = RequestRecord(
            request_id=ev.request_id, started_at=ev.started_at, session_id=sid, backend=ev.backend,
            model=ev.model, requested_model=ev.requested_model, route=ev.route, status=0, error_type=None,
            error_message=None, input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
            cost_usd=None, ttft_ms=None, duration_ms=0.0, client=ev.client, stream=ev.stream, in_flight=True,
        )
        self._live[ev.request_id] = rec
        self.requestStarted.emit(rec)
        how = {"pin": " (pinned)", "explicit": " (chosen by the client)", "active": ""}.get(ev.route,
                                                                                      f" (rule: {ev.route})")
        if ev.route.startswith("budget"):
            how = " (budget downgrade)"
        clock = time.strftime("%H:%M:%S", time.localtime(ev.started_at))
        return StreamPiece(sid, ev.request_id, -1, "meta", f"{clock}  → {ev.backend} · {ev.model}{how}")

    def _cost(self, ev: RequestFinished) -> float | None:
        prices = getattr(self.engine, "prices", None)
        if prices is None:
            return None
        try:
            c = prices.cost(ev.backend, ev.model, ev.usage)
        except Exception:
            return None
        if c is None:
            return None
        return float(getattr(c, "usd", getattr(c, "cost_usd", c)))

    def _on_finished(self, ev: RequestFinished) -> tuple[RequestRecord, StreamPiece]:
        sid = ev.session_id or ""
        s = self._session(sid, ev.started_at)
        s.in_flight.discard(ev.request_id)
        s.last_seen = max(s.last_seen, ev.ended_at)
        s.requests += 1
        s.backend, s.model = ev.backend, ev.model
        s.input_tokens += ev.usage.input_tokens + ev.usage.cache_read_input_tokens + ev.usage.cache_creation_input_tokens
        s.output_tokens += ev.usage.output_tokens
        cost = self._cost(ev)
        if cost is None:
            if ev.usage.total and not self._is_local(ev.backend):
                s.unpriced = True
        else:
            s.cost_usd += cost
        gen_ms = ev.duration_ms - (ev.ttft_ms or 0.0)
        if ev.usage.output_tokens and gen_ms > 50:
            s.last_rate = ev.usage.output_tokens / (gen_ms / 1000.0)
        if not s.in_flight:
            s.rate_samples.clear()
        if ev.error_type is None and self._is_local(ev.backend):
            self._throughput.add(ev.started_at, ev.ttft_ms, ev.ended_at, ev.usage.output_tokens)
            self._last_used[ev.model] = max(self._last_used.get(ev.model, 0.0), ev.ended_at)
        rec = record_from_finished(ev, cost)
        self._live.pop(ev.request_id, None)
        self._recent.append(rec)
        if ev.error_type is not None or ev.status >= 400:
            s.errors += 1
            self._note_failure(rec)
            text = f"✗ {ev.status or ''} {ev.error_type or ''}: {ev.error_message or 'no details'}".replace("  ", " ")
            piece = StreamPiece(sid, ev.request_id, 10_000, "error", text)
        else:
            self._note_success(rec)
            parts = [f"✓ {ev.duration_ms / 1000:.1f} s"]
            if ev.ttft_ms is not None:
                parts.append(f"first token {ev.ttft_ms:.0f} ms")
            parts.append(f"{ev.usage.input_tokens + ev.usage.cache_read_input_tokens} in / {ev.usage.output_tokens} out")
            if cost is not None:
                parts.append(f"${cost:.4f}")
            piece = StreamPiece(sid, ev.request_id, 10_000, "meta", " · ".join(parts))
        return rec, piece

    def _is_local(self, backend_id: str) -> bool:
        cfg = self._config()
        b = cfg.backend(backend_id) if cfg else None
        return bool(b and b.is_local)

    def _note_failure(self, rec: RequestRecord) -> None:
        if rec.error_type not in _UPSTREAM_FAILURES and rec.status not in (502, 503, 504, 529):
            return  # a client error (400, 413) says nothing about the backend's health
        if rec.route.startswith("budget") and rec.error_type in ("rate_limit_error", "permission_error"):
            return
        before = self._health.get(rec.backend, ("unknown", None))[0]
        text = rec.error_message or rec.error_type or f"HTTP {rec.status}"
        self._health[rec.backend] = ("failing", text)
        if before != "failing":
            self.message.emit(UserMessage(
                "error", f"The backend “{rec.backend}” is failing",
                f"{text}\nCheck its address and key on the Backends page (Test shows the exact answer), "
                "or switch to another backend.",
                action="backends", key=f"health:{rec.backend}", notify=True))
            self.backendsChanged.emit()
        self._update_tray_state()

    def _note_success(self, rec: RequestRecord) -> None:
        if self._health.get(rec.backend, ("unknown", None))[0] != "ok":
            was_failing = self._health.get(rec.backend, ("", None))[0] == "failing"
            self._health[rec.backend] = ("ok", None)
            if was_failing:
                self.messageCleared.emit(f"health:{rec.backend}")
                self.backendsChanged.emit()
            self._update_tray_state()

    def _on_budget_alert(self, ev: BudgetAlert) -> None:
        key = (ev.budget, ev.level)
        if key in self._alerted:
            return
        self._alerted.add(key)
        if ev.level == "limit":
            title = f"Budget reached: {ev.budget}"
            text = (f"${ev.spent_usd:.2f} of ${ev.limit_usd:.2f} spent. {ev.action} "
                    f"It resets {time.strftime('%a %H:%M', time.localtime(ev.resets_at))}. Raise the limit in "
                    "Settings or switch to a local backend.")
        else:
            title = f"Budget nearly used: {ev.budget}"
            text = (f"${ev.spent_usd:.2f} of ${ev.limit_usd:.2f} spent ({ev.spent_usd / ev.limit_usd:.0%}). "
                    f"{ev.action}")
        self.message.emit(UserMessage("warn" if ev.level == "warn" else "error", title, text.strip(),
                                      action="spend", key=f"budget:{ev.budget}", notify=True))
        self._budget_debounce.start()

    def _on_gateway_state(self, ev: GatewayState) -> None:
        self._set_gateway(GatewayView(ev.state, ev.address or self._engine_url(), ev.message))
        if ev.state == "failed" and ev.message:
            self.message.emit(UserMessage("error", "The gateway stopped", ev.message,
                                          action="settings" if "port" in ev.message.lower() else None,
                                          key="gateway", notify=True))

    def _set_gateway(self, view: GatewayView) -> None:
        if view != self._gateway:
            self._gateway = view
            self.gatewayChanged.emit(view)
        self._update_tray_state()

    def _update_tray_state(self) -> None:
        state = self.tray_state()
        if state != self._tray_state:
            self._tray_state = state
            self.trayStateChanged.emit(state)

    # ------------------------------------------------------------------ background work

    def _submit(self, fn: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        """Run ``fn`` on the ledger thread; ``done(result, error)`` runs on the GUI thread."""
        try:
            fut = self._pool.submit(fn)
        except RuntimeError:  # shut down
            return
        fut.add_done_callback(lambda f: self._jobDone.emit(done, None if f.exception() else f.result(), f.exception()))

    @Slot(object, object, object)
    def _on_job_done(self, done: Callable[[Any, BaseException | None], None], result: Any,
                     error: BaseException | None) -> None:
        if error is not None and not isinstance(error, (ConfigError,)):
            log.warning("background job failed: %r", error)
        done(result, error)

    def _spawn(self, coro: Coroutine[Any, Any, Any],
               done: Callable[[Any, BaseException | None], None]) -> asyncio.Future[Any] | None:
        """Run an engine coroutine on the GUI thread's asyncio loop (qasync) without blocking; the
        task is returned (cancel it to stop the work).

        Where no asyncio loop runs on this thread, it runs on a short-lived thread instead (and
        None is returned: that work cannot be cancelled)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)

            def finished(t: asyncio.Future[Any]) -> None:
                self._tasks.discard(t)
                if t.cancelled():
                    return
                exc = t.exception()
                done(None if exc else t.result(), exc)

            task.add_done_callback(finished)
            return task

        def run() -> None:
            try:
                result, error = asyncio.run(coro), None
            except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
                result, error = None, exc
            self._jobDone.emit(done, result, error)

        threading.Thread(target=run, name="patchbay-async", daemon=True).start()
        return None

    # ------------------------------------------------------------------ getters (cheap, GUI thread)

    def _config(self) -> Any:
        return getattr(self.engine, "config", None) if self.engine is not None else None

    def _engine_url(self) -> str | None:
        try:
            return str(self.engine.url) if self.engine is not None else None
        except Exception:
            return None

    def _engine_paused(self) -> bool:
        return bool(getattr(self.engine, "paused", False)) if self.engine is not None else False

    def gateway(self) -> GatewayView:
        return self._gateway

    def backends(self) -> list[BackendView]:
        cfg = self._config()
        if cfg is None:
            return []
        out = []
        for b in cfg.backends:
            has_key: bool | None = None
            if b.auth == "keyring":
                try:
                    has_key = bool(self.engine.has_api_key(b.id))
                except Exception:
                    has_key = False
            elif b.env_var:
                has_key = bool(os.environ.get(b.env_var))
            health, err = self._health.get(b.id, ("unknown", None))
            brk = self._breakers.get(b.id)
            open_until, failures = None, 0
            if brk is not None:
                failures = brk.failures
                if brk.state == "open":
                    health, err, open_until = "open", brk.last_error, brk.open_until
                elif brk.state == "failing":
                    health, err = "failing", brk.last_error
                elif health == "unknown":
                    health = "ok"
            out.append(BackendView(b.id, b.kind, b.base_url, b.auth, tuple(b.models), b.max_output_tokens,
                                   tuple(b.headers), b.local, b.is_local, has_key, health, err, open_until, failures))
        return out

    def backend_config(self, backend_id: str) -> BackendConfig | None:
        cfg = self._config()
        return cfg.backend(backend_id) if cfg else None

    def backend_kinds(self) -> tuple[str, ...]:
        from app.config import BACKEND_KINDS

        return tuple(BACKEND_KINDS)

    def active(self) -> tuple[str, str | None]:
        cfg = self._config()
        if cfg is None:
            return "", None
        return cfg.active.backend, cfg.active.model

    def without_output_limit(self, models: list[str]) -> list[str]:
        """Models whose output limit Patchbay does not know (their max_tokens goes out unclamped)."""
        from app.services.model_limits import output_limit

        return [m for m in models if output_limit(m) is None]

    def models_for(self, backend_id: str) -> list[str]:
        """Models to offer for a backend: the last list fetched from it, else the configured ones."""
        cached = self._models_cache.get(backend_id)
        b = self.backend_config(backend_id)
        configured = list(b.models) if b else []
        if cached:
            return list(dict.fromkeys(configured + cached)) if not self._is_ollama(b) else cached
        return configured

    def _is_ollama(self, b: BackendConfig | None) -> bool:
        from app.services.ollama import is_ollama_url

        cfg = self._config()
        return b is not None and cfg is not None and is_ollama_url(b.base_url, cfg.ollama.url)

    def can_list_models(self, backend_id: str) -> bool:
        return self.backend_config(backend_id) is not None

    def pins(self) -> dict[str, tuple[str, str | None]]:
        if self.engine is None:
            return {}
        return {sid: (p.backend, p.model) for sid, p in dict(getattr(self.engine, "pins", {}) or {}).items()}

    def sessions(self) -> list[SessionView]:
        now = time.time()
        pins = dict(getattr(self.engine, "pins", {}) or {}) if self.engine is not None else {}
        views = [s.view(now, pins.get(s.session_id)) for s in self._sessions.values()]
        views.sort(key=lambda v: (-(v.in_flight > 0), -v.last_seen))
        return views

    def session(self, session_id: str) -> SessionView | None:
        s = self._sessions.get(session_id)
        if s is None:
            return None
        pin = (getattr(self.engine, "pins", {}) or {}).get(session_id) if self.engine is not None else None
        return s.view(time.time(), pin)

    def stream_pieces(self, session_id: str) -> list[StreamPiece]:
        s = self._sessions.get(session_id)
        return list(s.pieces) if s else []

    def recent_requests(self, session_id: str | None = None, limit: int = 50) -> list[RequestRecord]:
        out: list[RequestRecord] = []
        live = [r for r in self._live.values() if session_id is None or r.session_id == session_id]
        out.extend(sorted(live, key=lambda r: -r.started_at))
        for rec in reversed(self._recent):
            if len(out) >= limit:
                break
            if session_id is None or rec.session_id == session_id:
                out.append(rec)
        return out[:limit]

    def budgets(self) -> list[BudgetView]:
        return list(self._budgets)

    def spend_today(self) -> float:
        return self._spend_today

    def daily_limit(self) -> float | None:
        for b in self._budgets:
            if b.scope == "all" and b.period == "day":
                return b.limit_usd
        return None

    def tray_state(self) -> str:
        if self.engine is None or self._gateway.state in ("failed",):
            return "error"
        if self._gateway.state == "stopped":
            return "stopped"
        if self._engine_paused() or self._gateway.state == "paused":
            return "paused"
        active = self.active()[0]
        if self._health.get(active, ("", None))[0] == "failing":
            return "error"
        if any(b.state == "limit" for b in self._budgets):
            return "error"
        if any(b.state == "warn" for b in self._budgets):
            return "warn"
        return "ok"

    def settings(self) -> SettingsView:
        cfg = self._config()
        paths = getattr(self.engine, "paths", None)
        return SettingsView(
            port=cfg.gateway.port if cfg else 8787, host=cfg.gateway.host if cfg else "127.0.0.1",
            capture=cfg.ledger.capture if cfg else "off",
            budgets=tuple(self._budget_views_from_config()),
            start_at_login=autostart.is_enabled(), start_at_login_supported=autostart.supported(),
            config_path=str(self.config_path()), data_dir=str(getattr(paths, "data_dir", "")),
        )

    def _budget_views_from_config(self) -> list[BudgetView]:
        cfg = self._config()
        if cfg is None:
            return []
        by_key = {(b.scope, b.period, b.limit_usd): b for b in self._budgets}
        out = []
        for bc in cfg.budgets:
            live = by_key.get((bc.scope, bc.period, bc.limit_usd))
            out.append(BudgetView(
                label=bc.label, scope=bc.scope, period=bc.period, spent_usd=live.spent_usd if live else 0.0,
                limit_usd=bc.limit_usd, warn_at=bc.warn_at, fraction=live.fraction if live else 0.0,
                state=live.state if live else "ok", resets_at=live.resets_at if live else None, action=bc.action))
        return out

    def gateway_token(self) -> str:
        if self.engine is None:
            return ""
        try:
            return str(self.engine.gateway_token())
        except Exception as exc:
            self.message.emit(UserMessage("error", "The gateway token could not be read", _sentence(exc),
                                          key="token"))
            return ""

    def claude_code(self) -> ClaudeCodeView:
        """Claude Code's settings.json as it is now, compared with this gateway (reads the file)."""
        from app.services import claude_code as cc
        from app.services import claude_settings

        path = str(claude_settings.settings_path())
        if self.engine is None:
            return ClaudeCodeView(False, path, ())
        try:
            env = dict(self.engine.claude_code_env())
            st = self.engine.claude_code_status()
        except Exception as exc:
            return ClaudeCodeView(False, path, (), "invalid", _sentence(exc))
        paths = getattr(self.engine, "paths", None)
        recorded = paths is not None and cc.state_file(paths).exists()
        return ClaudeCodeView(st.connected, str(st.path), tuple(env.items()), st.state, st.message, recorded,
                              st.edited_since, tuple(st.options), tuple(sorted(cc.alias_values(st.path).items())))

    def _watch_claude_settings(self) -> None:
        """Notice when something else changes settings.json: a watcher on the file and its folder
        (editors and tools replace the file), and the 5-second timer's stat as a fallback."""
        from PySide6.QtCore import QFileSystemWatcher

        from app.services import claude_settings

        path = claude_settings.settings_path()
        if self._cc_watcher is None:
            self._cc_watcher = QFileSystemWatcher(self)
            self._cc_watcher.fileChanged.connect(lambda _p: self._claude_settings_touched())
            self._cc_watcher.directoryChanged.connect(lambda _p: self._claude_settings_touched())
        w = self._cc_watcher
        wanted = [str(p) for p in (path, path.parent) if p.exists()]
        stale = [p for p in w.files() + w.directories() if p not in wanted]
        if stale:
            w.removePaths(stale)
        missing = [p for p in wanted if p not in w.files() + w.directories()]
        if missing:
            w.addPaths(missing)

    def _claude_settings_touched(self) -> None:
        from app.services import claude_settings

        path = claude_settings.settings_path()
        try:
            st = path.stat()
            stamp: tuple[Any, ...] = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = (str(path), None)
        if stamp == self._cc_stamp:
            return
        self._cc_stamp = stamp
        self._watch_claude_settings()
        view = self.claude_code()
        if view != self._cc_view:
            self._cc_view = view
            self.claudeCodeChanged.emit(view)

    # ------------------------------------------------------------------ actions

    def switch(self, backend: str, model: str | None = None) -> bool:
        """Send the next requests to ``backend`` (and ``model``); saved to the config file."""
        if self.engine is None:
            return False
        if (backend, model) == self.active():
            return True
        try:
            self.engine.switch(backend, model)
        except Exception as exc:
            self.message.emit(UserMessage("error", f"Could not switch to “{backend}”", _sentence(exc), key="switch"))
            self.activeChanged.emit(*self.active())  # put the controls back
            return False
        self.messageCleared.emit("switch")
        self.activeChanged.emit(*self.active())
        self._update_tray_state()
        return True

    def pin_session(self, session_id: str, backend: str, model: str | None = None) -> bool:
        if self.engine is None or not session_id:
            return False
        try:
            self.engine.pin_session(session_id, backend, model)
        except Exception as exc:
            self.message.emit(UserMessage("error", "Could not pin the session", _sentence(exc), key="pin"))
            return False
        self.pinsChanged.emit()
        self.sessionsChanged.emit()
        return True

    def unpin_session(self, session_id: str) -> None:
        if self.engine is None:
            return
        self.engine.unpin_session(session_id)
        self.pinsChanged.emit()
        self.sessionsChanged.emit()

    def set_paused(self, paused: bool) -> None:
        if self.engine is None:
            return
        try:
            self.engine.pause() if paused else self.engine.resume()
        except Exception as exc:
            self.message.emit(UserMessage("error", "Could not pause the gateway" if paused else
                                          "Could not resume the gateway", _sentence(exc), key="pause"))
            return
        self._set_gateway(GatewayView("paused" if paused else "running", self._engine_url()))

    def paused(self) -> bool:
        return self._engine_paused()

    def save_backends(self, backends: list[BackendConfig], active: ActiveSelection | None = None) -> bool:
        if self.engine is None:
            return False
        try:
            self.engine.save_backends(list(backends), active)
        except ConfigError as exc:
            self.message.emit(UserMessage("error", "The backends were not saved", str(exc), key="backends"))
            return False
        except Exception as exc:
            self.message.emit(UserMessage("error", "The backends were not saved", _sentence(exc), key="backends"))
            return False
        self.messageCleared.emit("backends")
        keep = {b.id for b in backends}
        self._health = {k: v for k, v in self._health.items() if k in keep}
        self.backendsChanged.emit()
        self.activeChanged.emit(*self.active())
        return True

    def set_api_key(self, backend_id: str, key: str) -> bool:
        if self.engine is None:
            return False
        try:
            self.engine.set_api_key(backend_id, key)
        except Exception as exc:
            self.message.emit(UserMessage("error", "The API key was not stored", _sentence(exc), key="apikey",
                                          action="backends"))
            return False
        self.messageCleared.emit("apikey")
        self.backendsChanged.emit()
        return True

    def test_backend(self, backend: BackendConfig, model: str | None = None) -> None:
        """Send a tiny real request; ``testFinished(TestOutcome)`` follows."""
        if self.engine is None:
            return

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                out = TestOutcome(backend.id, False, None, None, _sentence(error))
            else:
                out = TestOutcome(backend.id, bool(getattr(result, "ok", False)), getattr(result, "ttft_ms", None),
                                  getattr(result, "status", None), str(getattr(result, "message", "") or ""))
            if out.ok:
                self._health[backend.id] = ("ok", None)
                self.messageCleared.emit(f"health:{backend.id}")
            self.testFinished.emit(out)

        self._spawn(self.engine.test_backend(backend, model), done)

    def list_models(self, backend: BackendConfig | str) -> None:
        """Fetch the backend's models; ``modelsListed(id, models, error)`` follows."""
        if self.engine is None:
            return
        b = self.backend_config(backend) if isinstance(backend, str) else backend
        if b is None:
            return

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.modelsListed.emit(b.id, [], _sentence(error))
                return
            models = [str(m) for m in (result or [])]
            self._models_cache[b.id] = models
            self.modelsListed.emit(b.id, models, "")

        self._spawn(self.engine.list_models(b), done)

    def refresh_budgets(self) -> None:
        eng = self.engine
        if eng is None:
            return

        def work() -> tuple[list[Any], float]:
            statuses = list(eng.budgets.status()) if getattr(eng, "budgets", None) is not None else []
            spent = float(eng.reader.spent(start_of_day())) if getattr(eng, "reader", None) is not None else 0.0
            return statuses, spent

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None or result is None:
                return
            statuses, spent = result
            views = [budget_view(s) for s in statuses]
            if views != self._budgets:
                self._budgets = views
                self.budgetsChanged.emit(views)
            if spent != self._spend_today:
                self._spend_today = spent
                self.spendTodayChanged.emit(spent)
            for v in views:  # a budget that reset: alert again next time
                if v.state == "ok":
                    self._alerted = {k for k in self._alerted if not k[0].startswith(v.scope)}
            self._update_tray_state()

        self._submit(work, done)

    def load_spend(self, bucket: str = "hour", group_by: str = "backend") -> None:
        """Query the ledger for the Spend page; ``spendReady(SpendData)`` follows."""
        eng = self.engine
        if eng is None:
            return
        bucket = bucket if bucket in BUCKET_SECONDS else "hour"
        until = time.time()
        since = until - BUCKET_SPAN[bucket]

        labels = {sid: _session_label(sid, x.cwd, x.prompt) for sid, x in self._sessions.items()}

        def work() -> SpendData:
            reader = eng.reader
            raw = list(reader.cost_series(since, until, bucket, group_by))
            series = tuple(SeriesPoint(float(p.bucket_start), str(p.key or "?"), float(p.cost_usd or 0.0),
                                       int(p.tokens or 0), int(p.requests or 0)) for p in raw)
            unpriced = sum(int(getattr(p, "unpriced_requests", 0) or 0) for p in raw)
            tpm_since = until - 3 * 3600
            tpm = tuple(_tpm(r) for r in reader.tokens_per_minute(tpm_since, until))
            tops = tuple(_top_session(r, labels) for r in reader.top_sessions(since, 10))
            statuses = list(eng.budgets.status()) if getattr(eng, "budgets", None) is not None else []
            keys = tuple(sorted({p.key for p in series}, key=lambda k: -sum(x.cost_usd for x in series if x.key == k)))
            return SpendData(bucket, group_by, since, until, BUCKET_SECONDS[bucket], series, tpm, tops,
                             tuple(budget_view(s) for s in statuses),
                             total_cost=sum(p.cost_usd for p in series), total_requests=sum(p.requests for p in series),
                             unpriced_requests=unpriced, keys=keys)

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.message.emit(UserMessage("error", "The usage history could not be read", _sentence(error),
                                              key="ledger"))
                return
            self.spendReady.emit(result)

        self._submit(work, done)

    def load_requests(self, limit: int = 1000) -> None:
        """The request log, newest first; ``requestsReady(list[RequestRecord])`` follows."""
        eng = self.engine
        if eng is None:
            return

        def work() -> list[RequestRecord]:
            return [record_from_row(r) for r in eng.reader.requests(limit=limit)]

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.message.emit(UserMessage("error", "The request log could not be read", _sentence(error),
                                              key="ledger"))
                return
            self.requestsReady.emit(result)

        self._submit(work, done)

    def load_request_detail(self, request_id: str) -> None:
        eng = self.engine
        if eng is None:
            return

        def work() -> RequestDetail | None:
            d = eng.reader.request_detail(request_id)
            if d is None:
                return None
            return _detail(d)

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                result = None
            if result is None:  # not in the ledger yet: what we saw ourselves
                rec = next((r for r in reversed(self._recent) if r.request_id == request_id), None)
                rec = rec or self._live.get(request_id)
                result = _detail(rec) if rec is not None else None
            self.requestDetailReady.emit(result)

        self._submit(work, done)

    def _seed_sessions(self) -> None:
        """Fill the dashboard with the last two hours' sessions from the ledger after a restart."""
        eng = self.engine
        if eng is None or getattr(eng, "reader", None) is None:
            return

        def work() -> list[RequestRecord]:
            return [record_from_row(r) for r in eng.reader.requests(limit=500, since=time.time() - 2 * 3600)]

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None or not result:
                return
            known = {r.request_id for r in self._recent}
            for rec in sorted(result, key=lambda r: r.started_at):
                if rec.request_id in known:
                    continue
                s = self._session(rec.session_id, rec.started_at)
                s.first_seen = min(s.first_seen, rec.started_at)
                s.last_seen = max(s.last_seen, rec.started_at + rec.duration_ms / 1000)
                s.requests += 1
                s.backend, s.model = s.backend or rec.backend, s.model or rec.model
                s.input_tokens += rec.input_tokens + rec.cache_read_tokens + rec.cache_write_tokens
                s.output_tokens += rec.output_tokens
                if rec.cost_usd is not None:
                    s.cost_usd += rec.cost_usd
                if not rec.ok:
                    s.errors += 1
                self._recent.appendleft(rec)
            self.sessionsChanged.emit()

        self._submit(work, done)

    def routes(self) -> RoutesConfig:
        cfg = self._config()
        return cfg.routes if cfg is not None else RoutesConfig()

    def route_choices(self) -> list[str]:
        """Targets a [routes] rule can name: each backend alone, then each of its models."""
        cfg = self._config()
        out: list[str] = []
        for b in (cfg.backends if cfg else ()):
            out.append(b.id)
            out += [f"{b.id},{m}" for m in (tuple(b.models) or tuple(self.models_for(b.id)))]
        return list(dict.fromkeys(out))

    def save_routes(self, routes: RoutesConfig) -> bool:
        return self._save_settings(routes=routes)

    def save_port(self, port: int) -> bool:
        if not self._save_settings(port=port):
            return False
        self.message.emit(UserMessage("info", "Port saved", f"The gateway now listens on port {port}. "
                                      "Restarting it; point ANTHROPIC_BASE_URL at the new address "
                                      "(Settings → Claude Code does it for you).", key="port"))
        return self.restart_gateway()

    def save_budgets(self, budgets: list[BudgetConfig]) -> bool:
        ok = self._save_settings(budgets=budgets)
        if ok:
            self._alerted.clear()
            self.refresh_budgets()
        return ok

    def save_capture(self, mode: str) -> bool:
        return self._save_settings(capture=mode)

    def _save_settings(self, **kw: Any) -> bool:
        if self.engine is None:
            return False
        try:
            self.engine.save_settings(**kw)
        except Exception as exc:
            self.message.emit(UserMessage("error", "The settings were not saved",
                                          str(exc) if isinstance(exc, ConfigError) else _sentence(exc), key="settings"))
            return False
        self.messageCleared.emit("settings")
        self.settingsChanged.emit()
        return True

    def regenerate_token(self) -> str:
        if self.engine is None:
            return ""
        try:
            tok = str(self.engine.regenerate_token())
        except Exception as exc:
            self.message.emit(UserMessage("error", "A new token could not be made", _sentence(exc), key="token"))
            return ""
        self.message.emit(UserMessage("info", "New gateway token",
                                      "Clients using the old token are refused from now on. Reconnect Claude Code "
                                      "(Settings → Claude Code) to give it the new one.", key="token"))
        self.settingsChanged.emit()
        return tok

    def set_start_at_login(self, enabled: bool) -> bool:
        try:
            autostart.set_enabled(enabled, self._config_path)
        except autostart.AutostartError as exc:
            self.message.emit(UserMessage("error", "Start at login could not be changed",
                                          f"{exc} Add Patchbay to your session's startup programs by hand.",
                                          key="autostart"))
            return False
        self.settingsChanged.emit()
        return True

    def connect_claude_code(self, *, nonessential: bool = False, aliases: dict[str, str] | None = None,
                            statusline: bool = False) -> bool:
        """Put the gateway's address and token into Claude Code's settings.json (nothing else changes)."""
        if self.engine is None:
            return False
        try:
            result = self.engine.connect_claude_code(nonessential=nonessential, aliases=aliases,
                                                     statusline=statusline)
        except Exception as exc:
            self.message.emit(UserMessage("error", "Claude Code was not connected", _sentence(exc),
                                          key="claude"))
            self._claude_settings_touched()
            return False
        extra = f" The previous file is saved as {result.backup}." if result.backup else ""
        if result.skipped:
            extra += f" Your own {', '.join(result.skipped)} was kept as it is."
        self.message.emit(UserMessage("info", "Claude Code connected",
                                      f"{result.path} now points Claude Code at Patchbay. New Claude Code sessions "
                                      f"use it; restart the ones already open.{extra}", key="claude"))
        self._cc_stamp = None
        self._claude_settings_touched()
        self.settingsChanged.emit()
        return True

    def remove_claude_code_model(self) -> bool:
        """Remove a "model": "backend,model" that Claude Code's /model saved (offered after Disconnect)."""
        if self.engine is None:
            return False
        from app.services import claude_code

        try:
            removed = claude_code.remove_gateway_model(self.engine.paths)
        except Exception as exc:
            self.message.emit(UserMessage("error", "The model setting was not removed", _sentence(exc), key="claude"))
            return False
        self.message.emit(UserMessage("info", "Claude Code's model setting removed",
                                      f'Removed "model": "{removed}" from Claude Code\'s settings.' if removed else
                                      "There is no backend,model setting left to remove.", key="claude"))
        self._claude_settings_touched()
        return removed is not None

    def disconnect_claude_code(self) -> bool:
        """Put settings.json back as it was before Connect (only our keys change)."""
        if self.engine is None:
            return False
        try:
            result = self.engine.disconnect_claude_code()
        except Exception as exc:
            self.message.emit(UserMessage("error", "Claude Code was not disconnected", _sentence(exc),
                                          key="claude"))
            return False
        text = result.summary()
        self.message.emit(UserMessage("info", "Claude Code disconnected", text or "Nothing to undo.", key="claude",
                                      action="remove_model" if result.gateway_model else None))
        self._cc_stamp = None
        self._claude_settings_touched()
        self.settingsChanged.emit()
        return True


    # ------------------------------------------------------------------ hardware and the local Ollama

    def _start_monitoring(self) -> None:
        from app.services.hardware import HardwareSampler, SamplerThread
        from app.services.ollama import OllamaMonitor

        if self._sampler is None:
            try:
                sampler = self._hardware_factory() if self._hardware_factory is not None else HardwareSampler()
            except Exception:  # a broken driver costs the graphs, never the app
                log.exception("hardware sampler")
                sampler = HardwareSampler([])
            self._sampler = SamplerThread(sampler, self._hwSample.emit, interval_s=1.0)
            self._sampler.start()
        cfg = self._config()
        url = cfg.ollama.url if cfg is not None else ""
        if url and (self._monitor is None or self._monitor.url != url):
            self._monitor = OllamaMonitor(url)
            self._ollama = OllamaView(url, None)
        self._monitoring = True
        self._ollama_timer.start(0)

    def _stop_monitoring(self) -> None:
        self._monitoring = False
        self._ollama_polling = False
        self._ollama_timer.stop()
        for fut in list(self._pulls.values()):
            fut.cancel()
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    @Slot(object)
    def _on_hw_sample(self, s: Any) -> None:
        h = s.host
        view = HardwareView(
            s.t, h.cpu_pct, h.ram_used, h.ram_total, h.swap_used, h.swap_total,
            tuple(GpuView(g.name, g.vendor, g.util_pct, g.mem_used, g.mem_total, g.temp_c, g.power_w, g.unified)
                  for g in s.gpus), s.gpu_util, s.vram_used, s.vram_total)
        self._hw_history.append(view)
        self.hardwareSampled.emit(view)

    def hardware_history(self) -> list[HardwareView]:
        return list(self._hw_history)

    def hardware_name(self) -> str:
        return self._sampler.sampler.describe() if self._sampler is not None else "not sampling"

    def local_throughput(self, now: float | None = None) -> tuple[list[float], list[float]]:
        """Output tokens/s of requests served by local backends, per second of the last 10 minutes."""
        return self._throughput.series(time.time() if now is None else now)

    def active_is_local(self) -> bool:
        backend = self.active()[0]
        return bool(backend) and self._is_local(backend)

    def hardware_summary(self) -> str | None:
        """A few words for the tray: GPU and VRAM when the active backend runs on this machine."""
        if not self.active_is_local() or not self._hw_history:
            return None
        h = self._hw_history[-1]
        if h.gpu_util is None and h.vram_used is None:
            return f"no GPU found · CPU {h.cpu_pct:.0f}%"
        parts = []
        if h.gpu_util is not None:
            parts.append(f"GPU {h.gpu_util:.0f}%")
        if h.vram_used is not None and h.vram_total:
            parts.append(f"VRAM {h.vram_used / 1024**3:.1f} of {h.vram_total / 1024**3:.1f} GiB")
        return " · ".join(parts)

    # -- Ollama

    def ollama(self) -> OllamaView:
        return self._ollama

    def refresh_ollama(self) -> None:
        """Poll the local Ollama now; ``ollamaChanged`` follows. The next poll is scheduled from the
        answer: every few seconds while it runs, backing off while it does not."""
        mon = self._monitor
        if mon is None or self._ollama_polling or not self._monitoring:
            return
        self._ollama_timer.stop()
        self._ollama_polling = True

        def done(state: Any, error: BaseException | None) -> None:
            self._ollama_polling = False
            if self._monitor is not mon:
                return
            if error is None and state is not None:
                self._ollama_state = state
                self._publish_ollama()
            if self._monitoring:
                self._ollama_timer.start(int(mon.next_delay_s * 1000))

        self._spawn(mon.poll(), done)

    def _publish_ollama(self) -> None:
        from app.services.ollama import is_ollama_url, model_warnings

        state = self._ollama_state
        if state is None:
            return
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
        cfg = self._config()
        if state.running and cfg is not None:  # Ollama backends offer what is installed now
            names = sorted(state.names)
            for b in cfg.backends:
                if is_ollama_url(b.base_url, cfg.ollama.url) and self._models_cache.get(b.id) != names:
                    self._models_cache[b.id] = names
                    self.modelsListed.emit(b.id, names, "")

    def ollama_pull(self, model: str) -> bool:
        """Start pulling ``model``; ``pullProgress(PullView)`` follows until it is done, failed or cancelled."""
        from app.services.ollama import OllamaError, PullMeter, check_model_name

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

        def done(_result: Any, error: BaseException | None) -> None:
            self._pulls.pop(model, None)
            if error is None:
                self.pullProgress.emit(PullView(model, "done", "success", meter.total, meter.total))
                self.messageCleared.emit("ollama-pull")
            else:
                text = _sentence(error)
                self.pullProgress.emit(PullView(model, "failed", meter.status, meter.completed, meter.total,
                                                error=text))
                self.message.emit(UserMessage("error", f"{model} was not pulled", text, key="ollama-pull"))
            self.refresh_ollama()

        fut = self._spawn(pull(), done)
        if fut is not None:
            self._pulls[model] = fut
            fut.add_done_callback(lambda f: self._pull_cancelled(model, meter, f))
        return True

    def _pull_cancelled(self, model: str, meter: Any, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self._pulls.pop(model, None)
            self.pullProgress.emit(PullView(model, "cancelled", meter.status, meter.completed, meter.total))
            self.refresh_ollama()

    def ollama_cancel_pull(self, model: str) -> None:
        fut = self._pulls.get(model)
        if fut is not None:
            fut.cancel()

    def pulling(self) -> list[str]:
        return list(self._pulls)

    def ollama_unload(self, model: str) -> None:
        self._ollama_action(model, "unload", f"{model} was not unloaded")

    def ollama_remove(self, model: str) -> None:
        self._ollama_action(model, "remove", f"{model} was not removed")

    def _ollama_action(self, model: str, action: str, failed: str) -> None:
        mon = self._monitor
        if mon is None:
            return

        def done(_result: Any, error: BaseException | None) -> None:
            if error is not None:
                self.message.emit(UserMessage("error", failed, _sentence(error), key="ollama-action"))
            else:
                self.messageCleared.emit("ollama-action")
                if action == "remove":
                    mon.forget(model)
            self.refresh_ollama()

        self._spawn(getattr(mon.client, action)(model), done)


# --------------------------------------------------------------------------- helpers


def _sentence(exc: BaseException) -> str:
    """An exception as a user sentence: our own errors already are one; others get a prefix."""
    text = str(exc).strip()
    mod = type(exc).__module__ or ""
    if mod.startswith("app.") and text:
        return text
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}." + (f" ({exc.filename})" if exc.filename else "")
    if not text:
        return f"An unexpected {type(exc).__name__} happened; see the log for details."
    return text if text.endswith((".", "!", "?")) else text + "."


def _tpm(r: Any) -> tuple[float, int, int]:
    """(minute start, input tokens incl. cache, output tokens) from a ledger ``TokenRate``."""
    if isinstance(r, tuple):
        return float(r[0]), int(r[1]), int(r[2]) if len(r) > 2 else 0
    inp = int(getattr(r, "input_tokens", 0) or 0) + int(getattr(r, "cache_read_tokens", 0) or 0) + \
        int(getattr(r, "cache_write_tokens", 0) or 0)
    return float(getattr(r, "minute_start", 0.0)), inp, int(getattr(r, "output_tokens", 0) or 0)


def _top_session(r: Any, labels: dict[str, str]) -> TopSession:
    sid = str(getattr(r, "session_id", "") or "")
    tokens = sum(int(getattr(r, a, 0) or 0) for a in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                      "cache_write_tokens"))
    backends = getattr(r, "backends", ()) or ()
    return TopSession(
        session_id=sid, label=labels.get(sid) or _session_label(sid, None, None),
        cost_usd=float(getattr(r, "cost_usd", 0.0) or 0.0), tokens=tokens,
        requests=int(getattr(r, "requests", 0) or 0), last_seen=getattr(r, "last_seen", None),
        backends=backends if isinstance(backends, str) else ", ".join(backends),
    )


def _body_text(b: Any) -> str | None:
    if b is None:
        return None
    if isinstance(b, (bytes, bytearray)):
        try:
            import json

            return json.dumps(json.loads(b), indent=2, ensure_ascii=False)
        except Exception:
            return bytes(b).decode("utf-8", "replace")
    return str(b)


def _detail(d: Any) -> RequestDetail:
    rec = d if isinstance(d, RequestRecord) else record_from_row(getattr(d, "row", d))
    fields: list[tuple[str, str]] = [
        ("Request id", rec.request_id),
        ("Started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.started_at))),
        ("Session", rec.session_id or "(none)"),
        ("Client", rec.client or "—"),
        ("Route", rec.route or "—"),
        ("Backend", rec.backend),
        ("Model asked for", rec.requested_model or "—"),
        ("Model served", rec.model),
        ("Status", "in flight" if rec.in_flight else str(rec.status)),
        ("Stop reason", rec.stop_reason or "—"),
        ("Error", f"{rec.error_type}: {rec.error_message}" if rec.error_type else "—"),
        ("Time to first token", f"{rec.ttft_ms:.0f} ms" if rec.ttft_ms is not None else "—"),
        ("Duration", f"{rec.duration_ms:.0f} ms"),
        ("Input tokens", str(rec.input_tokens)),
        ("Cache read / write tokens", f"{rec.cache_read_tokens} / {rec.cache_write_tokens}"),
        ("Output tokens", str(rec.output_tokens)),
        ("Cost", "no price known" if rec.cost_usd is None else f"${rec.cost_usd:.6f}"),
    ]
    return RequestDetail(rec, tuple(fields), _body_text(getattr(d, "request_body", None)),
                         _body_text(getattr(d, "response_body", None)))


__all__ = ["Bridge", "coalesce", "record_from_finished", "record_from_row", "Usage"]
