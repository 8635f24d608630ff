"""Usage: budgets and today's spend (refreshed every few seconds and after requests), the Spend
page's history, the request log and one request's detail, all read from the ledger on the jobs
thread. The Spend and Requests pages' part."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.bridge.convert import (
    budget_view,
    detail,
    record_from_row,
    sentence,
    start_of_day,
    tokens_per_minute,
    top_session,
)
from app.bridge.data import BudgetView, RequestDetail, RequestRecord, SeriesPoint, SpendData
from app.bridge.engine import EngineApi
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.events import BudgetAlert
from app.ledger.rows import Bucket
from app.units import fmt_money

BUCKET_SECONDS: dict[Bucket, float] = {"hour": 3600.0, "day": 86400.0, "month": 30 * 86400.0}
BUCKET_SPAN: dict[Bucket, float] = {"hour": 24 * 3600.0, "day": 30 * 86400.0, "month": 365 * 86400.0}
REFRESH_MS = 5000  # budgets and today's spend, at the latest
DEBOUNCE_MS = 1500  # at most one budget read this often under a flood of finished requests


class Usage(QObject):
    budgetsChanged = Signal(list)  # list[BudgetView]
    spendTodayChanged = Signal(float)
    spendReady = Signal(object)  # SpendData
    requestsReady = Signal(list)  # list[RequestRecord]
    requestDetailReady = Signal(object)  # RequestDetail | None
    requestStarted = Signal(object)  # RequestRecord in flight (from the live part), for the request log
    requestFinished = Signal(object)  # RequestRecord, for the request log and the Spend page

    def __init__(self, jobs: Jobs, notices: Notices, *, seen: Callable[[str], RequestRecord | None],
                 session_labels: Callable[[], dict[str, str]], parent: QObject | None = None) -> None:
        """``seen`` finds a request the bridge saw itself (not in the ledger yet); ``session_labels``
        names the live sessions for the top-sessions table."""
        super().__init__(parent)
        self._jobs = jobs
        self._notices = notices
        self._seen = seen
        self._session_labels = session_labels
        self._engine: EngineApi | None = None
        self._budgets: list[BudgetView] = []
        self._spend_today = 0.0
        self._alerted: set[tuple[str, str]] = set()
        self._slow = QTimer(self)
        self._slow.setInterval(REFRESH_MS)
        self._slow.timeout.connect(self.refresh_budgets)
        self._shown_alerts: set[str] = set()  # the budget banners on screen (their notice keys)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.refresh_budgets)

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine
        if engine is None:
            self._slow.stop()
            self._debounce.stop()
        else:
            self._slow.start()
            self.refresh_budgets()

    # ------------------------------------------------------------------ budgets

    def budgets(self) -> list[BudgetView]:
        return list(self._budgets)

    def spend_today(self) -> float:
        return self._spend_today

    def daily_limit(self) -> float | None:
        for b in self._budgets:
            if b.scope == "all" and b.period == "day":
                return b.limit_usd
        return None

    def state(self) -> str:
        """ok | warn | limit: the worst of the budgets."""
        states = {b.state for b in self._budgets}
        return "limit" if "limit" in states else "warn" if "warn" in states else "ok"

    @Slot(object)
    def on_finished(self, rec: RequestRecord) -> None:
        if not self._debounce.isActive():
            self._debounce.start()  # at most one budget read per 1.5 s under a flood
        self.requestFinished.emit(rec)

    def budgets_saved(self) -> None:
        self._alerted.clear()
        self.refresh_budgets()

    def refresh_budgets(self) -> None:
        eng = self._engine
        if eng is None:
            return
        guard, reader = eng.budgets, eng.reader

        def work() -> tuple[list[BudgetView], float]:
            return [budget_view(s) for s in guard.status()], reader.spent(start_of_day())

        def done(result: tuple[list[BudgetView], float] | None, error: BaseException | None) -> None:
            if error is not None or result is None:
                return
            views, spent = result
            if views != self._budgets:
                self._budgets = views
                self.budgetsChanged.emit(views)
            if spent != self._spend_today:
                self._spend_today = spent
                self.spendTodayChanged.emit(spent)
            self._clear_stale_alerts(views)
            for v in views:  # a budget that reset: alert again next time
                if v.state == "ok":
                    self._alerted = {k for k in self._alerted if not k[0].startswith(v.scope)}

        self._jobs.submit(work, done)

    @Slot(object)
    def _clear_stale_alerts(self, views: list[BudgetView]) -> None:
        """A budget banner goes once its budget is no longer past its line (the limit was raised or
        removed, or the period reset): it must not contradict the toolbar."""
        live = {f"budget:{v.scope} / {v.period} ${v.limit_usd:g}" for v in views if v.state != "ok"}
        for key in [k for k in self._shown_alerts if k not in live]:
            self._shown_alerts.discard(key)
            self._notices.clear(key)

    def on_budget_alert(self, ev: BudgetAlert) -> None:
        key = (ev.budget, ev.level)
        if key in self._alerted:
            return
        self._alerted.add(key)
        resets = time.strftime('%a %H:%M', time.localtime(ev.resets_at))
        if ev.level == "limit":
            title = f"Budget reached: {ev.budget}"
            text = (f"{fmt_money(ev.spent_usd)} of {fmt_money(ev.limit_usd)} spent. {budget_action_sentence(ev.action)} "
                    f"It resets {resets}. Raise the limit in Settings or switch to a local backend.")
        else:
            title = f"Budget nearly used: {ev.budget}"
            text = (f"{fmt_money(ev.spent_usd)} of {fmt_money(ev.limit_usd)} spent ({ev.spent_usd / ev.limit_usd:.0%}). "
                    f"At the limit: {_lower_first(budget_action_sentence(ev.action))}")
        self._shown_alerts.add(f"budget:{ev.budget}")
        self._notices.say("warn" if ev.level == "warn" else "error", title, text.strip(), action="spend",
                          key=f"budget:{ev.budget}", notify=True)
        self._debounce.start()

    # ------------------------------------------------------------------ history (Spend page)

    def load_spend(self, bucket: str = "hour", group_by: str = "backend") -> None:
        """Query the ledger for the Spend page; ``spendReady(SpendData)`` follows."""
        eng = self._engine
        if eng is None:
            return
        b: Bucket = "day" if bucket == "day" else "month" if bucket == "month" else "hour"
        by: Literal["backend", "model"] = "model" if group_by == "model" else "backend"
        until = time.time()
        since = until - BUCKET_SPAN[b]
        labels = self._session_labels()
        reader, guard = eng.reader, eng.budgets

        def work() -> SpendData:
            raw = reader.cost_series(since, until, b, by)
            series = tuple(SeriesPoint(p.bucket_start, p.key or "?", p.cost_usd, p.tokens, p.requests) for p in raw)
            tpm = tuple(tokens_per_minute(r) for r in reader.tokens_per_minute(until - 3 * 3600, until))
            tops = tuple(top_session(r, labels) for r in reader.top_sessions(since, 10))
            keys = tuple(sorted({p.key for p in series}, key=lambda k: -sum(x.cost_usd for x in series if x.key == k)))
            plan = reader.subscription_totals(since, until)
            return SpendData(b, by, since, until, BUCKET_SECONDS[b], series, tpm, tops,
                             tuple(budget_view(s) for s in guard.status()),
                             total_cost=sum(p.cost_usd for p in series), total_requests=sum(p.requests for p in series),
                             unpriced_requests=sum(p.unpriced_requests for p in raw), keys=keys,
                             api_equiv_usd=plan.api_equiv_usd, plan_requests=plan.requests)

        def done(result: SpendData | None, error: BaseException | None) -> None:
            if error is not None:
                self._notices.say("error", "The usage history could not be read", sentence(error), key="ledger")
                return
            self.spendReady.emit(result)

        self._jobs.submit(work, done)

    # ------------------------------------------------------------------ the request log (Requests page)

    def load_requests(self, limit: int = 1000) -> None:
        """The request log, newest first; ``requestsReady(list[RequestRecord])`` follows."""
        eng = self._engine
        if eng is None:
            return
        reader = eng.reader

        def work() -> list[RequestRecord]:
            return [record_from_row(r) for r in reader.requests(limit=limit)]

        def done(result: list[RequestRecord] | None, error: BaseException | None) -> None:
            if error is not None:
                self._notices.say("error", "The request log could not be read", sentence(error), key="ledger")
                return
            self.requestsReady.emit(result)

        self._jobs.submit(work, done)

    def load_request_detail(self, request_id: str) -> None:
        eng = self._engine
        if eng is None:
            return
        reader = eng.reader

        def work() -> RequestDetail | None:
            d = reader.request_detail(request_id)
            return detail(d) if d is not None else None

        def done(result: RequestDetail | None, error: BaseException | None) -> None:
            if error is not None:
                result = None
            if result is None:  # not in the ledger yet: what we saw ourselves
                rec = self._seen(request_id)
                result = detail(rec) if rec is not None else None
            self.requestDetailReady.emit(result)

        self._jobs.submit(work, done)


def budget_action_sentence(action: str) -> str:
    """What a budget does at its limit, as a sentence (the config's ``action``)."""
    if action.startswith("downgrade:"):
        backend, _, model = action[len("downgrade:"):].partition(",")
        return f"Requests now go to {backend.strip()}{' / ' + model.strip() if model.strip() else ''}."
    if action == "warn":
        return "Requests go on: this budget only warns."
    return "New requests are refused."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
