"""Spend limits set through the Admin API: their wire shapes, and how they become a person's budgets.

A spend limit is Anthropic's Admin API object (``/v1/organizations/spend_limits``): a cap in whole
US cents (a string; ``null`` = unlimited, ``"0"`` blocks everything) per ``daily`` / ``weekly`` /
``monthly`` period, for a ``user`` (as Patchbay records them: the e-mail), an ``rbac_group`` (a
``[[team.groups]]`` name, or a group the identity carries when no groups are configured) or the
``organization``. Patchbay adds its budget actions as fields of the same object: ``action``
(``block``, ``warn`` or ``downgrade:<backend>,<model>``), ``warn_at`` and ``blocked_message``.

**A cap is per person** (a "per-seat" cap, as in the reference): a group's or the organization's cap
is what each member may spend. For one person and one period exactly one cap applies, the most
specific there is; within a level a cap set through the API replaces the config file's:

    API user cap  >  config ``user:EMAIL``  >  API group caps (the lowest of the person's groups)
                  >  API organization cap   >  config ``each-user``

A ``null`` amount at a level means "no cap" there and still hides the levels below. The config's
pooled budgets (``all``, ``backend:ID``, ``group:NAME``) and session caps are not per-seat caps: they
apply as written, beside the cap chosen here. ``budgets_for`` turns the chosen API cap into a
``BudgetConfig`` charging ``user:<id>`` (``ApiBudget``), so admission enforces it exactly as a
config budget (the same holds, the same stop at the cap).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.config import BudgetConfig

PERIODS = {"daily": "day", "weekly": "week", "monthly": "month"}
SCOPE_TYPES = ("user", "rbac_group", "organization")
_CENTS_RE = re.compile(r"^(0|[1-9][0-9]{0,11})$")
_ORDER = ("daily", "weekly", "monthly")


class LimitError(ValueError):
    """A request body the Admin API refuses: 400 ``invalid_request_error`` with this sentence."""


@dataclass(frozen=True)
class SpendLimit:
    id: str
    scope_type: str  # user | rbac_group | organization
    scope_id: str  # the user id, the group name; "" for the organization
    period: str  # daily | weekly | monthly
    amount_cents: int | None  # None: unlimited
    action: str = "block"
    warn_at: float = 0.8
    blocked_message: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    updated_by: str = ""

    @property
    def scope(self) -> dict[str, Any]:
        if self.scope_type == "user":
            return {"type": "user", "user_id": self.scope_id}
        if self.scope_type == "rbac_group":
            return {"type": "rbac_group", "rbac_group_id": self.scope_id}
        return {"type": "organization"}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "spend_limit", "id": self.id, "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at), "scope": self.scope,
            "amount": None if self.amount_cents is None else str(self.amount_cents), "currency": "USD",
            "period": self.period, "action": self.action, "warn_at": self.warn_at,
            "blocked_message": self.blocked_message}
        if self.scope_type == "rbac_group":
            out["pooled_budget"] = None
        return out


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_limit_id() -> str:
    return "spl_" + secrets.token_hex(16)


# --------------------------------------------------------------------------- a request's body


@dataclass(frozen=True)
class LimitInput:
    """What a ``POST`` asks for (validated)."""

    scope_type: str
    scope_id: str
    period: str
    amount_cents: int | None
    action: str = "block"
    warn_at: float = 0.8
    blocked_message: str | None = None


def _scope(raw: Any) -> tuple[str, str]:
    if not isinstance(raw, dict) or raw.get("type") not in SCOPE_TYPES:
        got = raw.get("type") if isinstance(raw, dict) else raw
        raise LimitError(f"scope.type: Invalid enum value. Expected 'user' | 'rbac_group' | 'organization', "
                         f"received {got!r}")
    kind = raw["type"]
    if kind == "organization":
        return kind, ""
    field = "user_id" if kind == "user" else "rbac_group_id"
    value = raw.get(field)
    if not isinstance(value, str) or not value.strip() or len(value) > 320:
        raise LimitError(f"scope.{field}: Expected a non-empty string")
    value = value.strip()
    return kind, (value.lower() if kind == "user" and "@" in value else value)


def parse_limit(body: Any, backends: Iterable[str], current: SpendLimit | None = None) -> LimitInput:
    """A ``POST …/spend_limits`` body (``current``: the limit a ``POST …/{id}`` updates, whose
    scope and period stay unless the body names others). Raises ``LimitError``."""
    if not isinstance(body, dict):
        raise LimitError("The body must be a JSON object: {\"scope\": …, \"amount\": \"500\", \"period\": \"daily\"}.")
    unknown = set(body) - {"scope", "amount", "period", "action", "warn_at", "blocked_message"}
    if unknown:
        raise LimitError(f"Unrecognized key(s) in object: {', '.join(repr(k) for k in sorted(unknown))}")
    if current is not None and "scope" not in body:
        scope = (current.scope_type, current.scope_id)
    else:
        scope = _scope(body.get("scope"))
    period = body.get("period", current.period if current is not None else None)
    if period not in PERIODS:
        raise LimitError(f"period: Invalid enum value. Expected 'daily' | 'weekly' | 'monthly', received {period!r}")
    if "amount" not in body and current is None:
        raise LimitError("amount: Required (a whole number of US cents as a string, e.g. \"500\", or null)")
    amount = body.get("amount", None if current is None else
                      (None if current.amount_cents is None else str(current.amount_cents)))
    if amount is not None and not isinstance(amount, str):
        raise LimitError(f"amount: Expected string, received {_kind(amount)}")
    if amount is not None and not _CENTS_RE.match(amount):
        raise LimitError(f"amount: {amount!r} is not a whole number of US cents (write e.g. \"500\" for $5.00)")
    action = body.get("action", current.action if current is not None else "block")
    if not isinstance(action, str) or not _action_ok(action, set(backends)):
        raise LimitError(f"action: {action!r} is not one of 'block', 'warn' or 'downgrade:<backend>,<model>' "
                         f"with a configured backend ({', '.join(sorted(backends)) or 'none'})")
    warn_at = body.get("warn_at", current.warn_at if current is not None else 0.8)
    if isinstance(warn_at, bool) or not isinstance(warn_at, (int, float)) or not 0 < warn_at <= 1:
        raise LimitError(f"warn_at: {warn_at!r} is not a number above 0 and at most 1 (0.8 = warn at 80 %)")
    message = body.get("blocked_message", current.blocked_message if current is not None else None)
    if message is not None and (not isinstance(message, str) or len(message) > 500):
        raise LimitError("blocked_message: Expected a string of at most 500 characters, or null")
    return LimitInput(scope[0], scope[1], period, None if amount is None else int(amount), action, float(warn_at),
                      message.strip() or None if isinstance(message, str) else None)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _action_ok(action: str, backends: set[str]) -> bool:
    if action in ("block", "warn"):
        return True
    if not action.startswith("downgrade:"):
        return False
    backend = action[len("downgrade:"):].partition(",")[0].strip()
    return backend in backends


# --------------------------------------------------------------------------- which cap applies


@dataclass(frozen=True)
class ApiBudget(BudgetConfig):
    """A spend limit of the Admin API as the budget admission enforces for one person."""

    limit_id: str = ""
    source: str = ""  # "user", "rbac_group:eng" or "organization"

    @property
    def label(self) -> str:
        whose = {"user": "user", "organization": "organization"}.get(self.source, self.source.replace("rbac_group:",
                                                                                                   "group "))
        return f"{whose} spend limit {self.scope[5:]} / {self.period} ${self.limit_usd:g} (Admin API)"


@dataclass(frozen=True)
class Cap:
    """The cap that applies to one person in one period: from the API (``limit``) or the config
    (``budget``), or none (``amount_cents`` None: unlimited)."""

    period: str  # daily | weekly | monthly
    level: str  # user | rbac_group | organization
    origin: str  # "api" | "config"
    amount_cents: int | None
    limit: SpendLimit | None = None
    budget: BudgetConfig | None = None


def _cents(usd: float) -> int:
    return int(round(usd * 100))


def resolve(config_budgets: Sequence[BudgetConfig], limits: Sequence[SpendLimit], user: str,
            groups: Sequence[str], period: str) -> Cap | None:
    """The per-seat cap of ``user`` (in ``groups``) for ``period`` (daily/weekly/monthly), by the rule
    in this module's docstring; None when neither the API nor the config has one."""
    p = PERIODS[period]
    who = user.lower()
    mine = [x for x in limits if x.period == period]
    api_user = next((x for x in mine if x.scope_type == "user" and x.scope_id.lower() == who), None)
    if api_user is not None:
        return Cap(period, "user", "api", api_user.amount_cents, api_user)
    conf_user = [b for b in config_budgets if b.period == p and b.scope.lower() == f"user:{who}"]
    if conf_user:
        b = min(conf_user, key=lambda b: (b.action != "block", b.limit_usd))
        return Cap(period, "user", "config", _cents(b.limit_usd), budget=b)
    in_groups = [x for x in mine if x.scope_type == "rbac_group" and x.scope_id in groups]
    if in_groups:  # the most restrictive of the person's groups; null (unlimited) is the least
        g = min(in_groups, key=lambda x: (x.amount_cents is None, x.amount_cents or 0))
        return Cap(period, "rbac_group", "api", g.amount_cents, g)
    org = next((x for x in mine if x.scope_type == "organization"), None)
    if org is not None:
        return Cap(period, "organization", "api", org.amount_cents, org)
    conf_org = [b for b in config_budgets if b.period == p and b.scope == "each-user"]
    if conf_org:
        b = min(conf_org, key=lambda b: (b.action != "block", b.limit_usd))
        return Cap(period, "organization", "config", _cents(b.limit_usd), budget=b)
    return None


def _per_seat(b: BudgetConfig, user: str) -> bool:
    return b.scope == "each-user" or b.scope.lower() == f"user:{user.lower()}"


def budgets_for(config_budgets: tuple[BudgetConfig, ...], limits: Sequence[SpendLimit], user: str | None,
                groups: Sequence[str]) -> tuple[BudgetConfig, ...]:
    """The budgets admission applies to this sender: the config's, with each period's per-seat
    budgets replaced by the API's cap where the API's is the one that applies (``resolve``)."""
    if user is None or not limits:
        return config_budgets
    out = list(config_budgets)
    for period in _ORDER:
        cap = resolve(config_budgets, limits, user, groups, period)
        if cap is None or cap.origin != "api" or cap.limit is None:
            continue
        p = PERIODS[period]
        out = [b for b in out if not (b.period == p and _per_seat(b, user))]
        lim = cap.limit
        if lim.amount_cents is not None:
            source = "rbac_group:" + lim.scope_id if lim.scope_type == "rbac_group" else lim.scope_type
            out.append(ApiBudget(scope=f"user:{user}", period=p, limit_usd=lim.amount_cents / 100.0,
                                 warn_at=lim.warn_at, action=lim.action, blocked_message=lim.blocked_message,
                                 limit_id=lim.id, source=source))
    return tuple(out)


def cents_text(usd: float) -> str:
    """Dollars as Anthropic's cents decimal string: 0.00625 -> "0.625"."""
    text = f"{usd * 100:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def effective_rows(config_budgets: Sequence[BudgetConfig], limits: Sequence[SpendLimit],
                   people: Sequence[tuple[str, tuple[str, ...]]], periods: Sequence[str]) -> list[tuple[str, tuple[str, ...], Cap]]:
    """(user, groups, cap) for each person and period that has a cap."""
    out = []
    for user, groups in people:
        for period in periods:
            cap = resolve(config_budgets, limits, user, groups, period)
            if cap is not None:
                out.append((user, groups, cap))
    return out


def source_json(cap: Cap) -> dict[str, Any]:
    src: dict[str, Any] = {"type": cap.level, "origin": cap.origin}
    if cap.limit is not None and cap.level == "rbac_group":
        src["rbac_group_id"] = cap.limit.scope_id
    if cap.budget is not None:
        src["config_scope"] = cap.budget.scope
    return src


def _cap_words(obj: dict[str, Any]) -> str:
    scope = obj.get("scope") or {}
    who = scope.get("user_id") or scope.get("rbac_group_id") or "organization"
    amount = obj.get("amount")
    money = "unlimited" if amount is None else f"${int(amount) / 100:,.2f}"
    return f"{who} {obj.get('period')} {money} ({obj.get('action', 'block')})"


def change_summary(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """An audit entry of a spend limit in a few words: "alice@corp.example daily $5.00 (block) -> …"."""
    if before is None and after is not None:
        return f"set {_cap_words(after)}"
    if after is None and before is not None:
        return f"deleted {_cap_words(before)}"
    if before is not None and after is not None:
        return f"{_cap_words(before)} -> {_cap_words(after)}"
    return "-"
