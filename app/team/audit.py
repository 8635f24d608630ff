"""The audit trail's "config with new policy loaded" entries: what a team gateway enforces, as
plain data, and what changed since the policy last recorded.

``policy_of(config)`` is the part of a config that decides who may use and spend what: ``[team]``
(identity sources, audiences, claims), ``[[team.groups]]`` and every ``[[budgets]]``. A gateway
records ``config.loaded`` when it starts or reloads with a policy whose digest differs from the
last one recorded in the ledger database; ``changes`` names what differs, e.g.
``group "eng" models: ['claude-sonnet-*'] -> ['claude-*']`` or
``budget "each-user / day" limit_usd: 20.0 -> 50.0``. The entry's actor is the gateway's
``user@host``; ``config_owner`` adds who owns the config file (on POSIX), the nearest thing to
who edited it that the gateway can know.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

log = logging.getLogger("patchbay.team")


def actor() -> str:
    """``user@host`` of this process: who ran the command or the gateway."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def policy_of(config: Any) -> dict[str, Any]:
    team = config.team
    settings = {k: v for k, v in dataclasses.asdict(team).items() if k != "groups"}
    settings["identity"] = list(team.identity)
    for key in ("admin_keys", "admin_groups"):  # who may use the Admin API (as JSON keeps it; absent when none)
        if settings.get(key):
            settings[key] = [dict(x) if isinstance(x, dict) else x for x in settings[key]]
        else:
            settings.pop(key, None)
    return {
        "team": settings,
        "groups": {g.name: {"members": list(g.members),
                            "backends": None if g.backends is None else list(g.backends),
                            "models": None if g.models is None else list(g.models),
                            "max_output_tokens": g.max_output_tokens} for g in team.groups},
        "budgets": [budget_of(b) for b in config.budgets],
    }


def budget_of(b: Any) -> dict[str, Any]:
    """One ``[[budgets]]`` row as the policy records it. ``blocked_message`` only when set, so a
    policy without one has the digest it had before the field was recorded (no new entry)."""
    row = {"scope": b.scope, "period": b.period, "limit_usd": b.limit_usd, "warn_at": b.warn_at, "action": b.action}
    if b.blocked_message:
        row["blocked_message"] = b.blocked_message
    return row


def digest(policy: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:16]


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    if before is None:
        return ["first policy recorded"]
    out = []
    for key, value in after["team"].items():
        if before.get("team", {}).get(key) != value:
            out.append(f"team.{key}: {before.get('team', {}).get(key)!r} -> {value!r}")
    old_groups, new_groups = before.get("groups", {}), after["groups"]
    for name in new_groups:
        if name not in old_groups:
            out.append(f'group "{name}" added')
            continue
        for field, value in new_groups[name].items():
            if old_groups[name].get(field) != value:
                out.append(f'group "{name}" {field}: {old_groups[name].get(field)!r} -> {value!r}')
    out += [f'group "{name}" removed' for name in old_groups if name not in new_groups]
    return out + _budget_changes(before.get("budgets") or [], after["budgets"])


def _budget_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Budgets by ``scope / period`` (a second one with the same, by its position too)."""
    out: dict[str, dict[str, Any]] = {}
    for n, b in enumerate(rows, 1):
        key = f"{b.get('scope')} / {b.get('period')}"
        out[key if key not in out else f"{key} (#{n})"] = b
    return out


def _budget_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """Each budget added, removed, or changed field by field, before -> after."""
    old, new = _budget_key(before), _budget_key(after)
    out = []
    for key, b in new.items():
        if key not in old:
            out.append(f'budget "{key}" added: limit_usd {b.get("limit_usd")!r}, action {b.get("action")!r}')
            continue
        for field in sorted(set(b) | set(old[key])):
            if old[key].get(field) != b.get(field):
                out.append(f'budget "{key}" {field}: {old[key].get(field)!r} -> {b.get(field)!r}')
    out += [f'budget "{key}" removed (limit_usd {b.get("limit_usd")!r})' for key, b in old.items() if key not in new]
    return out


def _owner(path: Any) -> str | None:
    """The owner of the config file, where the system says (POSIX); None otherwise."""
    try:
        import pwd

        return pwd.getpwuid(os.stat(Path(path)).st_uid).pw_name
    except (ImportError, KeyError, OSError, TypeError):
        return None


def record_policy(store: Any, config: Any, who: str | None = None) -> bool:
    """Append ``config.loaded`` to ``store``'s audit trail when the policy is new. True if it did.

    A store that cannot be reached just now (the PostgreSQL ledger mid-outage, during a reload)
    does not stop the config from applying: the error is logged, and the next load records the
    policy (its digest still differs from the last one recorded)."""
    from app.team.keys import KeyStoreError

    policy = policy_of(config)
    d = digest(policy)
    try:
        last = store.audit(action="config.loaded")
        previous = last[-1].detail if last else None
        if previous is not None and previous.get("digest") == d:
            return False
        detail = {"digest": d, "policy": policy,
                  "changes": changes(previous.get("policy") if previous else None, policy)}
        owner = _owner(config.path) if config.path else None
        if owner is not None:
            detail["config_owner"] = owner
        store.record(who or actor(), "config.loaded", str(config.path or "<config>"), detail)
    except KeyStoreError as exc:
        log.error("audit: the policy of %s is not in the audit trail yet: %s", config.path or "the config", exc)
        return False
    return True
