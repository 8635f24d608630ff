"""A Claude subscription's usage windows in words: "5 h window 63 % · resets 14:20 · week 21 %".

One wording for the tray, the Dashboard, ``patchbay usage`` and the status line. The gateway keeps
the latest windows per backend in ``subscription-limits.json`` beside the ledger
(app/claude/subscription_state.py); a state is a mapping with the fields of
:class:`app.events.SubscriptionLimits` (utilisation a fraction, times in Unix seconds).

Standard library only, and nothing but ``time``: the status line imports this module on every run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

LIMITS_NAME = "subscription-limits.json"  # in the data dir, beside the ledger
STALE_S = 7 * 86400.0  # a state older than a week says nothing about either window


def _num(state: Mapping[str, object], key: str) -> float | None:
    v = state.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100)} %"


def clock(ts: float, now: float) -> str:
    """A reset time in local time: 14:20 today or tomorrow, "Mon 14:20" further out."""
    lt = time.localtime(ts)
    return time.strftime("%H:%M" if ts - now < 86400 else "%a %H:%M", lt)


def windows(state: Mapping[str, object], now: float) -> list[tuple[str, float, float | None]]:
    """The windows still current: ("5 h window" | "week", utilisation, reset time). A window whose
    reset has passed is left out (its utilisation started again from nothing)."""
    observed = _num(state, "observed_at") or 0.0
    if now - observed > STALE_S:
        return []
    out = []
    for label, util_key, reset_key in (("5 h window", "five_hour_utilization", "five_hour_reset"),
                                       ("week", "seven_day_utilization", "seven_day_reset")):
        util, reset = _num(state, util_key), _num(state, reset_key)
        if util is None or (reset is not None and reset <= now):
            continue
        out.append((label, util, reset))
    return out


def windows_text(state: Mapping[str, object] | None, now: float | None = None) -> str:
    """ "5 h window 63 % · resets 14:20 · week 21 %", or "" when no window is known (no
    subscription traffic: show nothing)."""
    if not state:
        return ""
    now = time.time() if now is None else now
    parts: list[str] = []
    for label, util, reset in windows(state, now):
        parts.append(f"{label} {_pct(util)}")
        if label == "5 h window" and reset is not None:
            parts.append(f"resets {clock(reset, now)}")
    if parts and state.get("status") == "rejected":
        parts.append("limit reached")
    return " · ".join(parts)


def latest(states: Mapping[str, object] | None) -> Mapping[str, object] | None:
    """The most recently observed backend's state in the file's ``backends`` mapping."""
    if not isinstance(states, Mapping):
        return None
    best: Mapping[str, object] | None = None
    for st in states.values():
        if isinstance(st, Mapping) and (best is None or (_num(st, "observed_at") or 0.0) > (_num(best, "observed_at") or 0.0)):
            best = st
    return best
