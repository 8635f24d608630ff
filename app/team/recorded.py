"""The team's policy as a gateway last recorded it: what an admin's desktop app shows when it only
looks at the team ledger (``[ledger] url`` without ``[team]``, a read-only role is enough).

The app's own config says nothing about the team then; the gateways' does, and each gateway
appends ``config.loaded`` to the audit trail whenever it starts or reloads with a new policy
(``app.team.audit.record_policy``). ``recorded_policy(store)`` reads the newest such entry back:
identity sources, group names and the ``[[budgets]]`` rows the gateways enforce, as
``BudgetConfig`` so the page computes each user's budget state exactly as it does in team mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import BUDGET_PERIODS, BudgetConfig

if TYPE_CHECKING:
    from app.team.keystore import AuditEntry, TeamStore


@dataclass(frozen=True)
class RecordedPolicy:
    actor: str  # user@host of the gateway that recorded it
    at: float
    subject: str  # that gateway's config file
    identity: tuple[str, ...]
    groups: tuple[str, ...]
    budgets: tuple[BudgetConfig, ...]
    skipped: int = 0  # budget rows that could not be read back (written by another Patchbay build?)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _budget(row: Any) -> BudgetConfig | None:
    if not isinstance(row, dict):
        return None
    scope, period, action, blocked = row.get("scope"), row.get("period"), row.get("action", "block"), \
        row.get("blocked_message")
    limit, warn_at = _number(row.get("limit_usd")), _number(row.get("warn_at", 0.8))
    if not isinstance(scope, str) or period not in BUDGET_PERIODS or not isinstance(action, str):
        return None
    if limit is None or warn_at is None or limit <= 0 or not 0 < warn_at <= 1:
        return None
    return BudgetConfig(scope, period, limit, warn_at, action,
                        blocked if isinstance(blocked, str) and blocked.strip() else None)


def _field(d: dict[str, Any], key: str, kind: type) -> Any:
    v = d.get(key)
    return v if isinstance(v, kind) else kind()


def policy_from(entry: AuditEntry) -> RecordedPolicy:
    """A ``config.loaded`` entry's policy (``app.team.audit.policy_of``'s shape), read leniently:
    a field that is missing or odd is left out, never an exception."""
    policy = _field(entry.detail if isinstance(entry.detail, dict) else {}, "policy", dict)
    identity = _field(_field(policy, "team", dict), "identity", list)
    groups = _field(policy, "groups", dict)
    rows = _field(policy, "budgets", list)
    budgets = [b for b in map(_budget, rows) if b is not None]
    return RecordedPolicy(entry.actor, entry.at, entry.subject, tuple(str(i) for i in identity),
                          tuple(str(g) for g in groups), tuple(budgets), len(rows) - len(budgets))


def recorded_policy(store: TeamStore) -> RecordedPolicy | None:
    """The newest ``config.loaded`` policy in ``store``'s audit trail; None when no gateway has
    recorded one yet. Raises what the store raises (``KeyStoreError``)."""
    entries = store.audit(action="config.loaded")
    return policy_from(entries[-1]) if entries else None
