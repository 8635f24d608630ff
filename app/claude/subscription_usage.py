"""``patchbay usage``'s Claude subscription part: API-equivalent value and the usage windows.

Requests served under a Claude subscription cost no money (their ``cost_usd`` is 0, so every
spending total leaves them out); what they would have cost at API prices is shown apart, as
"API-equiv.", with the subscription's latest 5-hour and weekly windows
(``subscription-limits.json`` beside the ledger, app/claude/subscription_state.py). Nothing is
shown when there was no subscription traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.claude.subscription_state import limits_file, read_states
from app.claude.subscription_windows import windows, windows_text
from app.ledger.reader import LedgerReader
from app.units import fmt_money


def equiv(value: float) -> str:
    """How an API-equivalent value reads everywhere: "$1.20 API-equiv." (value, not spend)."""
    return f"{fmt_money(value)} API-equiv."


def _window_dict(state: Mapping[str, Any], now: float) -> dict[str, Any]:
    out: dict[str, Any] = {"status": state.get("status"), "observed_at": state.get("observed_at"),
                           "text": windows_text(state, now)}
    for label, util, reset in windows(state, now):
        out["five_hour" if label.startswith("5") else "seven_day"] = {"utilization": util, "resets_at": reset}
    if state.get("overage_status") is not None:
        out["overage_status"] = state.get("overage_status")
    return out


def subscription_part(reader: LedgerReader, data_dir: Path, since: float, until: float,
                      now: float) -> dict[str, Any] | None:
    """``{"requests", "api_equiv_usd", "windows": {backend: …}}``, or None without subscription use."""
    totals = reader.subscription_totals(since, until)
    states = {b: _window_dict(st, now) for b, st in read_states(limits_file(data_dir)).items()}
    states = {b: st for b, st in states.items() if st["text"]}
    if not totals.requests and not states:
        return None
    return {"requests": totals.requests, "api_equiv_usd": round(totals.api_equiv_usd, 6), "windows": states}


def subscription_lines(part: Mapping[str, Any] | None) -> list[str]:
    """The text block under the usage table."""
    if not part:
        return []
    n = int(part["requests"])
    lines = [f"Claude subscription: {n:,} request{'s' if n != 1 else ''}, {equiv(float(part['api_equiv_usd']))} "
             "(paid by the plan: not in the cost above)"]
    for backend, st in part["windows"].items():
        lines.append(f"  {backend}: {st['text']}")
    return lines
