"""``LoginService``: what ``[team.login]`` adds to a gateway. It owns the store, the IdP client and
the signer, hands the chain its ``LoginVerifier``, and gives the gateway its routes:

    GET  /.well-known/oauth-authorization-server   discovery (oauth.py)
    POST /oauth/device_authorization               device codes (oauth.py)
    POST /oauth/token                              device and refresh grants (oauth.py)
    POST /oauth/revoke                             RFC 7009 (oauth.py)
    GET/POST /device, POST /device/deny            the verification page (browser.py)
    GET  /oauth/callback                           the IdP's redirect back (browser.py)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from app.config.login import LoginConfig
from app.config.team import TeamConfig
from app.team.login.guesses import WrongCodes
from app.team.login.idp import IdP
from app.team.login.secret import client_secret
from app.team.login.store import LoginStore
from app.team.login.tokens import Signer
from app.team.login.verifier import LoginVerifier
from app.team.login.web import Receive, Send

log = logging.getLogger("patchbay.team")
T = TypeVar("T")
Handler = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]
Audit = Callable[[str, str, str, dict[str, Any]], None]  # (actor, action, subject, detail)


class LoginService:
    def __init__(self, team: TeamConfig, store: LoginStore, *, audit: Audit | None = None,
                 outage_grace_s: float = 0.0) -> None:
        assert team.login is not None
        self.team = team
        self.config: LoginConfig = team.login
        self.store = store
        self.idp = IdP(team, self.config, client_secret(self.config))  # LoginSecretError: a start error
        self._audit = audit
        self.wrong_codes = WrongCodes()  # the verification page's guard against guessed user codes
        self._signer: Signer | None = None
        self._signer_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.verifier = LoginVerifier(store, self.signer, leeway_s=min(team.clock_skew_s, 5.0), on_close=self.aclose,
                                      outage_grace_s=outage_grace_s)

    @property
    def public_url(self) -> str:
        return self.config.public_url

    def signer(self) -> Signer:
        """The key every instance signs with (read from, or made in, the database once)."""
        if self._signer is None:
            with self._signer_lock:
                if self._signer is None:
                    kid, key = self.store.signing_key()
                    self._signer = Signer(kid, key, self.public_url)
        return self._signer

    async def run(self, work: Callable[[], T]) -> T:
        """A store call: inline for the SQLite file, on a thread of its own for PostgreSQL."""
        if not self.store.lookup_blocks:
            return work()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="patchbay-login-oauth")
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        """One entry in the team's audit trail (best effort: a sign-in does not fail for it)."""
        if self._audit is None:
            return
        record = self._audit
        try:
            await self.run(lambda: record(actor, action, subject, detail))
        except Exception as exc:  # noqa: BLE001 - logged; the trail is not the sign-in's critical path
            log.warning("sign-in: the audit entry %s for %s was not written: %s", action, subject, exc)

    def routes(self) -> dict[str, Handler]:
        from app.team.login import browser, oauth

        return {
            "/.well-known/oauth-authorization-server": lambda s, r, w: oauth.discovery(self, s, r, w),
            "/oauth/device_authorization": lambda s, r, w: oauth.device_authorization(self, s, r, w),
            "/oauth/token": lambda s, r, w: oauth.token(self, s, r, w),
            "/oauth/revoke": lambda s, r, w: oauth.revoke(self, s, r, w),
            "/device": lambda s, r, w: browser.device_page(self, s, r, w),
            "/device/deny": lambda s, r, w: browser.deny(self, s, r, w),
            "/oauth/callback": lambda s, r, w: browser.callback(self, s, r, w),
        }

    async def aclose(self) -> None:
        await self.idp.aclose()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
