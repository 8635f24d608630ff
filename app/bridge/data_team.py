"""Plain data the Team page reads: keys, the audit trail, spend and budgets per person and group (no Qt, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TeamKeyView:
    """One issued team key, as the Team page lists it (never its secret)."""

    id: str
    user: str
    groups: tuple[str, ...]
    status: str  # active | revoked | expired
    created_at: float
    expires_at: float | None
    created_by: str | None


@dataclass(frozen=True, slots=True)
class TeamAuditView:
    at: float
    actor: str
    action: str  # key.created | key.revoked | config.loaded
    subject: str
    summary: str  # one line: for whom, or what changed


@dataclass(frozen=True, slots=True)
class TeamSeriesView:
    """One user's or group's spend per day (or the rest folded together: ``others`` > 0)."""

    key: str  # "-": requests without a user (group) recorded
    costs: tuple[float, ...]  # dollars per day of ``TeamSpendView.days``
    requests: int
    total_usd: float
    others: int = 0  # the folded series: how many users (groups) it stands for


@dataclass(frozen=True, slots=True)
class TeamSpendView:
    by: str  # "user" | "group"
    days: tuple[float, ...]  # local midnights, oldest first, today last
    series: tuple[TeamSeriesView, ...] = ()  # most expensive first, "others" last
    total_usd: float = 0.0
    requests: int = 0


@dataclass(frozen=True, slots=True)
class TeamBudgetView:
    """A person's or group's standing against one per-user or per-group budget this period."""

    subject: str  # the user's e-mail or the group's name
    kind: str  # "user" | "group"
    scope: str  # as configured: "each-user", "user:EMAIL", "group:NAME"
    period: str  # day | week | month
    spent_usd: float
    limit_usd: float
    fraction: float
    warn_at: float
    state: str  # ok | warn | limit
    action: str  # at the limit: block | warn | downgrade:<backend>,<model>
    resets_at: float
    word: str  # the state in one word: ok | warn | blocked | downgraded | over


@dataclass(frozen=True, slots=True)
class TeamActivityView:
    """One person's Claude Code activity from its telemetry: sessions, lines changed, tool
    decisions (accepted / rejected) and API errors its client saw."""

    user: str
    sessions: int
    lines_added: int
    lines_removed: int
    accepted: int
    rejected: int
    errors: int
    last_seen: float


@dataclass(frozen=True, slots=True)
class TeamView:
    enabled: bool  # this app's gateway runs in team mode ([team] in its config), or its ledger is a team's
    identity: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    keys: tuple[TeamKeyView, ...] = ()
    audit: tuple[TeamAuditView, ...] = ()
    # this month so far, most expensive first: (user or group, requests, dollars)
    by_user: tuple[tuple[str, int, float], ...] = ()
    by_group: tuple[tuple[str, int, float], ...] = ()
    spend_by_user: TeamSpendView | None = None  # the last 30 days per day (None: not read yet, or unreadable)
    spend_by_group: TeamSpendView | None = None
    budgets: tuple[TeamBudgetView, ...] = ()  # each-user, user: and group: budgets, config order
    # this month's requests for models the price table does not know, charged at a fallback price:
    # (model, the fallback, requests, dollars), dearest first
    fallback_priced: tuple[tuple[str, str, int, float], ...] = ()
    # an admin's look at a team ledger ([ledger] url without [team]): the policy is the one a gateway
    # last recorded in the audit trail (who, when, from which config file); None: none recorded yet
    admin_view: bool = False
    policy_by: str | None = None
    policy_at: float | None = None
    policy_file: str | None = None
    # what each person's Claude Code reported over its OTLP telemetry (app/team/telemetry_store.py),
    # over the last ``activity_days``; busiest first
    activity: tuple[TeamActivityView, ...] = ()
    activity_days: int = 30
