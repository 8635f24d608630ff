"""The Team page's part: in team mode, the issued keys (create, revoke), the audit trail, spend
by user and group over time and each per-user or per-group budget's state, read from the ledger
database the gateway uses (so what the CLI did shows here too), on the jobs thread."""

from __future__ import annotations

import re
import time

from PySide6.QtCore import QObject, QTimer, Signal

from app.bridge.data_team import TeamView
from app.bridge.engine import EngineApi
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.bridge.team_read import read_team
from app.team.keys import KeyStoreError, KeyStoreReadOnly

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REFRESH_MS = 15_000  # spend by user and group, and keys the CLI changed


class Team(QObject):
    changed = Signal(object)  # TeamView
    keyCreated = Signal(str, str, str)  # secret (shown once), key id, user

    def __init__(self, jobs: Jobs, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._notices = notices
        self._engine: EngineApi | None = None
        self._view = TeamView(False)
        self._reading = False  # a read is on the jobs thread
        self._again = False  # ...and another was asked for meanwhile
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
        """Read everything again off the GUI thread; ``changed`` follows. In team mode the page
        is enabled at once (from the config), its contents when the read is back."""
        eng = self._engine
        store = eng.team_store if eng is not None else None
        team = eng.config.team if eng is not None else None
        if eng is None or store is None:
            self._set(TeamView(False))
            return
        if not self._view.enabled:  # team mode: from the config; an admin's look: what a gateway recorded
            self._set(TeamView(True, tuple(team.identity), tuple(g.name for g in team.groups)) if team is not None
                      else TeamView(True, admin_view=True))
        if self._reading:
            self._again = True
            return
        self._reading = True
        reader = eng.reader
        budgets = eng.config.budgets if team is not None else None  # None: the recorded policy's

        def done(result: tuple[TeamView, str | None] | None, error: BaseException | None) -> None:
            self._reading = False
            if self._engine is eng:  # not an answer about an engine since replaced
                if error is not None or result is None:
                    self._notices.say("warn", "The Team page could not be read", str(error), key="team-spend")
                else:
                    view, problem = result
                    if problem is None:
                        self._notices.clear("team-spend")
                    else:
                        self._notices.say("warn", "Spend by user is not available", problem, key="team-spend")
                    self._set(view)
            if self._again:
                self._again = False
                self.refresh()

        self._jobs.submit(lambda: read_team(team, store, reader, budgets), done)

    def _set(self, view: TeamView) -> None:
        self._view = view
        self.changed.emit(view)

    def create_key(self, email: str, groups: list[str], expires: str = "never") -> bool:
        """Issue a key; its secret goes out once through ``keyCreated``. False (with a notice) if not."""
        from app.team.audit import actor
        from app.team.wording import parse_expiry

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
        try:
            record, secret = store.create(email, tuple(dict.fromkeys(g.strip() for g in groups if g.strip())),
                                          expires_at=expires_at, created_by=actor())
        except KeyStoreError as exc:
            self._refused("The key was not created", exc)
            return False
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
        try:
            store.revoke(key_id, revoked_by=actor())
        except KeyStoreError as exc:
            self._refused(f"The key {key_id} was not revoked", exc)
            return
        self._notices.clear("team")
        self.refresh()

    def _refused(self, title: str, exc: KeyStoreError) -> None:
        """The store said no: in plain words on the banner, never an exception out of a Qt slot."""
        text = str(exc)
        if isinstance(exc, KeyStoreReadOnly):
            text += (" Keys are created and revoked by a role that may write the team ledger: ask whoever runs "
                     "the team gateway, or run `patchbay team key create EMAIL` (or `patchbay team key revoke "
                     "ID`) with the gateways' config.")
        self._notices.say("warn", title, text, key="team")
