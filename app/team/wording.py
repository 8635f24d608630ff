"""How the team's words read, for the CLI and the Team page alike: a key's ``--expires``, an audit period's
``--since``, a time, and one line per audit entry."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

SPAN_RE = re.compile(r"^(\d+)\s*(h|d|w)$", re.I)
UNIT = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float) -> float | None:
    """``--expires`` as epoch seconds (None: never). Raises ValueError with a sentence."""
    t = text.strip().lower()
    if t in ("never", "none", ""):
        return None
    m = SPAN_RE.match(t)
    if m:
        n = int(m.group(1))
        if n <= 0:
            raise ValueError("--expires must lie in the future: write e.g. 90d.")
        return now + n * UNIT[m.group(2)]
    try:
        day = datetime.strptime(t, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--expires {text!r} is not a span or a date: write 90d, 12w, 24h, "
                         "a date such as 2027-03-01, or never.") from None
    if day.timestamp() <= now:
        raise ValueError(f"--expires {text} lies in the past: write a later date.")
    return day.timestamp()


def parse_since(text: str, now: float) -> float:
    """``--since`` as epoch seconds. Raises ValueError with a sentence."""
    t = text.strip().lower()
    m = SPAN_RE.match(t)
    if m:
        return now - int(m.group(1)) * UNIT[m.group(2)]
    try:
        return datetime.strptime(t, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r} is not a span or a date: write 7d, 24h, 12w or a date such as "
                         "2027-03-01.") from None


def when(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def audit_summary(action: str, detail: dict[str, Any]) -> str:
    if action == "key.created":
        groups = ",".join(detail.get("groups") or []) or "-"
        return f"for {detail.get('user')} (groups {groups}, expires {when(detail.get('expires_at'))})"
    if action == "key.revoked":
        return f"of {detail.get('user')}"
    if action == "config.loaded":
        said = "; ".join(detail.get("changes") or []) or f"policy {detail.get('digest')}"
        owner = detail.get("config_owner")
        return f"{said} (config file owned by {owner})" if owner else said
    if action.startswith("spend_limit."):  # the Admin API's caps (app/team/spend_limits_store.py)
        from app.team.spend_limits import change_summary

        return change_summary(detail.get("before"), detail.get("after"))
    return json.dumps(detail, sort_keys=True)
