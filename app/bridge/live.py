"""The live event pump: drains the engine's event queue about 25 times a second, folds the
events into per-session view models, coalesces token deltas into one batch per tick, and hands
every other event on as a signal (budget alerts, gateway state, circuit breakers) for the part
that owns it. The Dashboard's part."""

from __future__ import annotations

import collections
import time

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app import events as published
from app.bridge.convert import (
    coalesce,
    finished_line,
    record_from_finished,
    record_from_row,
    record_from_started,
    sentence,
    session_label,
    started_line,
)
from app.bridge.data import RequestRecord, SessionView, StreamPiece
from app.bridge.engine import EngineApi
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.bridge.session_names import FILE_NAME as NAMES_FILE
from app.bridge.session_names import SessionNames
from app.bridge.sessions import CostFn, LiveRequest, SessionState
from app.events import BackendHealth, BudgetAlert, ContentDelta, GatewayState, RequestFinished, RequestStarted
from app.proxy.admit import PAUSED
from app.proxy.routing import Pin

TICK_MS = 40  # ≈ 25 Hz
DRAIN_LIMIT = 8000  # events handled per tick at most; the rest wait for the next tick
SESSIONS_MAX = 300
NAMES_SAVE_MS = 10_000  # the sessions' names are written this often when they changed
RECENT_MAX = 2000  # finished requests kept in memory for the dashboard


class Live(QObject):
    """Sessions, their token streams and the recent requests, as the gateway reports them."""

    sessionsChanged = Signal()
    streamBatch = Signal(list)  # list[StreamPiece], coalesced per tick
    requestStarted = Signal(object)  # RequestRecord with in_flight=True
    requestFinished = Signal(object)  # RequestRecord, priced once (with its start time)
    pinsChanged = Signal()
    budgetAlert = Signal(object)  # BudgetAlert, for the usage part
    gatewayState = Signal(object)  # GatewayState, for the bridge's life cycle
    backendHealth = Signal(object)  # BackendHealth (a circuit breaker changed), for the backends part
    pausedRefusals = Signal(int)  # requests refused since the gateway was paused
    subscriptionLimits = Signal(object)  # SubscriptionLimits (a subscription's usage windows), for its part

    def __init__(self, jobs: Jobs, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._notices = notices
        self._engine: EngineApi | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.tick)
        self._sessions: dict[str, SessionState] = {}
        self._live: dict[str, RequestRecord] = {}
        self._recent: collections.deque[RequestRecord] = collections.deque(maxlen=RECENT_MAX)
        self._sessions_dirty = False
        self.dropped_deltas = 0
        self.max_tick_ms = 0.0
        self.refused_while_paused = 0
        self._names: SessionNames | None = None  # the sessions' names, kept across restarts
        self._save_names = QTimer(self)
        self._save_names.setInterval(NAMES_SAVE_MS)
        self._save_names.timeout.connect(lambda: self._names.save() if self._names is not None else None)

    def attach(self, engine: EngineApi | None) -> None:
        if engine is None and self._names is not None:
            self._names.save()
        self._engine = engine
        if engine is None:
            self._timer.stop()
            self._save_names.stop()
        else:
            if self._names is None or self._names.path.parent != engine.paths.data_dir:
                self._names = SessionNames(engine.paths.data_dir / NAMES_FILE)
            self._timer.start()
            self._save_names.start()

    def start_seeding(self) -> None:
        """Fill the dashboard with the last two hours' sessions from the ledger after a restart."""
        eng = self._engine
        if eng is None:
            return
        reader = eng.reader

        def work() -> list[RequestRecord]:
            return [record_from_row(r) for r in reader.requests(limit=500, since=time.time() - 2 * 3600)]

        self._jobs.submit(work, self._seeded)

    def _seeded(self, result: list[RequestRecord] | None, error: BaseException | None) -> None:
        if error is not None or not result:
            return
        known, live = {r.request_id for r in self._recent}, {sid for sid, s in self._sessions.items() if s.backend}
        for rec in sorted(result, key=lambda r: r.started_at):
            if rec.request_id in known:
                continue
            s = self._session(rec.session_id, rec.started_at)
            if self._names is not None and not (s.cwd or s.prompt):
                s.cwd, s.prompt = self._names.get(rec.session_id)
            s.first_seen = min(s.first_seen, rec.started_at)
            s.last_seen = max(s.last_seen, rec.started_at + rec.duration_ms / 1000)
            s.requests += 1
            s.backend, s.model = (s.backend, s.model) if rec.session_id in live else (rec.backend, rec.model)
            s.input_tokens += rec.input_tokens + rec.cache_read_tokens + rec.cache_write_tokens
            s.output_tokens += rec.output_tokens
            if rec.cost_usd is not None:
                s.cost_usd += rec.cost_usd
            s.api_equiv_usd += rec.api_equiv_usd or 0.0
            if not rec.ok:
                s.errors += 1
            self._recent.appendleft(rec)
        self.sessionsChanged.emit()

    # ------------------------------------------------------------------ the pump

    @Slot()
    def tick(self) -> None:
        eng = self._engine
        if eng is None:
            return
        t0 = time.perf_counter()
        events = eng.events.drain(DRAIN_LIMIT)
        if not events:
            if self._sessions_dirty or any(s.in_flight for s in self._sessions.values()):
                self._sessions_dirty = False
                self.sessionsChanged.emit()
            return
        self.dropped_deltas = eng.events.dropped
        now = time.time()
        deltas: list[ContentDelta] = []
        pieces: list[StreamPiece] = []
        finished: list[RequestRecord] = []

        def flush() -> None:
            if deltas:
                pieces.extend(coalesce(deltas))
                deltas.clear()

        for ev in events:
            if type(ev) is ContentDelta:
                deltas.append(ev)
                s = self._sessions.get(ev.session_id or "")
                if s is not None:
                    s.streamed(ev.request_id, len(ev.text))
                    if ev.kind != "tool_use":
                        s.rate_samples.append((now, len(ev.text)))
            elif type(ev) is RequestStarted:
                flush()
                pieces.append(self._on_started(ev))
            elif type(ev) is RequestFinished:
                flush()
                rec, piece = self._on_finished(eng, ev)
                finished.append(rec)
                pieces.append(piece)
            elif type(ev) is BudgetAlert:
                self.budgetAlert.emit(ev)
            elif type(ev) is GatewayState:
                if ev.state == "paused" and self.refused_while_paused:
                    self.refused_while_paused = 0  # a new pause counts from zero
                    self.pausedRefusals.emit(0)
                self.gatewayState.emit(ev)
            elif type(ev) is BackendHealth:
                self.backendHealth.emit(ev)
            elif type(ev) is published.SubscriptionLimits:
                self.subscriptionLimits.emit(ev)
        flush()
        for p in pieces:
            s = self._sessions.get(p.session_id)
            if s is not None:
                s.add_piece(p)
        if pieces:
            self.streamBatch.emit(pieces)
        for rec in finished:
            self.requestFinished.emit(rec)
        self.sessionsChanged.emit()
        self._sessions_dirty = False
        self.max_tick_ms = max(self.max_tick_ms, (time.perf_counter() - t0) * 1000)

    def _session(self, sid: str, now: float) -> SessionState:
        s = self._sessions.get(sid)
        if s is None:
            s = self._sessions[sid] = SessionState(sid, now, now)
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
        s.in_flight[ev.request_id] = LiveRequest(ev.backend, ev.model, ev.started_at, plan=ev.plan)
        if ev.cwd:
            s.cwd = ev.cwd
        if ev.prompt and not s.prompt:
            s.prompt = ev.prompt
        if ev.client:
            s.client = ev.client
        if self._names is not None:
            self._names.note(sid, s.cwd, s.prompt, ev.started_at)
        rec = record_from_started(ev)
        self._live[ev.request_id] = rec
        self.requestStarted.emit(rec)
        return StreamPiece(sid, ev.request_id, -1, "meta", started_line(ev))

    def _on_finished(self, eng: EngineApi, ev: RequestFinished) -> tuple[RequestRecord, StreamPiece]:
        sid = ev.session_id or ""
        s = self._session(sid, ev.started_at)
        s.in_flight.pop(ev.request_id, None)
        s.last_seen = max(s.last_seen, ev.ended_at)
        s.requests += 1
        s.backend, s.model = ev.backend, ev.model
        u = ev.usage
        s.input_tokens += u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
        s.output_tokens += u.output_tokens
        cost = eng.prices.cost_of(ev)
        if cost is None:
            b = eng.config.backend(ev.backend)
            if u.total and not (b is not None and b.is_local):
                s.unpriced = True
        else:
            s.cost_usd += cost
        gen_ms = ev.duration_ms - (ev.ttft_ms or 0.0)
        if u.output_tokens and gen_ms > 50:
            s.last_rate = u.output_tokens / (gen_ms / 1000.0)
        if not s.in_flight:
            s.rate_samples.clear()
        api_equiv = eng.prices.api_equivalent(ev)
        s.api_equiv_usd += api_equiv or 0.0
        rec = record_from_finished(ev, cost, api_equiv)
        self._live.pop(ev.request_id, None)
        self._recent.append(rec)
        if (ev.status, ev.error_type, ev.error_message) == (PAUSED.status, PAUSED.error_type, PAUSED.message):
            self.refused_while_paused += 1
            self.pausedRefusals.emit(self.refused_while_paused)
        failed = ev.error_type is not None or ev.status >= 400
        s.errors += failed
        return rec, StreamPiece(sid, ev.request_id, 10_000, "error" if failed else "meta", finished_line(ev, cost, api_equiv))

    # ------------------------------------------------------------------ reads (cheap, GUI thread)

    def _pins(self) -> dict[str, Pin]:
        return dict(self._engine.pins) if self._engine is not None else {}

    def pins(self) -> dict[str, tuple[str, str | None]]:
        return {sid: (p.backend, p.model) for sid, p in self._pins().items()}

    def _cost(self) -> CostFn | None:
        return self._engine.prices.cost if self._engine is not None else None

    def sessions(self) -> list[SessionView]:
        now = time.time()
        pins = self._pins()
        cost = self._cost()
        views = [s.view(now, pins.get(s.session_id), cost) for s in self._sessions.values()]
        views.sort(key=lambda v: (-(v.in_flight > 0), -v.last_seen))
        return views

    def session(self, session_id: str) -> SessionView | None:
        s = self._sessions.get(session_id)
        return s.view(time.time(), self._pins().get(session_id), self._cost()) if s is not None else None

    def session_labels(self) -> dict[str, str]:
        """Names for session ids: the live ones, and those remembered from before a restart."""
        out = {sid: session_label(sid, c, p) for sid, c, p in (self._names.items() if self._names else [])}
        out.update({sid: session_label(sid, x.cwd, x.prompt) for sid, x in self._sessions.items()})
        return out

    def stream_pieces(self, session_id: str) -> list[StreamPiece]:
        s = self._sessions.get(session_id)
        return list(s.pieces) if s else []

    def recent_requests(self, session_id: str | None = None, limit: int = 50) -> list[RequestRecord]:
        live = [r for r in self._live.values() if session_id is None or r.session_id == session_id]
        out = sorted(live, key=lambda r: -r.started_at)
        for rec in reversed(self._recent):
            if len(out) >= limit:
                break
            if session_id is None or rec.session_id == session_id:
                out.append(rec)
        return out[:limit]

    def record(self, request_id: str) -> RequestRecord | None:
        """A request seen since start (finished or in flight), for one not in the ledger yet."""
        rec = next((r for r in reversed(self._recent) if r.request_id == request_id), None)
        return rec or self._live.get(request_id)

    # ------------------------------------------------------------------ actions

    def pin_session(self, session_id: str, backend: str, model: str | None = None) -> bool:
        if self._engine is None or not session_id:
            return False
        try:
            self._engine.pin_session(session_id, backend, model)
        except Exception as exc:
            self._notices.say("error", "Could not pin the session", sentence(exc), key="pin")
            return False
        self.pinsChanged.emit()
        self.sessionsChanged.emit()
        return True

    def unpin_session(self, session_id: str) -> None:
        if self._engine is None:
            return
        self._engine.unpin_session(session_id)
        self.pinsChanged.emit()
        self.sessionsChanged.emit()
