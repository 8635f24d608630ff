"""The Team page's part: in team mode, the issued keys (create, revoke) and the audit trail,
read from the ledger database the gateway uses (so what the CLI did shows here too)."""

from __future__ import annotations

import re
import time

from PySide6.QtCore import QObject, QTimer, Signal

from app.bridge.engine import EngineApi
from app.bridge.notices import Notices
from app.views.data import TeamAuditView, TeamKeyView, TeamView

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
AUDIT_SHOWN = 500
REFRESH_MS = 15_000  # spend by user and group, and keys the CLI changed


class Team(QObject):
    changed = Signal(object)  # TeamView
    keyCreated = Signal(str, str, str)  # secret (shown once), key id, user

    def __init__(self, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._notices = notices
        self._engine: EngineApi | None = None
        self._view = TeamView(False)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine
        self.refresh()
        if self._view.enabled:
            self._timer.start()
        else:
            self._timer.stop()

    def view(self) -> TeamView:
        return self._view

    def refresh(self) -> None:
        eng = self._engine
        store = eng.team_store if eng is not None else None
        team = eng.config.team if eng is not None else None
        if eng is None or store is None or team is None:
            self._view = TeamView(False)
        else:
            from app.team.cli import _summary

            now = time.time()
            keys = tuple(TeamKeyView(r.id, r.user, r.groups, r.status(now), r.created_at, r.expires_at, r.created_by)
                         for r in reversed(store.list_keys()))
            audit = tuple(TeamAuditView(e.at, e.actor, e.action, e.subject, _summary(e.action, e.detail))
                          for e in reversed(store.audit()[-AUDIT_SHOWN:]))
            by_user: tuple[tuple[str, int, float], ...] = ()
            by_group: tuple[tuple[str, int, float], ...] = ()
            try:
                from app.services.budgets import period_bounds

                start, _end = period_bounds("month", now)
                by_user = tuple((t.key, t.requests, t.cost_usd) for t in eng.reader.totals(start, None, "user"))
                by_group = tuple((t.key, t.requests, t.cost_usd) for t in eng.reader.totals(start, None, "group"))
            except Exception as exc:  # a ledger that cannot be read now: the keys still show
                self._notices.say("warn", "Spend by user is not available", str(exc), key="team-spend")
            self._view = TeamView(True, tuple(team.identity), tuple(g.name for g in team.groups), keys, audit,
                                  by_user, by_group)
        self.changed.emit(self._view)

    def create_key(self, email: str, groups: list[str], expires: str = "never") -> bool:
        """Issue a key; its secret goes out once through ``keyCreated``. False (with a notice) if not."""
        from app.team.audit import actor
        from app.team.cli import parse_expiry

        eng = self._engine
        store = eng.team_store if eng is not None else None
        email = email.strip()
        if store is None:
            return False
        if not _EMAIL_RE.match(email):
            self._notices.say("warn", "Not an e-mail address", f"{email!r} is not an e-mail address. Write the "
                              "person's e-mail, e.g. alice@corp.example.", key="team")
            return False
        try:
            expires_at = parse_expiry(expires, time.time())
        except ValueError as exc:
            self._notices.say("warn", "When should the key expire?", str(exc), key="team")
            return False
        record, secret = store.create(email, tuple(dict.fromkeys(g.strip() for g in groups if g.strip())),
                                      expires_at=expires_at, created_by=actor())
        self._notices.clear("team")
        self.keyCreated.emit(secret, record.id, record.user)
        self.refresh()
        return True

    def revoke(self, key_id: str) -> None:
        from app.team.audit import actor

        eng = self._engine
        store = eng.team_store if eng is not None else None
        if store is None:
            return
        store.revoke(key_id, revoked_by=actor())
        self.refresh()
