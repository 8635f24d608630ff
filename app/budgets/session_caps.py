"""Per-session cost caps: one Claude Code session may spend at most so much, while the others go on.

A cap comes from ``[[budgets]] scope = "session"`` (every session; ``period`` does not apply: a cap
lasts the session's life) or from the app for one live session (``set_cap``; it wins over the config's).
The gateway asks ``admit(route, session_id)`` before the other budgets: in memory only, no I/O. A
session past its cap is refused with 429 ``billing_error`` and ``x-should-retry: false`` (Claude Code
shows the sentence and stops instead of retrying), or downgraded when the cap's action says
``downgrade:<backend>,<model>``; ``warn`` lets it through. ``sink`` counts each finished request's cost
against its session; spend before a restart is read from the ledger once, at start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from app.budgets.limits import downgrade_model
from app.catalog.prices import PriceBook
from app.config import BackendConfig, BudgetConfig
from app.events import RequestFinished
from app.proxy.routing import Refusal, Route
from app.units import fmt_money

if TYPE_CHECKING:
    from app.ledger.reader import LedgerReader

SESSION_SCOPE = "session"
SEED_SINCE_S = 7 * 24 * 3600  # sessions older than this are not looked up at start
SEED_LIMIT = 2000


def is_session_budget(b: BudgetConfig) -> bool:
    return b.scope == SESSION_SCOPE


def session_refusal(session_id: str, spent: float, cap: float, from_app: bool) -> Refusal:
    where = ("set for this session in the Patchbay window" if from_app
             else 'set for every session by [[budgets]] scope = "session" in Patchbay\'s config')
    message = (f"Patchbay session cap reached: this Claude Code session ({session_id[:8]}) has spent "
               f"{fmt_money(spent)} of its {fmt_money(cap)} cap ({where}). Other sessions go on. Start a new "
               "session, or raise this session's cap in the Patchbay window (Dashboard → select the session → "
               "Cost cap).")
    return Refusal(429, "billing_error", message, (
        (b"x-should-retry", b"false"), (b"anthropic-ratelimit-unified-status", b"rejected")))


class SessionCaps:
    def __init__(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook, *,
                 backends: Mapping[str, BackendConfig] | None = None) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, float] = {}
        self._caps: dict[str, float] = {}  # set in the app for one session
        self.reconfigure(budgets, prices, backends)

    def reconfigure(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook,
                    backends: Mapping[str, BackendConfig] | None = None) -> None:
        self.default: BudgetConfig | None = next((b for b in budgets if is_session_budget(b)), None)
        self._prices = prices
        self._backends = backends if backends is not None else prices.backends

    def seed(self, reader: LedgerReader, now: float | None = None) -> None:
        """What sessions spent before this start (reads the disk: call it off the gateway loop)."""
        now = time.time() if now is None else now
        try:
            rows = reader.top_sessions(now - SEED_SINCE_S, SEED_LIMIT)
        except Exception:
            return
        with self._lock:
            for s in rows:
                if s.session_id:
                    self._spent[s.session_id] = max(self._spent.get(s.session_id, 0.0), float(s.cost_usd or 0.0))

    # ------------------------------------------------------------------ caps set in the app

    def set_cap(self, session_id: str, limit_usd: float | None) -> None:
        with self._lock:
            if limit_usd is None or limit_usd <= 0:
                self._caps.pop(session_id, None)
            else:
                self._caps[session_id] = float(limit_usd)

    def cap(self, session_id: str) -> tuple[float, bool] | None:
        """(limit, set in the app) for the session, or None when it has no cap."""
        if session_id in self._caps:
            return self._caps[session_id], True
        return (self.default.limit_usd, False) if self.default is not None else None

    def spent(self, session_id: str) -> float:
        return self._spent.get(session_id, 0.0)

    # ------------------------------------------------------------------ the gateway's hook

    def admit(self, route: Route, session_id: str | None) -> Route | Refusal:
        if not session_id:
            return route
        cap = self.cap(session_id)
        if cap is None:
            return route
        limit, from_app = cap
        spent = self._spent.get(session_id, 0.0)
        if spent < limit:
            return route
        action = self.default.action if (self.default is not None and not from_app) else "block"
        if action == "warn":
            return route
        if action.startswith("downgrade:"):
            backend, _, model = action[len("downgrade:"):].partition(",")
            backend, wanted = backend.strip(), model.strip() or None
            return Route(backend, downgrade_model(self._backends, backend, wanted, route.requested_model), "budget:session",
                         route.requested_model)
        return session_refusal(session_id, spent, limit, from_app)


    def sink(self, event: object) -> None:
        """EventHub sink: a finished request's cost counts against its session. Never raises."""
        if type(event) is not RequestFinished or not event.session_id:
            return
        try:
            cost = self._prices.cost_of(event)
        except Exception:
            return
        if cost:
            with self._lock:
                self._spent[event.session_id] = self._spent.get(event.session_id, 0.0) + cost
