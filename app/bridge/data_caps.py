"""What the Team page's Caps tab shows (plain data, made by ``app/bridge/team_caps.py``): every
per-person cap, where it came from (the config file, or the Admin API's spend limits in the
ledger database) and who changed it last."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CapRowView:
    scope: str  # "user alice@corp.example", "group eng", "organization (each person)"; config: its scope
    period: str  # daily | weekly | monthly
    amount: str  # "$5.00", or "unlimited"
    action: str  # block | warn | downgrade:…
    origin: str  # "Admin API" | "config"
    note: str  # e.g. "replaces the config's each-user budget"; "" when none
    limit_id: str | None = None  # the spend limit's id (API rows: may be changed or deleted here)
    changed_by: str = ""
    changed_at: float | None = None


@dataclass(frozen=True)
class CapsView:
    enabled: bool  # team mode, or an admin's look at a team ledger
    rows: tuple[CapRowView, ...] = ()
    groups: tuple[str, ...] = ()  # for the form's group choice
    problem: str | None = None  # why the spend limits could not be read now
