"""What the Team page shows, read in one go on the jobs thread: the keys and the audit trail (the
team key store), this month's spend by user and group, the last 30 days per day, each
per-user and per-group budget's state (the ledger, through ``app.budgets.team_usage``), and
each person's Claude Code activity from its telemetry (``app.team.telemetry_store``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from app.bridge.data_team import (
    TeamActivityView,
    TeamAuditView,
    TeamBudgetView,
    TeamKeyView,
    TeamSeriesView,
    TeamSpendView,
    TeamView,
)
from app.budgets.team_usage import BudgetRow, SpendOverTime, budget_rows, daily_spend, fallback_priced
from app.config import BudgetConfig

if TYPE_CHECKING:
    from app.config.team import TeamConfig
    from app.ledger.reader import LedgerReader
    from app.team.keystore import TeamStore

log = logging.getLogger("patchbay.team")
AUDIT_SHOWN = 500
ACTIVITY_DAYS = 30  # the Claude Code tab's window (telemetry is kept 30 days by default)


def spend_view(s: SpendOverTime) -> TeamSpendView:
    return TeamSpendView(s.by, s.days, tuple(TeamSeriesView(x.key, x.costs, x.requests, x.total_usd, x.others)
                                            for x in s.series), s.total_usd, s.requests)


def budget_view(r: BudgetRow) -> TeamBudgetView:
    b = r.budget
    return TeamBudgetView(r.subject, r.kind, b.scope, b.period, r.spent_usd, b.limit_usd, r.fraction, b.warn_at,
                          r.state, b.action, r.resets_at, r.word)


def read_team(team: TeamConfig | None, store: TeamStore, reader: LedgerReader,
              budgets: Sequence[BudgetConfig] | None, now: float | None = None) -> tuple[TeamView, str | None]:
    """The page's view, and why the spend could not be read (None when it could): a ledger that
    cannot be read now still leaves the keys and the audit trail to show. ``team`` None: an
    admin's look at a team ledger, with the policy (identity, groups, budgets) that a gateway
    last recorded in the audit trail instead of this app's own config."""
    from app.team.recorded import recorded_policy
    from app.team.wording import audit_summary

    now = time.time() if now is None else now
    keys = tuple(TeamKeyView(r.id, r.user, r.groups, r.status(now), r.created_at, r.expires_at, r.created_by)
                 for r in reversed(store.list_keys()))
    entries = store.audit()
    audit = tuple(TeamAuditView(e.at, e.actor, e.action, e.subject, audit_summary(e.action, e.detail))
                  for e in reversed(entries[-AUDIT_SHOWN:]))
    if team is not None:
        base = TeamView(True, tuple(team.identity), tuple(g.name for g in team.groups), keys, audit)
    else:
        recorded = recorded_policy(store)
        budgets = recorded.budgets if recorded is not None else ()
        base = TeamView(True, recorded.identity if recorded else (), recorded.groups if recorded else (), keys,
                        audit, admin_view=True, policy_by=recorded.actor if recorded else None,
                        policy_at=recorded.at if recorded else None, policy_file=recorded.subject if recorded else None)
    try:
        from app.budgets.limits import period_bounds

        start, end = period_bounds("month", now, reader.tz)
        by_user = tuple((t.key, t.requests, t.cost_usd) for t in reader.totals(start, end, "user"))
        by_group = tuple((t.key, t.requests, t.cost_usd) for t in reader.totals(start, end, "group"))
        users, groups = daily_spend(reader, "user", now=now), daily_spend(reader, "group", now=now)
        states = tuple(budget_view(r) for r in budget_rows(reader, budgets or (), now=now))
        fallback = tuple((f.model, f.priced_by, f.requests, f.cost_usd) for f in fallback_priced(reader, start, end))
    except Exception as exc:  # noqa: BLE001 - said on the page's notice; the keys still show
        return base, str(exc) or type(exc).__name__
    try:
        activity = activity_views(reader, now)
    except Exception:  # noqa: BLE001 - a ledger without the telemetry table yet: the tab stays empty
        log.info("the Team page read no Claude Code telemetry", exc_info=True)
        activity = ()
    return replace(base, by_user=by_user, by_group=by_group, spend_by_user=spend_view(users),
                   spend_by_group=spend_view(groups), budgets=states, fallback_priced=fallback,
                   activity=activity, activity_days=ACTIVITY_DAYS), None


def activity_views(reader: LedgerReader, now: float) -> tuple[TeamActivityView, ...]:
    """Each person's Claude Code telemetry over the last ``ACTIVITY_DAYS``, busiest first."""
    from app.team.telemetry_store import summaries

    rows = summaries(reader, now - ACTIVITY_DAYS * 86400)
    views = [TeamActivityView(p.user, p.sessions, p.lines_added, p.lines_removed, p.accepted, p.rejected, p.errors,
                              p.last_seen) for p in rows]
    return tuple(sorted(views, key=lambda v: (-v.sessions, -(v.lines_added + v.lines_removed), v.user)))
