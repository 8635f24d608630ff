"""Patchbay's own access tokens (``tokens.py``) as an identity source: ``Authorization: Bearer`` on
every route, first in the chain when ``[team.login]`` is set.

A bearer whose JOSE header names a ``pbl-`` key is Patchbay's; anything else is left to the other
sources. Every refusal of one of these tokens (forged, expired, revoked, unknown sign-in) is 401
``authentication_error`` with ``x-should-retry: false``, so Claude Code stops at once and shows the
sentence instead of retrying for minutes (GATEWAY-PROTOCOL.md §15).

Cost: a token already verified is a dictionary hit plus a look at its sign-in's cached state (a few
µs: ``bench/login_bench.py``); the signature is checked once per token. The sign-in's state is read
from the store again after at most ``ttl_s`` (0.5 s), off the event loop for PostgreSQL, one read per
sign-in at a time: a revocation on any instance is seen by every instance within a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import jwt

from app.team.identity import STOP_RETRYING, AuthError, Headers, Identity, IdentityUnavailable, bearer
from app.team.jwtverify import _peek_header
from app.team.keys import KEY_PREFIX
from app.team.login.store import LoginStore, LoginStoreError, LoginStoreUnavailable, Session
from app.team.login.tokens import KID_PREFIX, Signer

log = logging.getLogger("patchbay.team")

T = TypeVar("T")
SIGN_IN_AGAIN = "Sign in again with /login in Claude Code (or `claude auth login`)."


def refused(message: str) -> AuthError:
    err = AuthError(f"Patchbay: {message}", source="login")
    err.headers = list(STOP_RETRYING)
    return err


@dataclass(frozen=True, slots=True)
class _Verified:
    exp: float
    sid: str
    identity: Identity


def _unavailable(exc: LoginStoreError) -> IdentityUnavailable:
    log.warning("identity: sign-ins cannot be checked: %s", exc)
    return IdentityUnavailable("Patchbay cannot check sign-ins right now: the team's database does not answer. "
                               "This is not a problem with your sign-in: try again in a moment, and tell your "
                               "Patchbay admin if it lasts.", source="login", final=True)


def _ours(header: dict[str, object]) -> bool:
    """A token shaped like Patchbay's: its key id, or HMAC (which no IdP source accepts). Not its
    ``typ``: an IdP's own RFC 9068 access tokens say ``at+jwt`` too, and are the oidc source's."""
    return str(header.get("kid", "")).startswith(KID_PREFIX) or header.get("alg") == "HS256"


_PROXY_HEADERS = ("x-goog-iap-jwt-assertion", "x-amzn-oidc-data", "cf-access-jwt-assertion")


def _other_credential(headers: Headers) -> bool:
    return any(h in headers for h in _PROXY_HEADERS)


class LoginVerifier:
    source = "login"

    def __init__(self, store: LoginStore, signer: Callable[[], Signer], *, ttl_s: float = 0.5,
                 leeway_s: float = 0.0, max_entries: int = 8192,
                 on_close: Callable[[], Awaitable[None]] | None = None, outage_grace_s: float = 0.0) -> None:
        if ttl_s >= 1.0:
            raise ValueError("ttl_s must stay under a second: revocations must reach every instance within one")
        self.store = store
        self._signer = signer  # may block the first time (reads the key from the database)
        self.ttl_s = ttl_s
        self.leeway_s = leeway_s
        self._max = max_entries
        self._tokens: dict[str, _Verified] = {}
        self._sessions: dict[str, tuple[float, Session | None]] = {}  # sid -> (read at, monotonic; session)
        self._asking: dict[str, asyncio.Future[Session | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._on_close = on_close  # the sign-in service's own clean-up (its IdP client): the chain owns this
        # while the store cannot be reached, a sign-in's last state stands for this long after it was read
        # (0: not at all; [ledger] on_unreachable = "open" sets the team keys' OUTAGE_GRACE_S)
        self.outage_grace_s = outage_grace_s
        self._outage = False

    async def verify(self, headers: Headers) -> Identity | None:
        token = bearer(headers)
        if token is None:
            return None
        if not token.startswith("eyJ"):
            if token.startswith(KEY_PREFIX) or _other_credential(headers):
                return None  # a team key, or a proxy's assertion: their sources' to judge
            raise refused("the bearer credential is neither a sign-in token from this gateway nor a team key. "
                          + SIGN_IN_AGAIN)
        hit = self._tokens.get(token)
        if hit is not None and time.time() < hit.exp:
            state = self._sessions.get(hit.sid)
            if state is not None and time.monotonic() - state[0] < self.ttl_s and state[1] is not None \
                    and state[1].revoked_at is None:
                return hit.identity
            await self._check_session(hit.sid)
            return hit.identity
        try:
            header = _peek_header(token)
        except Exception:
            return None
        if not isinstance(header, dict) or not _ours(header):
            return None
        return await self._first_time(token, header)

    async def _first_time(self, token: str, header: dict[str, object]) -> Identity:
        try:
            signer = await self._in_thread(self._signer)
        except LoginStoreError as exc:
            raise _unavailable(exc) from None
        if header.get("kid") != signer.kid or header.get("alg") != "HS256":
            raise refused("this access token was not signed by this gateway (unknown key or algorithm). "
                          + SIGN_IN_AGAIN)
        try:
            claims = signer.decode(token, leeway_s=self.leeway_s)
        except jwt.ExpiredSignatureError:
            raise refused("your sign-in's access token has expired. Claude Code renews it by itself while its "
                          "refresh token works; " + SIGN_IN_AGAIN) from None
        except jwt.InvalidSignatureError:
            raise refused("the signature of this access token does not match. The token is forged or damaged. "
                          + SIGN_IN_AGAIN) from None
        except jwt.InvalidTokenError as exc:
            raise refused(f"this access token cannot be used ({type(exc).__name__}). " + SIGN_IN_AGAIN) from None
        sid = str(claims["sid"])
        groups = claims.get("groups")
        identity = Identity(str(claims["sub"]), tuple(str(g) for g in groups) if isinstance(groups, list) else (),
                            "login")
        await self._check_session(sid)
        if len(self._tokens) >= self._max:
            self._tokens.clear()
        self._tokens[token] = _Verified(float(claims["exp"]) + self.leeway_s, sid, identity)
        return identity

    async def _check_session(self, sid: str) -> None:
        state = self._sessions.get(sid)
        now = time.monotonic()
        if state is None or now - state[0] >= self.ttl_s:
            try:
                session = await self._read(sid)
            except LoginStoreError as exc:
                if not (isinstance(exc, LoginStoreUnavailable) and state is not None
                        and now - state[0] < self.outage_grace_s):
                    raise _unavailable(exc) from None
                if not self._outage:  # [ledger] on_unreachable = "open": the last answer stands, bounded
                    log.warning("identity: sign-ins cannot be checked (%s); sign-ins checked in the last %.0f s "
                                "keep their last answer meanwhile", exc, self.outage_grace_s)
                    self._outage = True
                # its read time stays: the grace counts from the last real answer
            else:
                self._outage = False
                if len(self._sessions) >= self._max:
                    self._sessions.clear()
                state = self._sessions[sid] = (time.monotonic(), session)
        session = state[1]
        if session is None:
            raise refused("this access token belongs to a sign-in this gateway does not know. " + SIGN_IN_AGAIN)
        if session.revoked_at is not None:
            when = datetime.fromtimestamp(session.revoked_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise refused(f"this sign-in ({session.id}) was revoked on {when}"
                          f"{' (' + session.revoked_why + ')' if session.revoked_why else ''}. " + SIGN_IN_AGAIN)

    async def _read(self, sid: str) -> Session | None:
        asking = self._asking.get(sid)
        if asking is None:
            asking = asyncio.ensure_future(self._in_thread(lambda: self.store.session(sid)))
            self._asking[sid] = asking
            asking.add_done_callback(lambda f: (self._asking.pop(sid, None),
                                                f.cancelled() or f.exception()))
        return await asyncio.shield(asking)

    async def _in_thread(self, work: Callable[[], T]) -> T:
        if not self.store.lookup_blocks:
            return work()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="patchbay-login")
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        if self._on_close is not None:
            await self._on_close()
