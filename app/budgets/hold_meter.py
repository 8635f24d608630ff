"""A streamed answer's budget hold follows what it really costs, and the stream stops at the cap.

Admission (``admission.py``) holds, before the upstream call, a stream's expected cost: its prompt
at the price recent prompts really cost (cache reads make Claude Code's cheap) and the output
recent streams wrote (at least ``OUTPUT_FLOOR`` tokens), never more than the room left; the rest of
the prompt's dearest price is its *exposure* until ``message_start`` says what it cost. While the
answer streams, the gateway asks ``Admission.meter`` before each write that carries content. It
prices the answer so far (``cost_so_far``: the prompt's real price once known; the output counted
from the delivered text, thinking and tool input at ``CHARS_PER_TOKEN`` characters a token, fewer
than any tokenizer needs, or the upstream's count when higher). While the hold covers that and the
next write nothing is asked; as it nears, the hold grows in the background (``grant``: one
transaction under the budget lock that admission takes too, to the cost plus twice the largest
write so far plus a step, never past a quarter of what the ``block`` budgets leave free after what
is spent and what every other request holds). When even the cost and the next writes no longer fit,
the stream ends with an in-stream ``error`` event (``billing_error``, the budget's own sentence)
before that write, and the request is charged what was delivered. So a person's spend ends at most
about one write per stream stopped at the cap past it, whatever the requests' sizes or the
estimates, and holds stay near what requests really cost (docs/team.md has the argument).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.budgets.store import NOTHING, CounterKey, Numbers
from app.config import BudgetConfig
from app.events import Usage

if TYPE_CHECKING:
    from app.catalog.prices import PriceBook

OUTPUT_FLOOR = 256  # output tokens a stream holds at least when admitted: near the cap, fewer streams at once
OUTPUT_STEP = 32  # the least a hold grows by, in output tokens
STEP_FRACTION = 0.25  # ... or this share of the output so far, whichever is more
CHARS_PER_TOKEN = 3.0  # delivered characters per output token counted (tokenizers need more: ~3.5-4)


class Metered(Protocol):
    """What the meter reads of an exchange (``app.proxy.exchange.Exchange``)."""

    request_id: str
    input_tokens: int
    output_tokens: int
    cache_creation: int
    cache_read: int

    @property
    def streamed_chars(self) -> int: ...


@dataclass
class Flight:
    """A request this instance admitted with a hold, until its row settles it."""

    keys: tuple[CounterKey, ...]  # the counters its hold is on
    limits: dict[CounterKey, tuple[float, BudgetConfig]]  # each counter's tightest block budget
    backend: str
    model: str
    at: float  # priced as of (the request's start)
    input_low: float  # the prompt at its expected cost (admission.py), until message_start says
    held: float = 0.0  # what its hold is now
    exposure: float = 0.0  # what it may still cost beyond it until message_start says what the prompt cost
    cost: float = 0.0  # what it cost at the last check
    lookahead: float = 0.0  # the most one write has added to its cost: the room it needs to go on
    cut: str | None = field(default=None)  # why it was stopped
    input_plain: float = 0.0  # the prompt at its uncached price
    known: bool = False  # the upstream has said what the prompt cost
    pending: Any = None  # the growing of its hold under way (an asyncio future), if any
    team: bool = False  # a team member's request: a refusal tells them to ask their admin


def output_tokens(ex: Metered) -> int:
    return max(int(ex.output_tokens or 0), math.ceil((ex.streamed_chars or 0) / CHARS_PER_TOKEN))


def cost_so_far(prices: PriceBook, f: Flight, ex: Metered) -> float:
    out = output_tokens(ex)
    if ex.input_tokens or ex.cache_read or ex.cache_creation:  # message_start said what the prompt cost
        usage = Usage(int(ex.input_tokens or 0), out, int(ex.cache_creation or 0), int(ex.cache_read or 0))
        return float(prices.cost(f.backend, f.model, usage, at=f.at) or 0.0)
    # not yet: the prompt at its expected cost (the flight's exposure holds the rest, up to its dearest)
    return f.input_low + float(prices.cost(f.backend, f.model, Usage(0, out), at=f.at) or 0.0)


def step_for(prices: PriceBook, f: Flight, ex: Metered) -> float:
    out = output_tokens(ex)
    tokens = max(OUTPUT_STEP, int(out * STEP_FRACTION))
    return float(prices.cost(f.backend, f.model, Usage(0, tokens), at=f.at) or 0.0)


def grant(f: Flight, cost: float, step: float, numbers: Numbers, keep: float = 0.0
          ) -> tuple[float, tuple[float, float, BudgetConfig, CounterKey] | None]:
    """(the hold to keep, None) when ``cost`` and twice the next write (``f.lookahead``, what one
    write has added at most) still fit every block budget, else (``cost``, the tightest budget's (spent,
    held by others, budget, key)): the stream stops there, before that write. ``numbers``: each
    counter's spent and what the other requests hold. ``keep``: the hold so far, kept where it
    fits (a hold shrinks only when its row settles it)."""
    room = math.inf
    tightest: tuple[float, float, BudgetConfig, CounterKey] | None = None
    for key, (limit, budget) in f.limits.items():
        spent, others, _exposed = numbers.get(key, NOTHING)
        free = limit - spent - others
        if free < room:
            room, tightest = free, (spent, others, budget, key)
    need = cost + 2 * f.lookahead  # the next write, and a margin for one bigger than any before
    if need > room:
        return cost, tightest
    if math.isinf(room):
        return max(keep, need + step), None
    return max(min(keep, room), min(need + step, need + (room - need) / 4)), None


def block_limits(budgets: tuple[BudgetConfig, ...], keys: dict[BudgetConfig, CounterKey], backend: str,
                 matches: Any) -> dict[CounterKey, tuple[float, BudgetConfig]]:
    """Each counter a request holds on, with the smallest limit of the ``block`` budgets on it."""
    out: dict[CounterKey, tuple[float, BudgetConfig]] = {}
    for b in budgets:
        if b.action != "block" or not matches(b, backend):
            continue
        k = keys[b]
        if k not in out or b.limit_usd < out[k][0]:
            out[k] = (b.limit_usd, b)
    return out
