from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.budgets.limits import BudgetGuard, budget_status_from_ledger, period_bounds
from app.catalog.prices import PriceBook
from app.config import BudgetConfig, parse_config
from app.events import BudgetAlert, RequestFinished, RequestStarted, Usage, finished_request
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.proxy.routing import Refusal, Route
from tests.budget_engine import LedgerBudgets
from tests.config_text import ANTHROPIC_CLIENT, OPENROUTER

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")

CONFIG = ANTHROPIC_CLIENT + OPENROUTER + """models = ["anthropic/claude-sonnet-4.5"]

[[backends]]
id = "ollama"
kind = "openai"
base_url = "http://localhost:11434/v1"
auth = "none"
models = ["qwen3-coder:30b", "gpt-oss:20b"]
"""

PRICES = PriceBook.load(parse_config(CONFIG))
# Opus 4.8: $5 / MTok input, so 1,000,000 input tokens cost exactly $5.
FIVE_DOLLARS = Usage(input_tokens=1_000_000)


def at(y: int, mo: int, d: int, h: int = 12, mi: int = 0, tz: ZoneInfo = UTC) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def finished(backend: str, t: float, usage: Usage = FIVE_DOLLARS, model: str = "claude-opus-4-8",
             rid: str = "r") -> RequestFinished:
    return finished_request(rid, t, session_id="s", client="claude-cli", backend=backend, model=model, ttft_ms=100.0,
                            usage=usage)


def route(backend: str = "anthropic", model: str = "claude-opus-4-8") -> Route:
    return Route(backend, model, "active", model)


def guard(*budgets: BudgetConfig, clock: Clock, alerts: list[BudgetAlert] | None = None,
          reader: LedgerReader | None = None) -> BudgetGuard:
    sink = alerts.append if alerts is not None else (lambda a: None)
    return BudgetGuard(budgets, PRICES, publish=sink, now=clock, reader=reader, tz=UTC)


Engine = Callable[..., LedgerBudgets]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """The decision for the next request is the product's budget engine (app/budgets/admission.py),
    over a ledger of its own: ``engine(*budgets, clock=…)``; ``.spend(row)`` counts a finished
    request, ``.admission(route)`` decides (holding nothing)."""
    made: list[LedgerBudgets] = []

    def make(*budgets: BudgetConfig, clock: Clock) -> LedgerBudgets:
        folder = tmp_path / f"ledger{len(made)}"
        folder.mkdir()
        made.append(LedgerBudgets(budgets, PRICES, folder, now=clock, tz=UTC))
        return made[-1]

    yield make
    for e in made:
        e.close()


def spend(ev: RequestFinished, g: BudgetGuard, e: LedgerBudgets) -> None:
    """One finished request, heard by the window's guard and written to the engine's ledger."""
    g.sink(ev)
    e.spend(ev)


# --------------------------------------------------------------------------- periods


def test_day_bounds_are_local_midnights() -> None:
    start, reset = period_bounds("day", at(2026, 11, 26, 15, 30), UTC)
    assert (start, reset) == (at(2026, 11, 26, 0), at(2026, 11, 27, 0))
    start, reset = period_bounds("day", at(2026, 11, 26, 23, 30), BERLIN)  # 00:30 on the 27th in Berlin
    assert (start, reset) == (at(2026, 11, 27, 0, tz=BERLIN), at(2026, 11, 28, 0, tz=BERLIN))


def test_day_with_a_dst_change_is_23_hours() -> None:
    start, reset = period_bounds("day", at(2026, 3, 29, 12, tz=BERLIN), BERLIN)
    assert reset - start == 23 * 3600


def test_week_starts_on_monday() -> None:
    # 2026-11-29 is a Sunday; its week began Monday 23rd and resets Monday 30th
    start, reset = period_bounds("week", at(2026, 11, 29, 23, 59), UTC)
    assert (start, reset) == (at(2026, 11, 23, 0), at(2026, 11, 30, 0))
    start, _ = period_bounds("week", at(2026, 11, 30, 0, 0), UTC)  # Monday 00:00 opens a new week
    assert start == at(2026, 11, 30, 0)
    # across a year boundary
    start, reset = period_bounds("week", at(2027, 1, 1), UTC)  # a Friday
    assert (start, reset) == (at(2026, 12, 28, 0), at(2027, 1, 4, 0))


def test_month_bounds_including_december_and_february() -> None:
    assert period_bounds("month", at(2026, 12, 31, 23, 59), UTC) == (at(2026, 12, 1, 0), at(2027, 1, 1, 0))
    assert period_bounds("month", at(2028, 2, 29), UTC) == (at(2028, 2, 1, 0), at(2028, 3, 1, 0))
    # month length across the autumn DST change in Berlin: 31 days and one hour
    s, r = period_bounds("month", at(2026, 10, 15, tz=BERLIN), BERLIN)
    assert r - s == 31 * 86400 + 3600


def test_period_bounds_in_the_systems_local_time_contain_now() -> None:
    now = time.time()
    for p in ("day", "week", "month"):
        s, r = period_bounds(p, now)
        assert s <= now < r
        assert datetime.fromtimestamp(s).time().hour == 0
    with pytest.raises(ValueError):
        period_bounds("year", now)


# --------------------------------------------------------------------------- alerts


def test_warn_is_published_once_and_limit_once() -> None:
    clock = Clock(at(2026, 11, 26, 9))
    alerts: list[BudgetAlert] = []
    g = guard(BudgetConfig("all", "day", 20.0, 0.8, "block"), clock=clock, alerts=alerts)
    for _ in range(3):  # $15: under the $16 warn line
        g.sink(finished("anthropic", clock.t))
    assert alerts == []
    g.sink(finished("anthropic", clock.t))  # $20: at the limit -> one "limit" alert (warn skipped)
    assert [a.level for a in alerts] == ["limit"]
    g.sink(finished("anthropic", clock.t))
    assert [a.level for a in alerts] == ["limit"]

    alerts.clear()
    g2 = guard(BudgetConfig("all", "day", 20.0, 0.8, "warn"), clock=clock, alerts=alerts)
    g2.sink(finished("anthropic", clock.t, Usage(3_300_000)))  # $16.50: past 80 %
    g2.sink(finished("anthropic", clock.t, Usage(100_000)))
    assert [a.level for a in alerts] == ["warn"]
    a = alerts[0]
    assert a.spent_usd == pytest.approx(16.5) and a.limit_usd == 20.0
    assert a.resets_at == at(2026, 11, 27, 0) and a.action == "warn" and "all" in a.budget
    g2.sink(finished("anthropic", clock.t, Usage(700_000)))  # $20
    assert [a.level for a in alerts] == ["warn", "limit"]


def test_other_events_and_garbage_are_ignored() -> None:
    clock = Clock(at(2026, 11, 26))
    g = guard(BudgetConfig("all", "day", 1.0), clock=clock)
    g.sink(RequestStarted("r", clock.t, None, None, "active", "anthropic", "m", "m", True))
    g.sink(None)  # type: ignore[arg-type]
    g.sink(object())  # type: ignore[arg-type]
    assert g.status()[0].spent_usd == 0


# --------------------------------------------------------------------------- admission


def test_block_answers_429_naming_budget_spend_and_reset(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26, 15))
    e = engine(BudgetConfig("all", "day", 10.0, 0.8, "block"), clock=clock)
    r = route()
    assert e.admission(r) is r
    e.spend(finished("anthropic", clock.t, Usage(2_100_000)))  # $10.50
    out = e.admission(r)
    assert isinstance(out, Refusal)
    assert out.status == 429 and out.error_type == "billing_error"
    assert dict(out.headers)[b"x-should-retry"] == b"false"
    msg = out.message
    assert '"all / day $10"' in msg
    assert "$10.50 of $10.00" in msg
    assert "resets at 00:00 tomorrow" in msg
    assert "limit_usd" in msg and "downgrade" in msg  # says what to do


def test_downgrade_sends_requests_to_the_named_backend(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    b = BudgetConfig("backend:openrouter", "week", 5.0, 0.8, "downgrade:ollama,qwen3-coder:30b")
    e = engine(b, clock=clock)
    e.spend(finished("openrouter", clock.t, Usage(1_200_000), model="anthropic/claude-opus-4.8"))  # $6
    out = e.admission(Route("openrouter", "anthropic/claude-sonnet-4.5", "active", "claude-sonnet-5-5"))
    assert out == Route("ollama", "qwen3-coder:30b", f"budget:{b.label}", "claude-sonnet-5-5")
    # another backend is not in this budget's scope
    r = route("anthropic")
    assert e.admission(r) is r


def test_downgrade_without_a_model_uses_the_backends_first_model(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    e = engine(BudgetConfig("all", "day", 1.0, 0.5, "downgrade:ollama"), clock=clock)
    e.spend(finished("anthropic", clock.t))
    out = e.admission(route())
    assert isinstance(out, Route) and (out.backend, out.model) == ("ollama", "qwen3-coder:30b")


def test_warn_action_lets_requests_through(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    budget = BudgetConfig("all", "day", 1.0, 0.5, "warn")
    g, e = guard(budget, clock=clock), engine(budget, clock=clock)
    spend(finished("anthropic", clock.t), g, e)
    r = route()
    assert e.admission(r) is r
    assert g.status()[0].state == "limit"


def test_downgraded_requests_count_against_the_backend_they_went_to() -> None:
    clock = Clock(at(2026, 11, 26))
    or_budget = BudgetConfig("backend:openrouter", "day", 5.0, 0.8, "downgrade:ollama,qwen3-coder:30b")
    ollama_budget = BudgetConfig("backend:ollama", "day", 100.0, 0.8, "block")
    g = guard(or_budget, ollama_budget, clock=clock)
    g.sink(finished("openrouter", clock.t, Usage(1_200_000), model="anthropic/claude-opus-4.8"))  # $6
    # the downgraded request finished on ollama: free, and counted for ollama, not for openrouter
    g.sink(finished("ollama", clock.t, Usage(10_000_000), model="qwen3-coder:30b"))
    st = {s.budget.scope: s for s in g.status()}
    assert st["backend:openrouter"].spent_usd == pytest.approx(6.0)
    assert st["backend:ollama"].spent_usd == 0.0


def test_a_downgrade_target_is_still_subject_to_other_budgets(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    e = engine(BudgetConfig("backend:anthropic", "day", 1.0, 0.8, "downgrade:openrouter,anthropic/claude-sonnet-4.5"),
               BudgetConfig("all", "day", 1.0, 0.8, "block"), clock=clock)
    e.spend(finished("anthropic", clock.t))
    assert isinstance(e.admission(route()), Refusal)  # "all" blocks wherever the request goes


def test_a_downgrade_keeps_working_when_the_all_budget_downgrades_to_a_local_model(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    e = engine(BudgetConfig("all", "day", 1.0, 0.8, "downgrade:ollama,qwen3-coder:30b"), clock=clock)
    e.spend(finished("anthropic", clock.t))
    out = e.admission(route())
    assert isinstance(out, Route) and out.backend == "ollama"
    out2 = e.admission(Route("ollama", "gpt-oss:20b", "explicit", "ollama,gpt-oss:20b"))
    assert isinstance(out2, Route) and out2.backend == "ollama"


def test_admission_uses_the_spend_known_when_it_runs(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    budget = BudgetConfig("all", "day", 5.0, 0.8, "block")
    g, e = guard(budget, clock=clock), engine(budget, clock=clock)
    first, second = e.admission(route()), e.admission(route())  # both in flight under the limit
    assert isinstance(first, Route) and isinstance(second, Route)
    spend(finished("anthropic", clock.t, rid="1"), g, e)
    spend(finished("anthropic", clock.t, rid="2"), g, e)  # both finish; spend ends above the limit
    assert g.status()[0].spent_usd == pytest.approx(10.0)
    assert isinstance(e.admission(route()), Refusal)


def test_the_budget_resets_with_its_period(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26, 23, 0))
    alerts: list[BudgetAlert] = []
    budget = BudgetConfig("all", "day", 5.0, 0.8, "block")
    g, e = guard(budget, clock=clock, alerts=alerts), engine(budget, clock=clock)
    spend(finished("anthropic", clock.t), g, e)
    assert isinstance(e.admission(route()), Refusal)
    clock.t = at(2026, 11, 27, 0, 0)
    assert isinstance(e.admission(route()), Route)
    st = g.status()[0]
    assert st.spent_usd == 0 and st.resets_at == at(2026, 11, 28, 0) and st.state == "ok"
    # a request that started before midnight and finished after does not count for the new day
    g.sink(finished("anthropic", at(2026, 11, 26, 23, 59)))
    assert g.status()[0].spent_usd == 0
    g.sink(finished("anthropic", clock.t))
    assert [a.level for a in alerts] == ["limit", "limit"]  # once per period


def test_unpriced_requests_add_nothing_but_are_counted() -> None:
    clock = Clock(at(2026, 11, 26))
    g = guard(BudgetConfig("all", "day", 5.0), clock=clock)
    g.sink(finished("openrouter", clock.t, model="someone/unknown"))
    st = g.status()[0]
    assert st.spent_usd == 0 and st.unpriced_requests == 1


def test_reconfigure_keeps_the_spend_of_a_scope(engine: Engine) -> None:
    clock = Clock(at(2026, 11, 26))
    alerts: list[BudgetAlert] = []
    budget = BudgetConfig("all", "day", 100.0)
    g, e = guard(budget, clock=clock, alerts=alerts), engine(budget, clock=clock)
    spend(finished("anthropic", clock.t), g, e)
    tighter = (BudgetConfig("all", "day", 4.0, 0.8, "block"),)
    g.reconfigure(tighter, PRICES)
    e.admission.reconfigure(tighter, PRICES)
    st = g.status()[0]
    assert st.spent_usd == pytest.approx(5.0) and st.state == "limit"
    assert isinstance(e.admission(route()), Refusal)
    assert alerts == []  # already over when configured: no alert until the next crossing


def test_spend_is_seeded_from_the_ledger(tmp_path: Path) -> None:
    now = time.time()
    path = tmp_path / "usage.sqlite3"
    ledger = Ledger(path, prices=PRICES)
    ledger.start()
    day0, _ = period_bounds("day", now)
    ledger.record(finished("anthropic", day0 + 1, rid="today-1"))
    ledger.record(finished("openrouter", max(day0, now - 5), Usage(600_000), "anthropic/claude-opus-4.8", "today-2"))
    ledger.record(finished("anthropic", day0 - 3600, rid="yesterday"))
    ledger.close()
    with LedgerReader(path) as reader:
        g = BudgetGuard((BudgetConfig("all", "day", 10.0, 0.8, "block"),
                         BudgetConfig("backend:openrouter", "day", 10.0)), PRICES,
                        publish=lambda a: None, reader=reader)
        st = g.status()
        assert st[0].spent_usd == pytest.approx(8.0)
        assert st[1].spent_usd == pytest.approx(3.0)
        from_ledger = budget_status_from_ledger((st[0].budget,), reader, now)
        assert from_ledger[0].spent_usd == pytest.approx(8.0) and from_ledger[0].state == "warn"
