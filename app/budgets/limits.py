"""Spending limits: their periods, their state, their alerts, and the words of a refusal.

The decision for the next request (pass, downgrade, block) is admission's alone
(``app/budgets/admission.py``, the gateway's budget hook), which uses the periods, matching,
refusal and warning headers defined here. ``BudgetGuard`` keeps each budget's spend in memory for
the window and the tray: ``sink`` adds each finished request's cost to the budgets it falls under
(by the backend it actually went to) and publishes a ``BudgetAlert`` once per period when a budget
crosses its warn line and once when it reaches its limit; ``status`` says where each one stands.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from app.catalog.prices import PriceBook
from app.config import BackendConfig, BudgetConfig
from app.events import BudgetAlert, RequestFinished
from app.proxy.routing import Refusal
from app.units import fmt_money

if TYPE_CHECKING:
    from app.ledger.reader import LedgerReader

BudgetState = Literal["ok", "warn", "limit"]


# --------------------------------------------------------------------------- periods


def _midnight(d: date, tz: tzinfo | None) -> float:
    """Local midnight at the start of ``d`` as epoch seconds (DST-correct)."""
    if tz is None:
        return time.mktime((d.year, d.month, d.day, 0, 0, 0, 0, 0, -1))
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def _local_date(now: float, tz: tzinfo | None) -> date:
    return datetime.fromtimestamp(now, tz).date() if tz is not None else datetime.fromtimestamp(now).date()


def period_bounds(period: str, now: float, tz: tzinfo | None = None) -> tuple[float, float]:
    """Start of the current day / week (Monday) / month in local time (``tz``, default the
    system's), and the moment it resets."""
    d = _local_date(now, tz)
    if period == "day":
        start, end = d, d + timedelta(days=1)
    elif period == "week":
        start = d - timedelta(days=d.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = d.replace(day=1)
        end = (start.replace(year=start.year + 1, month=1) if start.month == 12
               else start.replace(month=start.month + 1))
    else:
        raise ValueError(f"unknown budget period {period!r}: use day, week or month")
    return _midnight(start, tz), _midnight(end, tz)


def format_reset(resets_at: float, now: float, tz: tzinfo | None = None) -> str:
    """'at 00:00 tomorrow', 'on Mon 30 Nov at 00:00' — local time, for messages."""
    dt = datetime.fromtimestamp(resets_at, tz) if tz is not None else datetime.fromtimestamp(resets_at)
    today = _local_date(now, tz)
    hm = dt.strftime("%H:%M")
    if dt.date() == today:
        return f"at {hm} today"
    if dt.date() == today + timedelta(days=1):
        return f"at {hm} tomorrow ({dt.strftime('%a %d %b')})"
    return f"on {dt.strftime('%a %d %b')} at {hm}"


def _scope_backend(scope: str) -> str | None:
    return scope[len("backend:"):] if scope.startswith("backend:") else None


def budget_matches(budget: BudgetConfig, backend: str) -> bool:
    b = _scope_backend(budget.scope)
    return b is None or b == backend


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class BudgetStatus:
    budget: BudgetConfig
    spent_usd: float
    limit_usd: float
    fraction: float
    resets_at: float
    state: Literal["ok", "warn", "limit"]
    period_start: float = 0.0
    unpriced_requests: int = 0  # requests in this period whose model has no price (not counted)


def _state(budget: BudgetConfig, spent: float) -> BudgetState:
    if spent >= budget.limit_usd:
        return "limit"
    if spent >= budget.limit_usd * budget.warn_at:
        return "warn"
    return "ok"


def budget_status_from_ledger(budgets: tuple[BudgetConfig, ...], reader: LedgerReader,
                              now: float | None = None, tz: tzinfo | None = None) -> list[BudgetStatus]:
    """Each budget's state read from the ledger (for the CLI or a GUI without a live guard)."""
    now = time.time() if now is None else now
    out = []
    for b in (b for b in budgets if b.scope != "session"):  # a session cap is no period's (session_caps.py)
        start, reset = period_bounds(b.period, now, tz)
        spent = _spent(reader, start, _scope_backend(b.scope), b.include_subscription)
        out.append(BudgetStatus(b, spent, b.limit_usd, spent / b.limit_usd, reset, _state(b, spent), start))
    return out


def _spent(reader: LedgerReader, start: float, backend: str | None, plan: bool) -> float:
    """What a budget's scope spent since ``start``; with include_subscription (``plan``) also what
    the requests a Claude subscription paid for are worth at API prices."""
    spent = reader.spent(start, backend)
    return spent + reader.subscription_totals(start, None, backend).api_equiv_usd if plan else spent


def _spent_by(subject: str) -> str:
    kind, _, value = subject.partition(":")
    if subject == "all":
        return "on all backends"
    if kind == "backend":
        return f"on the backend {value!r}"
    if kind == "user":
        return f"by {value}"
    return f"by the group {value!r}"


def block_refusal(budget: BudgetConfig, spent: float, resets_at: float, now: float, tz: tzinfo | None,
                  held: float = 0.0, subject: str | None = None, team: bool = False) -> Refusal:
    """The 429 of a used-up ``block`` budget. ``held``: what requests still in flight have reserved
    against it (admission's holds), said apart from what is spent. ``subject``: the counter it
    charges (``user:alice@corp.example`` for an each-user budget); the budget's scope by default.
    The budget's ``blocked_message`` (whom to ask, on a team gateway) ends the message; without one a
    person's or group's budget, and any budget on a team gateway (``team``: an org-wide ``all`` or
    ``backend:`` one too), sends them to their admin; a single user to their settings."""
    subject = subject or budget.scope
    period = {"day": "today", "week": "this week", "month": "this month"}.get(budget.period, f"this {budget.period}")
    scope = _spent_by(subject)
    limit = fmt_money(budget.limit_usd)
    if held > 0 and spent < budget.limit_usd:  # requests in flight fill it, not spending
        state = (f"is full for now: {fmt_money(spent)} spent {period} and {fmt_money(held)} held by requests still in "
                 f"flight, of {limit} {scope}. Those holds settle to what the requests really cost as they finish, "
                 "which may leave room; otherwise it")
    elif held > 0:
        state = (f"is used up: {fmt_money(spent)} of {limit} spent {period} {scope}, and {fmt_money(held)} more is "
                 "held by requests still in flight. It")
    else:
        state = f"is used up: {fmt_money(spent)} of {limit} spent {period} {scope}. It"
    if budget.blocked_message:
        advice = budget.blocked_message.strip()
    elif budget.is_team_scope:
        advice = "To go on now, ask your Patchbay admin to raise this budget or to move you to another one."
    elif team:
        advice = "To go on now, ask your Patchbay admin: this budget is the team gateway's, set in its config."
    else:
        advice = ("To go on now, raise limit_usd for this budget in Patchbay's settings, or set its action to "
                  "\"downgrade:<backend>,<model>\" to continue on a cheaper or local model.")
    clock = "the gateway's local time" if budget.is_team_scope or team else "local time"
    message = f"Patchbay budget \"{budget.label}\" {state} resets {format_reset(resets_at, now, tz)} ({clock}). {advice}"
    retry = str(max(1, int(math.ceil(resets_at - now)))).encode()
    return Refusal(429, "billing_error", message, (
        (b"x-should-retry", b"false"), (b"retry-after", retry),
        (b"anthropic-ratelimit-unified-status", b"rejected"),
        (b"anthropic-ratelimit-unified-reset", str(int(resets_at)).encode()),
    ))


# Claude Code reads Anthropic's unified rate-limit headers and shows the utilisation of the window
# they name; a day budget stands in the five-hour ("session") window, a week or month one in the
# seven-day ("weekly") window, the nearest of the windows it knows.
_WINDOW = {"day": (b"5h", b"five_hour"), "week": (b"7d", b"seven_day"), "month": (b"7d", b"seven_day")}


def warning_headers(budget: BudgetConfig, spent: float, resets_at: float) -> tuple[tuple[bytes, bytes], ...]:
    """What a request admitted past a budget's ``warn_at`` carries: ``allowed_warning`` with the
    budget's utilisation (0..1) and its reset (epoch seconds)."""
    short, claim = _WINDOW.get(budget.period, (b"7d", b"seven_day"))
    used = f"{min(max(spent / budget.limit_usd, 0.0), 1.0):.2f}".encode() if budget.limit_usd > 0 else b"1.00"
    reset = str(int(resets_at)).encode()
    p = b"anthropic-ratelimit-unified-"
    return ((p + b"status", b"allowed_warning"), (p + b"reset", reset), (p + b"representative-claim", claim),
            (p + short + b"-status", b"allowed_warning"), (p + short + b"-utilization", used),
            (p + short + b"-reset", reset))


# --------------------------------------------------------------------------- the guard


@dataclass
class _Spend:
    """Money spent in one (scope, period) for the current period; shared by budgets alike."""

    period: str
    backend: str | None
    start: float
    resets_at: float
    spent: float = 0.0
    unpriced: int = 0
    plan: bool = False  # include_subscription: a Claude subscription's requests count at their API-equivalent value


@dataclass
class _Budget:
    config: BudgetConfig
    spend: _Spend
    warned: bool = False
    limited: bool = False


class BudgetGuard:
    def __init__(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook, *,
                 publish: Callable[[BudgetAlert], None], now: Callable[[], float] = time.time,
                 reader: LedgerReader | None = None, tz: tzinfo | None = None) -> None:
        self._publish = publish
        self._now = now
        self._reader = reader
        self._tz = tz
        self._lock = threading.Lock()  # sink vs reconfigure
        self._prices = prices
        self._spends: dict[tuple[str | None, str, bool], _Spend] = {}
        self._budgets: tuple[_Budget, ...] = ()
        self.reconfigure(budgets, prices)

    # ------------------------------------------------------------------ config

    def reconfigure(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook) -> None:
        """New budgets or prices. Spend already counted for a scope and period is kept; a new
        scope is seeded from the ledger (this reads the disk: call it off the gateway loop).
        Per-person and per-group budgets (team scopes) are not this guard's: they are left out."""
        budgets = tuple(b for b in budgets if not b.is_team_scope and b.scope != "session")  # session: session_caps.py
        now = self._now()
        old_spends = self._spends
        wanted: dict[tuple[str | None, str, bool], _Spend] = {}
        for b in budgets:
            key = (_scope_backend(b.scope), b.period, b.include_subscription)
            if key in wanted:
                continue
            start, reset = period_bounds(b.period, now, self._tz)
            prev = old_spends.get(key)
            if prev is not None and prev.start == start:
                wanted[key] = prev
            else:
                try:
                    spent = _spent(self._reader, start, key[0], key[2]) if self._reader is not None else 0.0
                except Exception:  # a team ledger that does not answer yet: admission reads the real numbers
                    spent = 0.0
                wanted[key] = _Spend(b.period, key[0], start, reset, spent, plan=key[2])
        old = {(x.config.scope, x.config.period, x.config.limit_usd, x.config.warn_at): x for x in self._budgets}
        new = []
        for b in budgets:
            spend = wanted[(_scope_backend(b.scope), b.period, b.include_subscription)]
            prev_b = old.get((b.scope, b.period, b.limit_usd, b.warn_at))
            nb = _Budget(b, spend)
            # Already past a line when configured (or at start-up): no alert now, only on crossing.
            nb.warned = prev_b.warned if prev_b else spend.spent >= b.limit_usd * b.warn_at
            nb.limited = prev_b.limited if prev_b else spend.spent >= b.limit_usd
            new.append(nb)
        with self._lock:
            self._prices = prices
            self._spends = wanted
            self._budgets = tuple(new)

    # ------------------------------------------------------------------ periods

    def _roll(self, now: float) -> None:
        for s in self._spends.values():
            if now >= s.resets_at:
                s.start, s.resets_at = period_bounds(s.period, now, self._tz)
                s.spent = 0.0
                s.unpriced = 0
                for b in self._budgets:
                    if b.spend is s:
                        b.warned = b.limited = False

    # ------------------------------------------------------------------ accounting

    def sink(self, event: object) -> None:
        """EventHub sink: counts each finished request's cost. Never raises."""
        if type(event) is not RequestFinished:
            return
        try:
            self._count(event)
        except Exception:
            pass

    def _count(self, ev: RequestFinished) -> None:
        if not self._budgets:
            return
        cost = self._prices.cost_of(ev)
        value = self._prices.api_equivalent(ev) or 0.0  # a Claude subscription paid: counted by include_subscription
        alerts: list[BudgetAlert] = []
        with self._lock:
            now = self._now()
            self._roll(now)
            seen: set[int] = set()
            for s in self._spends.values():
                if (s.backend is None or s.backend == ev.backend) and ev.started_at >= s.start and id(s) not in seen:
                    seen.add(id(s))
                    if cost is None:
                        s.unpriced += 1
                    else:
                        s.spent += cost + (value if s.plan else 0.0)
            if ev.error_type == "billing_error":  # refused, or stopped at its limit, by a budget it names:
                # that budget is reached although what was spent may stay just under it (an answer is
                # stopped before the part that would not fit)
                for b in self._budgets:
                    c = b.config
                    if not b.limited and f'budget "{c.label}"' in (ev.error_message or ""):
                        b.limited = b.warned = True
                        alerts.append(BudgetAlert(c.label, "limit", b.spend.spent, c.limit_usd,
                                                  b.spend.resets_at, c.action))
            priced = not (cost is None or (cost == 0 and not value))
            for b in self._budgets if priced else ():
                if id(b.spend) not in seen or b.limited:
                    continue
                spent, c = b.spend.spent, b.config
                if not b.limited and spent >= c.limit_usd:
                    b.limited = b.warned = True
                    alerts.append(BudgetAlert(c.label, "limit", spent, c.limit_usd, b.spend.resets_at, c.action))
                elif not b.warned and spent >= c.limit_usd * c.warn_at:
                    b.warned = True
                    alerts.append(BudgetAlert(c.label, "warn", spent, c.limit_usd, b.spend.resets_at, c.action))
        for a in alerts:
            try:
                self._publish(a)
            except Exception:
                pass

    def status(self) -> list[BudgetStatus]:
        now = self._now()
        with self._lock:
            self._roll(now)
            return [
                BudgetStatus(b.config, b.spend.spent, b.config.limit_usd, b.spend.spent / b.config.limit_usd,
                             b.spend.resets_at, "limit" if b.limited else _state(b.config, b.spend.spent),
                             b.spend.start, b.spend.unpriced)
                for b in self._budgets
            ]


def downgrade_model(backends: Mapping[str, BackendConfig], backend_id: str, wanted: str | None,
                    requested: str) -> str:
    """The model a downgrade to ``backend_id`` asks for: the one it names, else the one asked for
    where that backend can serve it, else its first listed model."""
    if wanted:
        return wanted
    b = backends.get(backend_id)
    if b is None or b.kind == "anthropic" or not b.models or requested in b.models:
        return requested
    return b.models[0]
