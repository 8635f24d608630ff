"""Budget admission with reservations: one limit for every instance, and no overshoot from a burst.

Before the upstream call the gateway asks ``Admission.reserve(route, request_id, body)``. In one
transaction of the ledger's database (``admission_store.py``) it reads each budget's spend for
its period plus what live reservations hold, decides (pass, downgrade, block, as
``[[budgets]] action`` says), and holds the request's expected cost against every budget the final
route falls under. A whole (non-streamed) answer cannot be stopped part-way: it holds its prompt
and min(``max_tokens``, the output bound): ``[ledger] reserve_output_tokens`` when set, else the
95th percentile of the last 200 outputs, else 4096. A stream holds its prompt at its expected price
(recent prompts' real price against their uncached one) with the rest up to its dearest as
*exposure*, and the output recent streams wrote, never more than the room left; its hold then
follows its real cost and it stops at the cap (``hold_meter.py``). A request is refused only when
even its cheapest prompt does not fit; while others are in flight it waits (``decisions.Wait``)
for them to settle instead. The finished request's ledger row settles the reservation to the real cost (or to
nothing, for a failure); the holds of an instance that died are charged by a live one within a
minute (``hold_reaper.py``), and any hold expires after ``hold_ttl_s`` in any case. docs/team.md
says why the spend ends within a write per stopped stream of the cap.

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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

import orjson

from app.budgets import decisions
from app.budgets.hold_meter import (
    CHARS_PER_TOKEN,
    OUTPUT_FLOOR,
    Flight,
    Metered,
    block_limits,
    cost_so_far,
    grant,
    step_for,
)
from app.budgets.lease import Leases
from app.budgets.limits import block_refusal, budget_matches, period_bounds, warning_headers
from app.budgets.store import NOTHING, BudgetStore, CounterKey, Hold, Meta, Numbers
from app.catalog.prices import PriceBook
from app.config import BackendConfig, BudgetConfig
from app.config.ledger import DEFAULT_RESERVE_OUTPUT
from app.events import RequestFinished, Usage
from app.ledger.store import PLAN_PREFIX
from app.proxy.routing import Refusal, Route
from app.team.identity import STOP_RETRYING
from app.team.policy import subject_of
from app.team.spend_limits import budgets_for

if TYPE_CHECKING:
    from app.proxy.snapshot import AdmissionHook

log = logging.getLogger("patchbay.admission")

HOLD_TTL_S = 900.0  # a reservation outlives no request by more than this (an instance that died)
RETRY_S = 2.0  # while the database is away, ask it again at most this often (requests meanwhile answer at once)
P95_SAMPLE = 200
P95_REFRESH_S = 300.0
WAIT_S = 20.0  # the longest a request waits near the cap for another's prompt cost to be known
SETTLING_MAX = 4096  # finished requests remembered until their rows are written (a bound, not a target)
NEAR_RECHECK_S = 1.0  # a person found near a cap is not offered a lease again for this long
LEASE_AFTER, BUSY_S = 8, 5.0  # counters with this many requests within BUSY_S seconds are worth a lease


class _StillDown(Exception):
    pass


class Admission:
    """The gateway's budget hook (``reserve``), over a ``BudgetStore``."""

    def __init__(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook, store: BudgetStore, *,
                 instance: str, on_unreachable: str = "open", reserve_output_tokens: int = 0,
                 tz: tzinfo | None = None, backends: Mapping[str, BackendConfig] | None = None,
                 hold_ttl_s: float = HOLD_TTL_S, now: Any = None) -> None:
        self.store = store
        self.instance = instance
        self.on_unreachable = on_unreachable
        self.hold_ttl_s = hold_ttl_s
        self._now = now  # a test's fixed clock; None: the store's (PostgreSQL: the database's)
        self._tz = tz
        self._reserve_setting = reserve_output_tokens
        self._p95: int | None = None
        self._p95_at = -math.inf
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="patchbay-admission")
        # streams' holds grow on threads of their own: never queued behind admissions waiting near the cap
        self._grow_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="patchbay-hold")
        self.degraded: str | None = None  # why budgets cannot be checked now; None: they can
        self._retry_at = 0.0
        self._output_avg: float | None = None  # recent streams' output tokens (a moving average)
        self._input_ratio = 1.0  # recent prompts' cost against their uncached price (cache reads make it less)
        # requests this instance finished whose rows may not be written yet: id -> (real cost, when)
        self._settling: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        # requests admitted past a budget's warn_at: id -> the utilisation headers their answer carries
        self._warnings: collections.OrderedDict[str, tuple[tuple[bytes, bytes], ...]] = collections.OrderedDict()
        # streams this instance admitted with a hold, whose hold follows their cost (hold_meter.py)
        self._flights: collections.OrderedDict[str, Flight] = collections.OrderedDict()
        # team mode: the Admin API's spend limits (app/team/spend_limits_store.py::LimitWatcher, its
        # ``limits`` read again every 0.25 s); a person's cap among them replaces the config's (budgets_for)
        self.spend_limits: Any = None
        # far from every cap, requests are admitted on a lease without a database round trip (budget_lease.py)
        self.leases = Leases(store, instance, hold_ttl_s)
        self._near: dict[tuple[CounterKey, ...], float] = {}  # counters found near a cap -> when to look again
        self._recent: dict[tuple[CounterKey, ...], tuple[int, float]] = {}  # counters -> (requests, since when)
        self.reconfigure(budgets, prices, backends)

    def reconfigure(self, budgets: tuple[BudgetConfig, ...], prices: PriceBook,
                    backends: Mapping[str, BackendConfig] | None = None, reserve_output_tokens: int | None = None,
                    on_unreachable: str | None = None) -> None:
        self.budgets = tuple(b for b in budgets if b.scope != "session")  # session caps: session_caps.py
        self.leases.clear()
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
        self.leases.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._grow_pool.shutdown(wait=False, cancel_futures=True)
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
        with self._lock:
            f = self._flights.pop(event.request_id, None)
        if f is not None and event.status < 400 and not event.interrupted and event.usage.output_tokens > 0:
            self._output_avg = event.usage.output_tokens if self._output_avg is None else \
                0.8 * self._output_avg + 0.2 * event.usage.output_tokens

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
        self.leases.finished(request_id, cost)
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
        self.leases.settled(ids)

    def headers_for(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        """The headers the answer to an admitted request carries (the gateway asks once): Anthropic's
        unified rate-limit family with ``allowed_warning`` once a budget is past its ``warn_at``."""
        with self._lock:
            return self._warnings.pop(request_id, ())

    def _warn(self, request_id: str, route: Route, budgets: tuple[BudgetConfig, ...],
              keys: dict[BudgetConfig, CounterKey], numbers: Numbers) -> None:
        worst: tuple[float, BudgetConfig, float] | None = None
        for b in budgets:
            spent = numbers.get(keys[b], NOTHING)[0]
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
                self._p95 = decisions.p95(self.store.recent_outputs(P95_SAMPLE))
            except Exception:
                pass
        if self._p95 is not None:
            return max(256, self._p95), f"the 95th percentile of the last {P95_SAMPLE} outputs"
        return DEFAULT_RESERVE_OUTPUT, "the default"

    def estimate(self, route: Route, body: Mapping[str, Any], input_tokens: int, at: float) -> float:
        """What a request holds when admitted: its prompt and its output bound. A stream's output
        bound is what recent streams wrote (a moving average, at least ``OUTPUT_FLOOR`` tokens, which
        many tiny answers cannot lower; the bound below before any): its hold
        grows as it streams past that and it stops at the cap (hold_meter.py), so the estimate only
        sets how many streams run at once near the cap. A whole answer cannot be stopped part-way:
        it holds ``output_bound``."""
        max_tokens = body.get("max_tokens")
        wanted = int(max_tokens) if isinstance(max_tokens, int) else DEFAULT_RESERVE_OUTPUT
        if body.get("stream"):
            out = min(wanted, max(OUTPUT_FLOOR, int(self._output_avg or self.output_bound()[0])))
        else:
            out = min(wanted, self.output_bound()[0])
        cost = self.prices.cost(route.backend, route.model, Usage(input_tokens, out), at=at)
        return float(cost or 0.0)

    def input_cost(self, route: Route, input_tokens: int, at: float) -> float:
        """The prompt at its uncached price: what is spent once the request is sent, whatever follows."""
        return float(self.prices.cost(route.backend, route.model, Usage(input_tokens, 0), at=at) or 0.0)

    # ------------------------------------------------------------------ a stream's hold follows its cost

    async def meter(self, ex: Metered) -> str | None:
        """The gateway's call before each write of a streamed answer: None to go on, or the sentence
        the stream stops with (its budget is used up). The hold grows in the background while it
        still covers the cost and the next write; the stream waits for it only once it does not."""
        f = self._flights.get(ex.request_id)
        if f is None:
            return None
        if f.cut is None:
            cost = cost_so_far(self.prices, f, ex)
            known = bool(ex.input_tokens or ex.cache_read or ex.cache_creation)
            if known == f.known:  # the most one write's output has added (not the prompt's price becoming known)
                f.lookahead = max(f.lookahead, cost - f.cost)
            f.cost, f.known = cost, known
            if known and f.exposure > 0 and f.pending is None:
                self._learn(f, ex)
            step = step_for(self.prices, f, ex)
            if cost + f.lookahead > f.held:  # the hold no longer covers the next write: wait for room
                if f.pending is not None:
                    await f.pending
                if f.cut is None and cost + f.lookahead > f.held:
                    f.pending = asyncio.ensure_future(self._regrow_async(ex.request_id, f, step, known, True))
                    await f.pending
            elif f.pending is None and (cost + 3 * f.lookahead > f.held or (known and f.exposure > 0)):
                f.pending = asyncio.ensure_future(self._regrow_async(ex.request_id, f, step, known, False))
        # a stream cut here is charged for what it delivered: its row counts the forwarded output
        # (Exchange.streamed_tokens, marked "streamed"); the meter's own count is a cautious bound
        return f.cut

    def covers(self, request_id: str, nbytes: int) -> bool:
        """A stream's hold covers ``nbytes`` more of its answer, however many output tokens they
        count as (``CHARS_PER_TOKEN``), with the margin the meter keeps: the gateway may forward
        them in one write checked once. The meter still checks before that write, with what the
        bytes said (a prompt price they reveal above its expected one, which the exposure covers,
        is seen there): a cut then withholds the whole read, never lets more through."""
        f = self._flights.get(request_id)
        if f is None:
            return True
        if f.cut is not None or f.pending is not None:
            return False
        tokens = math.ceil(nbytes / CHARS_PER_TOKEN)
        bound = float(self.prices.cost(f.backend, f.model, Usage(0, tokens), at=f.at) or 0.0)
        need = f.cost + 2 * f.lookahead + bound
        if need <= f.held:
            return True
        if self.leases.grow(request_id, need + f.exposure):  # on a lease with room: the hold grows in memory
            f.held = need
            return True
        return False

    async def _regrow_async(self, request_id: str, f: Flight, step: float, known: bool, may_cut: bool) -> None:
        try:
            exposure = 0.0 if known else f.exposure
            want = f.cost + 2 * f.lookahead + step
            if self.leases.grow(request_id, want + exposure):  # on a lease with room: in memory, on the loop
                f.held, f.exposure = want, exposure
                return
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._grow_pool, self._regrow, request_id, f, f.cost, step, known, may_cut)
        finally:
            f.pending = None

    def _clock(self) -> float:
        return float(self._now()) if self._now is not None else self.store.clock()

    def _regrow(self, request_id: str, f: Flight, cost: float, step: float, known: bool, may_cut: bool) -> None:
        """Set the hold to the cost so far plus a step, or stop the stream (one transaction).
        ``known``: the upstream said what the prompt cost (its exposure goes). ``may_cut``: the
        stream waits for this (its hold is used up); ahead of that, no room only keeps the hold."""
        now = self._clock()
        exposure = 0.0 if known else f.exposure
        if self.leases.keys_of(request_id) is not None:
            self._regrow_leased(request_id, f, cost, step, exposure, may_cut, now)
            return

        def decide(numbers: Numbers) -> tuple[tuple[float, Any], list[Hold]]:
            amount, over = grant(f, cost, step, numbers, keep=f.held)
            if over is not None and not may_cut:  # the stream goes on while what it holds lasts
                amount, over = max(f.held, cost), None
            return (amount, over), [(k, amount, exposure) for k in f.keys]

        try:
            amount, over = self.store.reserve(request_id, self.instance, list(f.keys), decide, now,
                                              self.hold_ttl_s, self._settling_costs(), grow=True)
        except Exception as exc:  # the database is away: the stream goes on (admission says so at once)
            log.warning("request %s: its budget hold could not grow (%s)", request_id, exc)
            f.held = cost + step
            return
        f.held, f.exposure = amount, exposure
        if over is None:
            return
        spent, others, budget, key = over
        refusal = block_refusal(budget, spent, key[2], now, self._tz, others, subject=key[0].removeprefix(PLAN_PREFIX),
                                team=f.team)
        f.cut = f"This answer was stopped at the budget's limit. {refusal.message}"
        log.info("request %s: stopped at the budget %s (%.4f spent, %.4f held by others, this one %.4f)",
                 request_id, budget.label, spent, others, cost)

    # ------------------------------------------------------------------ far from every cap: a lease

    def _lease_fast(self, route: Route, request_id: str, body: Mapping[str, Any], user: str | None,
                    groups: tuple[str, ...]) -> bool:
        """On the gateway's loop, no I/O: admit the request on its counters' lease if it fits."""
        subjects = {b: s for b in self.budgets if not b.include_subscription
                    and (s := subject_of(b.scope, user, groups)) is not None}
        if not subjects or any(b.include_subscription for b in self.budgets):
            return False
        from app.proxy.tokens import estimate_tokens

        now = self._clock()
        try:
            input_tokens = estimate_tokens(dict(body)) if body.get("messages") else 0
        except Exception:
            return False
        keys = {b: (s, *period_bounds(b.period, now, self._tz)) for b, s in subjects.items()}
        return self._on_lease(route, request_id, body, tuple(subjects), keys, input_tokens, now,
                              bool(body.get("stream")), user is not None, renew=False)

    def _lease_admit(self, route: Route, request_id: str, body: Mapping[str, Any], budgets: tuple[BudgetConfig, ...],
                     keys: dict[BudgetConfig, CounterKey], input_tokens: int, now: float, stream: bool,
                     user: str | None, groups: tuple[str, ...]) -> bool:
        """Off the loop: the lease, renewed in one transaction when the request does not fit it
        (``budget_lease.py``). False: the exact per-request path decides. The lease's rows carry
        the sender, as a hold's do: the reaper charges a dead instance's lease to them."""
        if any(b.include_subscription for b in budgets):
            return False
        meta = (now, orjson.dumps({"user_id": user, "groups": list(groups), "backend": route.backend,
                                   "model": route.model, "requested_model": route.requested_model,
                                   "route": "budget lease", "stream": stream}).decode())
        try:
            return self._on_lease(route, request_id, body, budgets, keys, input_tokens, now, stream, user is not None,
                                  renew=True, meta=meta)
        except Exception as exc:  # the database is away: the per-request path says what on_unreachable wants
            log.debug("request %s: no lease (%s)", request_id, exc)
            return False

    def _on_lease(self, route: Route, request_id: str, body: Mapping[str, Any], budgets: tuple[BudgetConfig, ...],
                  keys: dict[BudgetConfig, CounterKey], input_tokens: int, now: float, stream: bool, team: bool,
                  renew: bool, meta: Meta | None = None) -> bool:
        matching = tuple(b for b in budgets if budget_matches(b, route.backend))
        held = tuple(sorted({keys[b] for b in matching}))
        if not held:
            return False
        amount, exposure, low, plain = self._charge(route, body, input_tokens, now, stream)
        if amount + exposure <= 0:
            return False
        if not self.leases.take(held, request_id, amount + exposure):
            if not renew or time.monotonic() < self._near.get(held, 0.0) or not self._busy(held):
                return False
            if not self.leases.renew(held, request_id, amount + exposure, decisions.lease_room(matching, keys), now,
                                     self._settling_costs(), meta=meta):
                self._near[held] = time.monotonic() + NEAR_RECHECK_S  # near a cap: the exact path for a while
                if len(self._near) > SETTLING_MAX:
                    self._near.clear()
                return False
        if stream:
            self._fly(request_id, Flight(held, block_limits(budgets, keys, route.backend, budget_matches),
                                         route.backend, route.model, now, low, amount, exposure=exposure,
                                         input_plain=plain, cost=low, team=team))
        return True

    def _busy(self, held: tuple[CounterKey, ...]) -> bool:
        """These counters saw ``LEASE_AFTER`` requests within ``BUSY_S`` (this one included): a lease
        pays off. Someone who sends a request now and then keeps the exact per-request path."""
        now = time.monotonic()
        count, since = self._recent.get(held, (0, now))
        if now - since > BUSY_S:
            count, since = 0, now
        self._recent[held] = (count + 1, since)
        if len(self._recent) > SETTLING_MAX:
            self._recent.clear()
        return count + 1 >= LEASE_AFTER

    def _charge(self, route: Route, body: Mapping[str, Any], input_tokens: int, now: float,
                stream: bool) -> tuple[float, float, float, float]:
        """What admission would hold for the request: (amount, exposure, the prompt's expected price,
        its uncached price); a stream's prompt at its expected price, the rest up to its dearest exposed."""
        amount = self.estimate(route, body, input_tokens, now)
        if not stream:
            return amount, 0.0, 0.0, 0.0
        plain = self.input_cost(route, input_tokens, now)
        _cheapest, low, high = self.input_range(route, input_tokens, now)
        return max(0.0, amount - plain + low), max(0.0, high - low), low, plain

    def _regrow_leased(self, request_id: str, f: Flight, cost: float, step: float, exposure: float, may_cut: bool,
                       now: float) -> None:
        """A stream admitted on a lease: its charge follows its cost in memory while the lease has
        room; then one renewal asks for exactly what it needs more (no room: it stops at the cap)."""
        want = cost + 2 * f.lookahead + step
        if self.leases.grow(request_id, want + exposure):
            f.held, f.exposure = want, exposure
            return
        keys = self.leases.keys_of(request_id)
        seen: list[Numbers] = []
        budgets = tuple({b for _limit, b in f.limits.values()})
        by_key = {b: k for k, (_limit, b) in f.limits.items()}
        try:  # as hold_meter.grant: the next write and a margin, plus a step where it fits
            ok = False
            for ask in (want, cost + 2 * f.lookahead):
                want = ask  # the amount last asked for is what the stream holds, whatever the answer
                ok = keys is not None and self.leases.renew(
                    keys, request_id, want + exposure - self.leases.charge_of(request_id),
                    decisions.lease_room(budgets, by_key, seen, warn=False), now, far=False)
                if ok:
                    break
        except Exception as exc:  # the database is away: the stream goes on (admission says so at once)
            log.warning("request %s: its budget lease could not grow (%s)", request_id, exc)
            f.held = want
            return
        if ok:
            f.held, f.exposure = want, exposure
            return
        if not may_cut or not seen:
            return
        key, (limit, budget) = min(f.limits.items(), key=lambda kv: kv[1][0] - sum(seen[-1].get(kv[0], NOTHING)))
        spent, held, exposed = seen[-1].get(key, NOTHING)
        refusal = block_refusal(budget, spent, key[2], now, self._tz, held + exposed,
                                subject=key[0].removeprefix(PLAN_PREFIX), team=f.team)
        f.cut = f"This answer was stopped at the budget's limit. {refusal.message}"
        log.info("request %s: stopped at the budget %s (lease: %.4f spent, %.4f held, this one %.4f)",
                 request_id, budget.label, spent, held + exposed, cost)

    # ------------------------------------------------------------------ admission

    async def reserve(self, route: Route, request_id: str, body: Mapping[str, Any], user: str | None = None,
                      groups: tuple[str, ...] = (), subscription: bool = False) -> Route | Refusal:
        """The gateway's call (off its loop: the transaction runs on a worker thread). ``user`` and
        ``groups``: the verified sender in team mode (their budgets apply), None in single-user mode.
        Near the cap a stream may wait a moment (``decisions.Wait``) for another's prompt cost to be
        known."""
        if not self.budgets and not (self.spend_limits is not None and self.spend_limits.limits):
            return route
        if not subscription and self._lease_fast(route, request_id, body, user, groups):
            return route
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + WAIT_S
        pause = 0.02
        while True:
            result = await loop.run_in_executor(self._pool, self.reserve_sync, route, request_id, body, True, user,
                                                groups, subscription)
            if not isinstance(result, decisions.Wait):
                return result
            if time.monotonic() + pause > deadline:
                return Refusal(result.status, result.error_type, result.message, result.headers)
            await asyncio.sleep(pause)
            pause = min(0.25, pause * 1.5)

    def __call__(self, route: Route) -> Route | Refusal:  # the decision alone, holding nothing (tests ask it)
        return self.reserve_sync(route, "", {"max_tokens": 1, "messages": []}, hold=False)

    def input_range(self, route: Route, input_tokens: int, at: float) -> tuple[float, float, float]:
        """The prompt's (cheapest, expected, dearest) price before the upstream says which: all of
        it read from the cache, what recent prompts cost against their uncached price
        (``_input_ratio``), all of it written to the cache (or uncached, where that is dearer)."""
        price = self.prices.price_for(route.backend, route.model)
        if price is None or input_tokens <= 0:
            return 0.0, 0.0, 0.0
        plain = price.cost(Usage(input_tokens, 0), at)
        read = price.cost(Usage(0, 0, 0, input_tokens), at) if price.cache_read else plain
        write = price.cost(Usage(0, 0, input_tokens, 0), at) if price.cache_write else plain
        low, high = min(plain, read), max(plain, write)
        return low, min(high, max(low, plain * self._input_ratio)), high

    def _learn(self, f: Flight, ex: Metered) -> None:
        """A stream's prompt cost is known (message_start): what prompts cost against their
        uncached price, for the next requests' expected cost (a moving average)."""
        if f.input_plain <= 0:
            return
        real = float(self.prices.cost(f.backend, f.model, Usage(int(ex.input_tokens or 0), 0, int(ex.cache_creation or 0),
                                                                int(ex.cache_read or 0)), at=f.at) or 0.0)
        self._input_ratio = 0.7 * self._input_ratio + 0.3 * min(2.0, real / f.input_plain)

    def reserve_sync(self, route: Route, request_id: str, body: Mapping[str, Any], hold: bool = True,
                     user: str | None = None, groups: tuple[str, ...] = (),
                     subscription: bool = False) -> Route | Refusal:
        # the budgets that apply to this sender, each with the counter it charges: a person's
        # (each-user, user:) and their groups' budgets only in team mode (see policy.subject_of);
        # an include_subscription budget charges "plan+<subject>", and is the only kind a request
        # a Claude subscription pays for falls under
        subjects = {b: (PLAN_PREFIX + s if b.include_subscription else s) for b in self._budgets_for(user, groups)
                    if (s := subject_of(b.scope, user, groups)) is not None
                    and (b.include_subscription or not subscription)}
        budgets = tuple(subjects)
        if not budgets:
            return route
        from app.proxy.tokens import estimate_tokens

        now = self._clock()
        try:
            input_tokens = estimate_tokens(dict(body)) if body.get("messages") else 0
        except Exception:
            input_tokens = 0
        bounds = {b: period_bounds(b.period, now, self._tz) for b in budgets}
        keys = {b: (subjects[b], *bounds[b]) for b in budgets}
        stream = bool(body.get("stream"))
        if hold and not subscription and self._lease_admit(route, request_id, body, budgets, keys, input_tokens, now,
                                                            stream, user, groups):
            return route

        def decide(numbers: Numbers) -> tuple[Route | Refusal, list[Hold]]:
            cheapest = self.input_range(route, input_tokens, now)[0] if hold else 0.0
            final = decisions.decide(route, budgets, keys, numbers, now, self._tz, self.backends, cheapest,
                                     team=user is not None)
            if isinstance(final, Refusal) and hold and any(numbers.get(k, NOTHING)[1] > 0 for k in keys.values()):
                # requests in flight may settle to less than they hold: wait for them
                return decisions.wait_on(final), []
            if isinstance(final, Refusal) or not hold:
                return final, []
            amount = self.estimate(final, body, input_tokens, now)
            exposure = low = plain = 0.0
            if stream:  # holds the prompt at its expected cost; the rest is exposed until message_start says
                plain = self.input_cost(final, input_tokens, now)
                _low, low, high = self.input_range(final, input_tokens, now)
                exposure, amount = max(0.0, high - low), max(0.0, amount - plain + low)
                wait = decisions.must_wait(final, budgets, keys, numbers, amount, exposure, now, self._tz,
                                           team=user is not None)
                if wait is not None:
                    return wait, []
                # never more than the room left: past it the stream asks again, and stops at the cap
                amount = max(min(low, amount), min(amount, decisions.room(final, budgets, keys, numbers)))
            self._warn(request_id, final, budgets, keys, numbers)
            if amount <= 0 and exposure <= 0:
                return final, []
            held = tuple(sorted({keys[b] for b in budgets if budget_matches(b, final.backend)}))
            if stream:
                self._fly(request_id, Flight(held, block_limits(budgets, keys, final.backend, budget_matches),
                                             final.backend, final.model, now, low, amount, exposure=exposure,
                                             input_plain=plain, cost=low, team=user is not None))
            return final, [(k, amount, exposure) for k in held]

        meta = (now, orjson.dumps({"user_id": user, "groups": list(groups), "backend": route.backend,
                                   "model": route.model, "requested_model": route.requested_model,
                                   "route": route.rule, "stream": stream}).decode())
        try:
            if self.degraded is not None and time.monotonic() < self._retry_at:
                raise _StillDown()  # asked a moment ago: answer now, do not make every request wait for it
            result = self.store.reserve(request_id, self.instance, list(keys.values()), decide, now,
                                        self.hold_ttl_s, self._settling_costs(), meta)
        except Exception as exc:
            return self._store_down(exc, route)
        if self.degraded is not None:
            log.info("budgets can be checked again")
            self.degraded = None
        return result

    def _store_down(self, exc: Exception, route: Route) -> Route | Refusal:
        """The ledger database did not answer a reservation: say so once, then admit or refuse as
        ``[ledger] on_unreachable`` says."""
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

    def _budgets_for(self, user: str | None, groups: tuple[str, ...]) -> tuple[BudgetConfig, ...]:
        """The config's budgets, with a person's per-seat cap from the Admin API where it applies."""
        watcher = self.spend_limits
        if watcher is None or user is None or not watcher.limits:
            return self.budgets
        return budgets_for(self.budgets, watcher.limits, user, groups)

    def _fly(self, request_id: str, flight: Flight) -> None:
        with self._lock:
            self._flights[request_id] = flight
            while len(self._flights) > SETTLING_MAX:  # never finished (a bound, not a target)
                self._flights.popitem(last=False)

if TYPE_CHECKING:  # the gateway's budget hook (app/proxy/admit.py) is this class: mypy holds the two together
    _HOOK: type[AdmissionHook] = Admission
