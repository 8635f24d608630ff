"""``open_sign_in``: the ``LoginService`` a config's ``[team.login]`` asks for (or None), on the
ledger's database, with the team's audit trail. Its errors are sentences for a start error."""

from __future__ import annotations

from typing import Any

from app.team.login.secret import LoginSecretError
from app.team.login.service import LoginService
from app.team.login.store import LoginStore, LoginStoreError
from app.team.login.store_open import open_login_store


class SignInError(Exception):
    """``[team.login]`` cannot be served. ``str()`` says why and what to do."""


def open_sign_in(config: Any, paths: Any, store: LoginStore | None, team_store: Any) -> tuple[LoginService | None,
                                                                                           LoginStore | None]:
    """(the service or None, the store to keep for the next reload)."""
    team = config.team
    if team is None or team.login is None:
        return None, store
    try:
        if store is None:
            store = open_login_store(config, paths)
        audit = team_store.record if team_store is not None else None
        from app.team.keys import OUTAGE_GRACE_S

        # "open": a sign-in checked before an outage keeps working through it (bounded), as team keys do
        grace = OUTAGE_GRACE_S if config.ledger.team.on_unreachable == "open" else 0.0
        return LoginService(team, store, audit=audit, outage_grace_s=grace), store
    except (LoginStoreError, LoginSecretError) as exc:
        raise SignInError(str(exc)) from None
