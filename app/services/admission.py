"""Budget admission with reservations: one limit for every instance, and no overshoot from a burst.

Before the upstream call the gateway asks ``Admission.reserve(route, request_id, body)``. In one
transaction of the ledger's database (``admission_store.py``) it reads each budget's spend for
its period plus what live reservations hold, decides (pass, downgrade, block, as
``[[budgets]] action`` says), and reserves the request's expected cost against every budget the
final route falls under: estimated input tokens × input price + min(``max_tokens``, the output
bound) × output price. The output bound is ``[ledger] reserve_output_tokens`` when set, else the
95th percentile of the output of the last 200 successful requests in the ledger, else 4096 — Claude
Code sends ``max_tokens`` 128000, and a worst-case reservation of that would block a $20 budget
after two Opus requests. The finished request's ledger row settles the reservation to the real
cost (or to nothing, for a failure); a hold of an instance that died expires after ``hold_ttl_s``.
So the spend after a burst exceeds a limit by at most what requests in flight used beyond their
reservations.

In team mode the gateway passes the verified sender: ``each-user`` and ``user:EMAIL`` budgets
charge the counter ``user:<id>``, ``group:NAME`` the counter of that group when the sender is in it
(``app/team/policy.py::subject_of``); the same transaction holds against all of them and the
``all`` and ``backend:`` counters, and a row settles each one it falls under.

A block answers 429 ``billing_error`` with ``x-should-retry: false``, ``retry-after`` (seconds to
the reset) and ``anthropic-ratelimit-unified-status: rejected``: Claude Code then shows the message
and stops instead of retrying. While the database cannot be reached, ``[ledger] on_unreachable``
decides: "open" lets requests through, "closed" answers 503 ``overloaded_error``; ``degraded``
says so (``/ready``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import tzinfo
from typing import Any, Mapping, Sequence

from app.config import BackendConfig, BudgetConfig
from app.events import RequestFinished, Usage
from app.proxy.routing import Refusal, Route
from app.services.admission_store import BudgetStore, CounterKey, Numbers
from app.services.budgets import block_refusal, budget_matches, period_bounds, warning_headers
from app.services.ledger_store import PLAN_PREFIX
from app.services.pricing import PriceBook
from app.team.identity import STOP_RETRYING
from app.team.policy import subject_of
from app.team_config import DEFAULT_RESERVE_OUTPUT

log = logging.getLogger("patchbay.admission")

HOLD_TTL_S = 900.0  # a reservation outlives no request by more than this (an instance that died)
RETRY_S = 2.0  # while the database is away, ask it again at most this often (requests meanwhile answer at once)
P95_SAMPLE = 200
P95_REFRESH_S = 300.0
SETTLING_MAX = 4096  # finished requests remembered until their rows are written (a bound, not a target)


class _StillDown(Exception):
    pass


def _scope_backend(scope: str) -> str | None:
    return scope[len("backend:"):] if scope.startswith("backend:") else None


def p95(values: Sequence[int]) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return int(s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)])


class Admission:
    """The gateway's budget hook (``reserve``), over a ``BudgetStore``."""

    def __init__(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook, store: BudgetStore, *,
                 instance: str, on_unreachable: str = "open", reserve_output_tokens: int = 0,
                 tz: tzinfo | None = None, backends: Mapping[str, BackendConfig] | None = None,
                 hold_ttl_s: float = HOLD_TTL_S, now: Any = time.time) -> None:
        self.store = store
        self.instance = instance
        self.on_unreachable = on_unreachable
        self.hold_ttl_s = hold_ttl_s
        self._now = now
        self._tz = tz
        self._reserve_setting = reserve_output_tokens
        self._p95: int | None = None
        self._p95_at = -math.inf
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="patchbay-admission")
        self.degraded: str | None = None  # why budgets cannot be checked now; None: they can
        self._retry_at = 0.0
        # requests this instance finished whose rows may not be written yet: id -> (real cost, when)
        self._settling: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        # requests admitted past a budget's warn_at: id -> the utilisation headers their answer carries
        self._warnings: collections.OrderedDict[str, tuple[tuple[bytes, bytes], ...]] = collections.OrderedDict()
        self.reconfigure(budgets, prices, backends)

    def reconfigure(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook,
                    backends: Mapping[str, BackendConfig] | None = None, reserve_output_tokens: int | None = None,
                    on_unreachable: str | None = None) -> None:
        self.budgets = budgets
        self.prices = prices
        self.backends = backends if backends is not None else prices.backends
        if reserve_output_tokens is not None:
            self._reserve_setting = reserve_output_tokens
        if on_unreachable is not None:
            self.on_unreachable = on_unreachable

    def revived(self) -> None:
        """The store's database answers again (``pg_revive``): the next request asks it at once, and
        ``/ready`` stops saying that budgets cannot be checked."""
        self._retry_at = 0.0
        if self.degraded is not None:
            log.info("budgets can be checked again")
            self.degraded = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    # ------------------------------------------------------------------ finished requests

    @property
    def counts_subscription(self) -> bool:
        """Some budget counts what a Claude subscription's requests are worth (include_subscription):
        the gateway then admits those requests too."""
        return any(b.include_subscription for b in self.budgets)

    def sink(self, event: object) -> None:
        """EventHub sink: a finished request's real cost, so that its hold counts at that cost until
        its row settles it (see admission_store.py). O(1), never raises. A request a Claude
        subscription paid for holds only on include_subscription counters: its API-equivalent value."""
        if type(event) is not RequestFinished or event.endpoint != "messages":
            return
        try:
            cost = float((self.prices.api_equivalent(event) if event.plan == "subscription"
                          else self.prices.cost_of(event)) or 0.0)
        except Exception:
            cost = 0.0
        self._note_cost(event.request_id, cost)

    def finished_early(self, request_id: str, backend: str, model: str, usage: Usage, started_at: float) -> None:
        """The gateway's call just before the client gets the end of an answer (its final usage
        known): the same as ``sink`` a moment sooner. The gateway publishes the finished request
        only once the upstream's body has ended, and Claude Code may send its next request before
        that; without this the last request's hold would still count at its estimate for it."""
        try:
            cost = float(self.prices.cost(backend, model, usage, at=started_at) or 0.0)
        except Exception:
            return
        self._note_cost(request_id, cost)

    def _note_cost(self, request_id: str, cost: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._settling[request_id] = (cost, now)
            while self._settling:
                oldest, (_c, at) = next(iter(self._settling.items()))
                if len(self._settling) <= SETTLING_MAX and now - at < self.hold_ttl_s:
                    break
                del self._settling[oldest]

    def settled(self, ids: Sequence[str]) -> None:
        """The ledger committed these rows (its on_commit): their holds are gone."""
        with self._lock:
            for i in ids:
                self._settling.pop(i, None)

    def headers_for(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        """The headers the answer to an admitted request carries (the gateway asks once): Anthropic's
        unified rate-limit family with ``allowed_warning`` once a budget is past its ``warn_at``."""
        with self._lock:
            return self._warnings.pop(request_id, ())

    def _warn(self, request_id: str, route: Route, budgets: tuple[BudgetConfig, ...],
              keys: dict[BudgetConfig, CounterKey], numbers: Numbers) -> None:
        worst: tuple[float, BudgetConfig, float] | None = None
        for b in budgets:
            spent = numbers.get(keys[b], (0.0, 0.0))[0]
            if b.limit_usd > 0 and spent >= b.limit_usd * b.warn_at and budget_matches(b, route.backend):
                if worst is None or spent / b.limit_usd > worst[0]:
                    worst = (spent / b.limit_usd, b, spent)
        with self._lock:
            if worst is None:
                self._warnings.pop(request_id, None)
                return
            _f, b, spent = worst
            self._warnings[request_id] = warning_headers(b, spent, keys[b][2])
            while len(self._warnings) > SETTLING_MAX:  # never asked for (a client gone first): dropped
                self._warnings.popitem(last=False)

    def _settling_costs(self) -> dict[str, float]:
        with self._lock:
            return {i: c for i, (c, _at) in self._settling.items()}

    # ------------------------------------------------------------------ the output bound

    def output_bound(self) -> tuple[int, str]:
        """(output tokens reserved per request at most, where the number comes from)."""
        if self._reserve_setting > 0:
            return self._reserve_setting, "[ledger] reserve_output_tokens"
        now = time.monotonic()
        if now - self._p95_at > P95_REFRESH_S:
            self._p95_at = now
            try:
                self._p95 = p95(self.store.recent_outputs(P95_SAMPLE))
            except Exception:
                pass
        if self._p95 is not None:
            return max(256, self._p95), f"the 95th percentile of the last {P95_SAMPLE} outputs"
        return DEFAULT_RESERVE_OUTPUT, "the default"

    def estimate(self, route: Route, body: Mapping[str, Any], input_tokens: int, at: float) -> float:
        max_tokens = body.get("max_tokens")
        out = min(int(max_tokens) if isinstance(max_tokens, int) else DEFAULT_RESERVE_OUTPUT, self.output_bound()[0])
        cost = self.prices.cost(route.backend, route.model, Usage(input_tokens, out), at=at)
        return float(cost or 0.0)

    # ------------------------------------------------------------------ admission

    async def reserve(self, route: Route, request_id: str, body: Mapping[str, Any], user: str | None = None,
                      groups: tuple[str, ...] = (), subscription: bool = False) -> Route | Refusal:
        """The gateway's call (off its loop: the transaction runs on a worker thread). ``user`` and
        ``groups``: the verified sender in team mode (their budgets apply), None in single-user mode.
        ``subscription``: a Claude subscription pays; only include_subscription budgets apply."""
        if not self.budgets:
            return route
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.reserve_sync, route, request_id, body, True, user, groups,
                                          subscription)

    def __call__(self, route: Route) -> Route | Refusal:  # the plain Admission hook: decide, hold nothing
        return self.reserve_sync(route, "", {"max_tokens": 1, "messages": []}, hold=False)

    def reserve_sync(self, route: Route, request_id: str, body: Mapping[str, Any], hold: bool = True,
                     user: str | None = None, groups: tuple[str, ...] = (),
                     subscription: bool = False) -> Route | Refusal:
        # the budgets that apply to this sender, each with the counter it charges: a person's
        # (each-user, user:) and their groups' budgets only in team mode (see policy.subject_of);
        # an include_subscription budget charges "plan+<subject>", and is the only kind a request
        # a Claude subscription pays for falls under
        subjects = {b: (PLAN_PREFIX + s if b.include_subscription else s) for b in self.budgets
                    if (s := subject_of(b.scope, user, groups)) is not None
                    and (b.include_subscription or not subscription)}
        budgets = tuple(subjects)
        if not budgets:
            return route
        from app.proxy.tokens import estimate_tokens

        now = self._now()
        try:
            input_tokens = estimate_tokens(dict(body)) if body.get("messages") else 0
        except Exception:
            input_tokens = 0
        bounds = {b: period_bounds(b.period, now, self._tz) for b in budgets}
        keys = {b: (subjects[b], *bounds[b]) for b in budgets}

        def decide(numbers: Numbers) -> tuple[Route | Refusal, list[tuple[CounterKey, float]]]:
            final = self._decide(route, budgets, keys, numbers, now, team=user is not None)
            if isinstance(final, Refusal) or not hold:
                return final, []
            self._warn(request_id, final, budgets, keys, numbers)
            amount = self.estimate(final, body, input_tokens, now)
            if amount <= 0:
                return final, []
            held = {keys[b] for b in budgets if budget_matches(b, final.backend)}
            return final, [(k, amount) for k in sorted(held)]

        try:
            if self.degraded is not None and time.monotonic() < self._retry_at:
                raise _StillDown()  # asked a moment ago: answer now, do not make every request wait for it
            result = self.store.reserve(request_id, self.instance, list(keys.values()), decide, now,
                                        now + self.hold_ttl_s, self._settling_costs())
        except Exception as exc:
            if not isinstance(exc, _StillDown):
                reason = (f"Patchbay cannot check budgets: the ledger database does not answer "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}).")
                if self.degraded is None:
                    log.warning("%s on_unreachable = %s.", reason, self.on_unreachable)
                self.degraded = reason
                self._retry_at = time.monotonic() + RETRY_S
            if self.on_unreachable == "closed":  # not overloaded_error, which Claude Code retries and words
                # as "The API is at capacity": a 503 of another type with x-should-retry: false ends at
                # once and shows this sentence, whatever the credential's source (docs/protocol.md)
                return Refusal(503, "api_error", f"{self.degraded} This gateway is set to refuse requests "
                               "then ([ledger] on_unreachable = \"closed\"); try again in a minute.",
                               headers=STOP_RETRYING)
            return route
        if self.degraded is not None:
            log.info("budgets can be checked again")
            self.degraded = None
        return result

    def _decide(self, route: Route, budgets: tuple[BudgetConfig, ...], keys: dict[BudgetConfig, CounterKey],
                numbers: Numbers, now: float, team: bool = False) -> Route | Refusal:
        applied: set[int] = set()
        for _ in range(len(budgets) + 1):
            over = []
            for i, b in enumerate(budgets):
                spent, held = numbers.get(keys[b], (0.0, 0.0))
                if i not in applied and spent + held >= b.limit_usd and budget_matches(b, route.backend):
                    over.append((i, b, spent, held))
            if not over:
                return route
            down = next(((i, b) for i, b, _s, _h in over if b.downgrade_to is not None), None)
            if down is not None:
                i, b = down
                applied.add(i)
                target, model = b.downgrade_to  # type: ignore[misc]
                if target == route.backend and (model is None or model == route.model):
                    continue
                route = Route(target, self._model_on(target, model, route.requested_model), f"budget:{b.label}",
                              route.requested_model)
                continue
            block = next(((b, s, h) for _i, b, s, h in over if b.action == "block"), None)
            if block is not None:
                b, spent, held = block
                return block_refusal(b, spent, keys[b][2], now, self._tz, held,
                                     subject=keys[b][0].removeprefix(PLAN_PREFIX), team=team)
            return route
        return route

    def _model_on(self, backend_id: str, wanted: str | None, requested: str) -> str:
        if wanted:
            return wanted
        b = self.backends.get(backend_id)
        if b is None or b.kind == "anthropic" or not b.models or requested in b.models:
            return requested
        return b.models[0]
