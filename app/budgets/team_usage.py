"""What the Team page reads from the ledger: daily spend per user or group, and the state of each
per-person and per-group budget.

Both work on either store through the reader the app already holds: the SQLite ``LedgerReader``
or the PostgreSQL ``PgLedgerReader`` (its ``_q`` takes the reader's SQLite spelling and rewrites it
for PostgreSQL, so one query serves both). The numbers come from the ``requests`` rows
(``user_id``, ``groups`` = comma-joined names, ``cost_usd``, ``started_at``), as ``patchbay usage
--by user|group`` does (``LedgerReader.totals``, reused here for the budgets): a request of
someone in two groups counts in both; a row without a user or group counts under "-".

Days are local days (the reader's ``tz``, DST-correct: the bounds come from
``budgets.period_bounds``), so a bar is the day an admin reads on the calendar.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Literal

from app.budgets.limits import BudgetState, _state, period_bounds
from app.config import BudgetConfig

if TYPE_CHECKING:
    from app.ledger.reader import LedgerReader

By = Literal["user", "group"]
# whose budget a row is: a user's, a group's, the whole team's (``all``) or a backend's
Kind = Literal["user", "group", "all", "backend"]
EVERYONE = "everyone"  # the subject of an ``all`` budget's row
NONE_KEY = "-"  # rows without a user (or group) recorded, as in `patchbay usage --by user`
TOP = 8  # series drawn on their own; past that, the rest fold into one "others" series
DAYS = 30
_CHUNK = 300  # day ranges per query: far below SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class Series:
    key: str  # the user or group ("-": none recorded); for the folded rest, the number folded in
    costs: tuple[float, ...]  # dollars per day, one per ``SpendOverTime.days``
    requests: int
    total_usd: float
    others: int = 0  # > 0: this is the folded "others" series, standing for this many users or groups


@dataclass(frozen=True, slots=True)
class SpendOverTime:
    by: By
    days: tuple[float, ...]  # local midnights, oldest first (the last is today)
    series: tuple[Series, ...]  # most expensive first; the "others" series (if any) last
    total_usd: float
    requests: int


def last_days(days: int, now: float, tz: tzinfo | None = None) -> list[tuple[float, float]]:
    """(start, end) of the last ``days`` local days, today's last."""
    out = [period_bounds("day", now, tz)]
    while len(out) < days:
        out.append(period_bounds("day", out[-1][0] - 1.0, tz))
    return out[::-1]


def _keys(value: str | None, by: By) -> list[str]:
    if not value:
        return [NONE_KEY]
    return [value] if by == "user" else [k for k in value.split(",") if k] or [NONE_KEY]


def daily_spend(reader: LedgerReader, by: By, *, days: int = DAYS, top: int = TOP, now: float | None = None
                ) -> SpendOverTime:
    """Spend per local day over the last ``days`` days (today included) per user or group: the
    ``top`` most expensive on their own, the rest folded into one "others" series (when there are
    more than ``top``, ``top - 1`` are shown and the rest folded, so at most ``top`` series)."""
    if by not in ("user", "group"):
        raise ValueError(f"spend over time is by user or group, not {by!r}")
    now = time.time() if now is None else now
    tz = getattr(reader, "tz", None)
    ranges = last_days(days, now, tz)
    pos = {start: i for i, (start, _) in enumerate(ranges)}
    col = "user_id" if by == "user" else "groups"
    costs: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for i in range(0, len(ranges), _CHUNK):
        part = ranges[i:i + _CHUNK]
        values = ",".join("(?,?)" for _ in part)
        flat = [x for r in part for x in r]
        sql = (f"WITH b(lo, hi) AS (VALUES {values}) SELECT b.lo, {col}, total(cost_usd), count(*) FROM b "
               f"JOIN requests ON started_at >= b.lo AND started_at < b.hi GROUP BY 1, 2")
        for lo, value, cost, n in reader._q(sql, flat):
            for k in _keys(value, by):
                row = costs.setdefault(k, [0.0] * len(ranges))
                row[pos[float(lo)]] += float(cost or 0.0)
                counts[k] = counts.get(k, 0) + int(n)
    order = sorted(costs, key=lambda k: (-sum(costs[k]), -counts[k], k))
    shown = order if len(order) <= top else order[:max(top - 1, 0)]
    series = [Series(k, tuple(costs[k]), counts[k], sum(costs[k])) for k in shown]
    rest = order[len(shown):]
    if rest:
        folded = [sum(costs[k][d] for k in rest) for d in range(len(ranges))]
        series.append(Series(f"{len(rest)} others", tuple(folded), sum(counts[k] for k in rest), sum(folded),
                             others=len(rest)))
    # in group mode a request counts once per group: the totals are the rows', not the series' sum
    total, requests = _window_totals(reader, ranges) if by == "group" else (
        sum(s.total_usd for s in series), sum(s.requests for s in series))
    return SpendOverTime(by, tuple(start for start, _ in ranges), tuple(series), total, requests)


def _window_totals(reader: LedgerReader, ranges: Sequence[tuple[float, float]]) -> tuple[float, int]:
    if not ranges:
        return 0.0, 0
    rows = reader._q("SELECT total(cost_usd), count(*) FROM requests WHERE started_at >= ? AND started_at < ?",
                     [ranges[0][0], ranges[-1][1]])
    return float(rows[0][0] or 0.0), int(rows[0][1] or 0)


# --------------------------------------------------------------------------- fallback prices


@dataclass(frozen=True, slots=True)
class FallbackPriced:
    """Requests for a model the price table does not know, charged at a fallback price."""

    model: str
    priced_by: str  # which fallback (the row's ``priced_by``)
    requests: int
    cost_usd: float


def fallback_priced(reader: LedgerReader, start: float, end: float) -> list[FallbackPriced]:
    """The [start, end) rows priced at a fallback (app/catalog/prices.py), by model, dearest first."""
    rows = reader._q("SELECT model, priced_by, count(*), total(cost_usd) FROM requests WHERE priced_by IS NOT NULL "
                     "AND started_at >= ? AND started_at < ? GROUP BY 1, 2", [start, end])
    out = [FallbackPriced(str(m), str(p), int(n), float(c or 0.0)) for m, p, n, c in rows]
    return sorted(out, key=lambda f: (-f.cost_usd, f.model))


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One person's (or group's) standing against one team budget this period."""

    subject: str  # "alice@corp.example", a group's name, "everyone" (``all``) or a backend's id
    kind: Kind  # whose budget: a user's, a group's, the whole team's or a backend's
    budget: BudgetConfig
    index: int  # position in [[budgets]]
    spent_usd: float
    requests: int
    period_start: float
    resets_at: float
    state: BudgetState  # ok | warn (past warn_at) | limit (blocked, downgraded, or only warned)

    @property
    def fraction(self) -> float:
        return self.spent_usd / self.budget.limit_usd if self.budget.limit_usd > 0 else 0.0

    @property
    def word(self) -> str:
        """The state in one word (the Team page's cell, ``patchbay team budgets``): ok, warn, or at
        the limit what the budget does then: blocked, downgraded, over (a budget that only warns)."""
        if self.state != "limit":
            return self.state
        action = self.budget.action
        return "blocked" if action == "block" else "downgraded" if action.startswith("downgrade:") else "over"


def _period_totals(reader: LedgerReader, start: float, end: float, by: By) -> dict[str, tuple[float, int, str]]:
    """lower-cased key -> (dollars, requests, key as recorded) for [start, end)."""
    out: dict[str, tuple[float, int, str]] = {}
    for t in reader.totals(start, end, by):
        if t.key == NONE_KEY:
            continue
        k = t.key.lower() if by == "user" else t.key
        cost, n, shown = out.get(k, (0.0, 0, t.key))
        out[k] = (cost + t.cost_usd, n + t.requests, shown)
    return out


def _requests(reader: LedgerReader, start: float, end: float, backend: str | None) -> int:
    sql = "SELECT count(*) FROM requests WHERE started_at >= ? AND started_at < ?"
    params: list[object] = [start, end]
    if backend is not None:
        sql += " AND backend = ?"
        params.append(backend)
    return int(reader._q(sql, params)[0][0] or 0)


def budget_rows(reader: LedgerReader, budgets: Sequence[BudgetConfig], *, now: float | None = None,
                tz: tzinfo | None = None) -> list[BudgetRow]:
    """Every budget's state now: for ``each-user`` a row per user seen in its period, for the
    others (``user:EMAIL``, ``group:NAME``, the org-wide ``all`` and ``backend:ID``) one row (at $0
    when nobody spent yet). Spent is the sum of the period's rows' ``cost_usd`` (what the gateway's
    counters hold once settled): a person's or group's own rows for theirs, every row (of that
    backend) for an org-wide one. In config order, each-user rows most used first."""
    now = time.time() if now is None else now
    tz = tz if tz is not None else getattr(reader, "tz", None)
    cache: dict[tuple[float, float, By], dict[str, tuple[float, int, str]]] = {}

    def totals(start: float, end: float, by: By) -> dict[str, tuple[float, int, str]]:
        if (start, end, by) not in cache:
            cache[(start, end, by)] = _period_totals(reader, start, end, by)
        return cache[(start, end, by)]

    out: list[BudgetRow] = []
    for i, b in enumerate(budgets):
        start, reset = period_bounds(b.period, now, tz)
        kind, _, value = b.scope.partition(":")

        def row(subject: str, by: Kind, spent: float, n: int, b: BudgetConfig = b, i: int = i,
                start: float = start, reset: float = reset) -> BudgetRow:
            return BudgetRow(subject, by, b, i, spent, n, start, reset, _state(b, spent))

        if b.scope == "each-user":
            rows = [row(shown, "user", cost, n) for cost, n, shown in totals(start, reset, "user").values()]
            out.extend(sorted(rows, key=lambda r: (-r.spent_usd, r.subject)))
        elif b.scope == "all" or kind == "backend":
            backend = value if kind == "backend" else None
            spent = reader.spent(start, backend)
            out.append(row(EVERYONE if backend is None else backend, "all" if backend is None else "backend",
                           spent, _requests(reader, start, reset, backend)))
        elif kind == "user":
            cost, n, _ = totals(start, reset, "user").get(value.lower(), (0.0, 0, value))
            out.append(row(value, "user", cost, n))
        else:
            cost, n, _ = totals(start, reset, "group").get(value, (0.0, 0, value))
            out.append(row(value, "group", cost, n))
    return out
