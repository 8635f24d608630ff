"""The meter's rule (app/budgets/hold_meter.py): a stream's hold grows inside the room the block
budgets leave, a stream stops before a write that does not fit, and the output is counted from
what was delivered."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.budgets.hold_meter import CHARS_PER_TOKEN, Flight, block_limits, grant, output_tokens
from app.config import BudgetConfig

KEY = ("user:a@corp.example", 0.0, 86400.0)
CAP = BudgetConfig("each-user", "day", 1.0, 0.8, "block")


@dataclass
class Answer:
    """What the meter reads of an exchange."""

    request_id: str = "r1"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation: int = 0
    cache_read: int = 0
    streamed_chars: int = 0


def flight(held: float, lookahead: float = 0.0) -> Flight:
    return Flight((KEY,), {KEY: (1.0, CAP)}, "cloud", "priced", 0.0, 0.0, held, lookahead=lookahead)


def test_a_hold_grows_by_a_step_while_there_is_room() -> None:
    amount, over = grant(flight(0.1, lookahead=0.01), 0.1, 0.05, {KEY: (0.2, 0.3, 0.0)})
    assert over is None and amount == pytest.approx(0.1 + 0.02 + 0.05)  # cost, twice the next write, a step


def test_near_the_cap_a_hold_takes_a_quarter_of_what_is_left() -> None:
    amount, over = grant(flight(0.1), 0.1, 0.5, {KEY: (0.5, 0.3, 0.0)})  # 0.2 free
    assert over is None and amount == pytest.approx(0.1 + 0.1 / 4)


def test_a_stream_stops_before_a_write_that_does_not_fit() -> None:
    amount, over = grant(flight(0.1, lookahead=0.02), 0.1, 0.05, {KEY: (0.6, 0.33, 0.0)})  # 0.07 free
    assert over is not None and amount == pytest.approx(0.1)  # held at what it cost: the row settles it
    spent, others, budget, key = over
    assert (spent, others, budget, key) == (0.6, 0.33, CAP, KEY)


def test_a_hold_never_shrinks_while_it_fits() -> None:
    amount, over = grant(flight(0.3), 0.1, 0.01, {KEY: (0.0, 0.0, 0.0)}, keep=0.3)
    assert over is None and amount == pytest.approx(0.3)


def test_only_block_budgets_stop_a_stream() -> None:
    warn = BudgetConfig("each-user", "day", 0.5, 0.8, "warn")
    limits = block_limits((warn, CAP), {warn: KEY, CAP: KEY}, "cloud", lambda b, backend: True)
    assert limits == {KEY: (1.0, CAP)}


def test_output_is_counted_from_what_was_delivered_or_the_upstreams_count() -> None:
    ex = Answer(streamed_chars=300)
    assert output_tokens(ex) == 300 / CHARS_PER_TOKEN
    ex.output_tokens = 500
    assert output_tokens(ex) == 500
