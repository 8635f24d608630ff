"""The Team page's Caps tab: every per-person cap with where it came from (the config file, or the
Admin API's spend limits), and setting or deleting a spend limit. It writes where the Admin API
does, the ``spend_limits`` table of the ledger database the page already reads (the shared
PostgreSQL, or the ledger file), with the audit row in the same transaction, audited as this
desktop user (``user@host``); the gateways apply it within a second. A read-only database role
is told so in words."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.bridge.data_caps import CapRowView, CapsView
from app.bridge.engine import EngineApi
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.config import BudgetConfig

log = logging.getLogger("patchbay.bridge")

_PERIOD = {"day": "daily", "week": "weekly", "month": "monthly"}


def _money(cents: int | None) -> str:
    return "unlimited" if cents is None else f"${cents / 100:,.2f}"


def read_caps(store: Any, budgets: Sequence[BudgetConfig], groups: tuple[str, ...]) -> CapsView:
    """The rows: the Admin API's spend limits, then the config's per-person budgets, each saying
    which replaces which (app/team/spend_limits.py: the API's replaces the config's within a level)."""
    limits = store.load()
    rows = []
    levels = {(x.scope_type if x.scope_type != "user" else f"user:{x.scope_id}", x.period) for x in limits}
    for x in limits:
        scope = {"user": f"user {x.scope_id}", "rbac_group": f"group {x.scope_id} (each person)",
                 "organization": "organization (each person)"}[x.scope_type]
        rows.append(CapRowView(scope, x.period, _money(x.amount_cents), x.action, "Admin API", "", x.id,
                               x.updated_by, x.updated_at))
    for b in budgets:
        if b.scope == "session":
            continue
        period = _PERIOD.get(b.period, b.period)
        replaced = (b.scope == "each-user" and ("organization", period) in levels) or \
            (b.scope.startswith("user:") and (b.scope.lower(), period) in levels)
        pooled = b.scope in ("all",) or b.scope.startswith(("backend:", "group:"))
        note = ("replaced by the Admin API's limit" if replaced else
                "pooled: applies beside any per-person cap" if pooled else "default: an Admin API limit replaces it")
        rows.append(CapRowView(b.scope, period, f"${b.limit_usd:,.2f}", b.action, "config", note))
    return CapsView(True, tuple(rows), groups)


class TeamCaps(QObject):
    changed = Signal(object)  # CapsView

    def __init__(self, jobs: Jobs, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._notices = notices
        self._engine: EngineApi | None = None
        self._store: Any = None
        self._view = CapsView(False)

    def attach(self, engine: EngineApi | None) -> None:
        self._engine, self._store = engine, None
        self.refresh()

    def view(self) -> CapsView:
        return self._view

    def _open(self) -> Any:
        eng = self._engine
        if eng is None or (eng.config.team is None and not eng.config.ledger.team.url):
            return None
        if self._store is None:
            from app.admin.setup import open_limit_store

            self._store = open_limit_store(eng.config, eng.paths)
        return self._store

    def _budgets(self) -> tuple[tuple[BudgetConfig, ...], tuple[str, ...]]:
        eng = self._engine
        assert eng is not None
        if eng.config.team is not None:
            return tuple(eng.config.budgets), tuple(g.name for g in eng.config.team.groups)
        from app.team.recorded import recorded_policy

        store = eng.team_store
        recorded = recorded_policy(store) if store is not None else None
        return (recorded.budgets, recorded.groups) if recorded is not None else ((), ())

    def refresh(self) -> None:
        eng = self._engine
        if eng is None or (eng.config.team is None and not eng.config.ledger.team.url):
            self._set(CapsView(False))
            return

        def read() -> CapsView:
            store = self._open()
            budgets, groups = self._budgets()
            try:
                return read_caps(store, budgets, groups)
            except Exception as exc:  # noqa: BLE001 - said on the tab
                return CapsView(True, groups=groups, problem=str(exc))

        def done(view: CapsView | None, error: BaseException | None) -> None:
            if self._engine is eng:
                self._set(view if view is not None else CapsView(True, problem=str(error)))

        self._jobs.submit(read, done)

    def _set(self, view: CapsView) -> None:
        self._view = view
        self.changed.emit(view)

    def set_limit(self, scope_type: str, who: str, period: str, dollars: str, action: str = "block") -> bool:
        """Create or replace the spend limit of a scope and period; ``dollars`` blank: unlimited."""
        from app.team.audit import actor
        from app.team.spend_limits import LimitError, parse_limit

        eng = self._engine
        if eng is None:
            return False
        try:
            text = dollars.strip().lstrip("$").replace(",", "")
            cents = None if not text else round(float(text) * 100)
            if cents is not None and cents < 0:
                raise LimitError("a cap is $0 or more")
            scope: dict[str, str] = {"type": scope_type}
            if scope_type != "organization":
                scope["user_id" if scope_type == "user" else "rbac_group_id"] = who
            inp = parse_limit({"scope": scope, "amount": None if cents is None else str(cents), "period": period,
                               "action": action}, [b.id for b in eng.config.backends])
            self._open().upsert(inp, actor())
        except ValueError as exc:
            self._notices.say("warn", "The cap was not set", str(exc), key="team-caps")
            return False
        except Exception as exc:  # noqa: BLE001 - the database said no: in words, never out of a Qt slot
            self._notices.say("warn", "The cap was not set", _refusal(exc), key="team-caps")
            return False
        self._notices.clear("team-caps")
        self.refresh()
        return True

    def delete_limit(self, limit_id: str) -> None:
        from app.team.audit import actor

        try:
            if self._open() is not None:
                self._open().delete(limit_id, actor())
        except Exception as exc:  # noqa: BLE001
            self._notices.say("warn", f"The spend limit {limit_id} was not deleted", _refusal(exc), key="team-caps")
            return
        self._notices.clear("team-caps")
        self.refresh()


def _refusal(exc: BaseException) -> str:
    text = str(exc)
    if "permission denied" in text.lower():
        text += (" This connection's [ledger] user may only read the team ledger: change caps with an admin key "
                 "through the gateway's Admin API (/v1/organizations/spend_limits), or with a role that may write.")
    return text
