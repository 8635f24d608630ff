"""What a budget's numbers say about one request: pass, downgrade, block, or wait a moment.

Pure functions over what the store read in the admission's transaction (``Numbers``: each
counter's spent, held and exposed dollars) and the budgets that apply to the sender, each with
the counter it charges (``keys``). No state and no I/O: ``admission.py`` calls them inside the
store's transaction, and again when a stream's hold grows on a lease.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from app.budgets.limits import block_refusal, budget_matches, downgrade_model
from app.budgets.store import NOTHING, CounterKey, Numbers
from app.config import BackendConfig, BudgetConfig
from app.ledger.store import PLAN_PREFIX
from app.proxy.routing import Refusal, Route


@dataclass(frozen=True, slots=True)
class Wait(Refusal):
    """Near the cap: the refusal to answer unless a moment's wait (``Admission.reserve`` tries
    again) leaves room; the requests in flight may settle to less than they hold."""


def wait_on(refusal: Refusal) -> Wait:
    return Wait(refusal.status, refusal.error_type, refusal.message, refusal.headers)


def p95(values: Sequence[int]) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return int(s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)])


def decide(route: Route, budgets: tuple[BudgetConfig, ...], keys: Mapping[BudgetConfig, CounterKey],
           numbers: Numbers, now: float, tz: tzinfo | None, backends: Mapping[str, BackendConfig],
           need: float = 0.0, team: bool = False) -> Route | Refusal:
    """The route to take, a downgraded one, or the block's refusal. ``need``: what the request
    spends once sent (its prompt); it must fit beside what is spent and held, or the budget counts
    as used up for it. A downgrade is applied once per budget, and the budgets are read again for
    the new route (another backend may fall under other budgets)."""
    applied: set[int] = set()
    for _ in range(len(budgets) + 1):
        over = []
        for i, b in enumerate(budgets):
            spent, held, _exposed = numbers.get(keys[b], NOTHING)
            full = spent + held >= b.limit_usd or (need > 0 and spent + held + need > b.limit_usd)
            if i not in applied and full and budget_matches(b, route.backend):
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
            route = Route(target, downgrade_model(backends, target, model, route.requested_model), f"budget:{b.label}",
                          route.requested_model)
            continue
        block = next(((b, s, h) for _i, b, s, h in over if b.action == "block"), None)
        if block is not None:
            b, spent, held = block
            return block_refusal(b, spent, keys[b][2], now, tz, held,
                                 subject=keys[b][0].removeprefix(PLAN_PREFIX), team=team)
        return route
    return route


def must_wait(route: Route, budgets: tuple[BudgetConfig, ...], keys: Mapping[BudgetConfig, CounterKey],
              numbers: Numbers, amount: float, exposure: float, now: float, tz: tzinfo | None,
              team: bool = False) -> Wait | None:
    """A ``Wait`` (try again in a moment; refused only if the moment never comes) when a block
    budget has room for this stream's cheapest prompt but not for its expected cost (``amount``:
    its prompt and recent streams' output) beside what others hold, or not for its worst case
    (``amount + exposure``) beside the worst case of streams whose prompt cost is not known yet:
    the requests in flight settle to what they really cost, or learn it, and then it fits or is
    refused. With nothing in flight it goes: at most one request's exposure (its prompt's dearest
    minus its expected price) can pass the cap."""
    for b in budgets:
        spent, held, exposed = numbers.get(keys[b], NOTHING)
        if b.action != "block" or not budget_matches(b, route.backend):
            continue
        if (held > 0 and spent + held + amount > b.limit_usd) or \
                (exposed > 0 and spent + held + exposed + amount + exposure > b.limit_usd):
            return wait_on(block_refusal(b, spent, keys[b][2], now, tz, held + exposed,
                                         subject=keys[b][0].removeprefix(PLAN_PREFIX), team=team))
    return None


def room(route: Route, budgets: tuple[BudgetConfig, ...], keys: Mapping[BudgetConfig, CounterKey],
         numbers: Numbers) -> float:
    """What the block budgets this route falls under leave free beside what is spent and held."""
    free = [b.limit_usd - sum(numbers.get(keys[b], NOTHING)[:2]) for b in budgets
            if b.action == "block" and budget_matches(b, route.backend)]
    return max(0.0, min(free)) if free else math.inf


def lease_room(budgets: tuple[BudgetConfig, ...], keys: Mapping[BudgetConfig, CounterKey],
               seen: list[Numbers] | None = None, warn: bool = True) -> Callable[[Numbers], float]:
    """The room under every budget's warning threshold (its limit at most) beside what is spent,
    held and exposed: a lease never admits a request whose answer should carry a warning.
    ``warn`` false (a stream admitted already grows): up to the limit beside what is spent and
    held, as ``hold_meter.grant`` counts it. ``seen`` collects the numbers each call was given."""
    def free_room(numbers: Numbers) -> float:
        if seen is not None:
            seen.append(numbers)
        free = [b.limit_usd * (min(1.0, b.warn_at) if warn else 1.0)
                - sum(numbers.get(keys[b], NOTHING)[:3 if warn else 2]) for b in budgets]
        return min(free) if free else math.inf
    return free_room
