"""The company's OIDC issuer (``[team] oidc_issuer``) as the browser leg of a sign-in uses it.

- ``metadata``: the issuer's discovery document (``authorization_endpoint``, ``token_endpoint``),
  cached 5 minutes; its ``issuer`` must equal the configured one.
- ``authorize_url``: the authorization-code request with PKCE S256, ``nonce`` and ``state``.
- ``exchange``: the code for tokens at ``token_endpoint`` (``client_secret_post`` when a secret is
  configured, PKCE always), then the ID token verified against the issuer's JWKS by the same code as
  the ``oidc`` identity source (``OIDCVerifier``'s key cache and rules, audience = ``client_id``),
  the ``nonce`` compared, the person and groups read with ``[team] user_claim`` / ``groups_claim``.

An issuer that does not answer, answers 5xx or with something that is not its document is
``IdPUnavailable`` (the page says the company's sign-in service is unreachable: never a Patchbay
bug); an issuer that refuses the code is ``IdPRefused``. Neither message quotes a code or token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import httpx

from app.config.login import LoginConfig
from app.config.team import TeamConfig
from app.team.identity import AuthError, IdentityUnavailable
from app.team.jwtverify import claim_groups, claim_user, verify
from app.team.oidc import OIDCVerifier, secure_url

TIMEOUT_S = 5.0
SCOPE = "openid profile email offline_access"


class IdPUnavailable(Exception):
    """The issuer cannot be used right now. ``str()`` is a sentence for the person."""


class IdPRefused(Exception):
    """The issuer refused (the code, the ID token). ``str()`` is a sentence for the person."""


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


class IdP:
    def __init__(self, team: TeamConfig, login: LoginConfig, client_secret: str | None) -> None:
        assert team.oidc_issuer
        self.issuer = team.oidc_issuer.rstrip("/")
        self.login = login
        self._secret = client_secret
        self._client = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False)
        self._oidc = OIDCVerifier(self.issuer, login.client_id, jwks_url=team.oidc_jwks_url, client=self._client,
                                  user_claim=team.user_claim, groups_claim=team.groups_claim,
                                  leeway_s=team.clock_skew_s)
        self._rules = replace(self._oidc.rules, what="the ID token from the company's sign-in service")
        self._meta: tuple[float, dict[str, Any]] | None = None

    @property
    def redirect_uri(self) -> str:
        return f"{self.login.public_url}/oauth/callback"

    def _down(self, why: str) -> IdPUnavailable:
        return IdPUnavailable(f"The company's sign-in service ({self.issuer}) cannot be reached right now ({why}). "
                              "This is not a problem with Patchbay or with your account: try again in a few "
                              "minutes, and tell your Patchbay admin if it lasts.")

    async def metadata(self) -> dict[str, Any]:
        hit = self._meta
        if hit is not None and time.monotonic() - hit[0] < 300:
            return hit[1]
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            resp = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise self._down(type(exc).__name__) from None
        if resp.status_code != 200:
            raise self._down(f"its discovery document answered HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError:
            raise self._down("its discovery document is not JSON") from None
        if not isinstance(doc, dict) or str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise self._down("its discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(doc.get(key), str) or not secure_url(doc[key]):
                raise self._down(f"its discovery document has no usable {key}")
        self._meta = (time.monotonic(), doc)
        return doc

    async def authorize_url(self, state: str, nonce: str, verifier: str) -> str:
        meta = await self.metadata()
        query = {"client_id": self.login.client_id, "response_type": "code", "scope": SCOPE,
                 "redirect_uri": self.redirect_uri, "state": state, "nonce": nonce,
                 "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256",
                 "response_mode": "query"}
        base = meta["authorization_endpoint"]
        return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"

    async def _token(self, form: dict[str, str], doing: str) -> dict[str, Any]:
        """The token endpoint's 200 body for ``form`` (client authentication added)."""
        meta = await self.metadata()
        form = form | {"client_id": self.login.client_id}
        if self._secret is not None:
            form["client_secret"] = self._secret
        try:
            resp = await self._client.post(meta["token_endpoint"], data=form, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise self._down(type(exc).__name__) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 500 or not isinstance(body, dict):
            raise self._down(f"its token endpoint answered HTTP {resp.status_code}")
        if resp.status_code != 200:
            error = str(body.get("error", "an error"))[:64]
            raise IdPRefused(f"The company's sign-in service refused to {doing} ({error}).")
        return body

    async def _claims(self, id_token: str, nonce: str | None) -> tuple[str, tuple[str, ...]]:
        try:
            claims = await verify(id_token, self._rules, self._oidc.keys.get)
            if nonce is not None and claims.get("nonce") != nonce:
                raise IdPRefused("The ID token from the company's sign-in service is not the one this sign-in "
                                 "asked for (its nonce differs). Start again from Claude Code (/login).")
            return claim_user(claims, self._oidc.user_claim, self._rules), claim_groups(claims,
                                                                                        self._oidc.groups_claim)
        except IdentityUnavailable as exc:
            raise self._down(exc.message) from None
        except AuthError as exc:
            raise IdPRefused(exc.message.removeprefix("Patchbay: ")) from None

    async def exchange(self, code: str, verifier: str, nonce: str) -> tuple[str, tuple[str, ...], str | None]:
        """(person, groups, the IdP's refresh token if it gave one) from the ID token the code buys."""
        body = await self._token({"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": self.redirect_uri, "code_verifier": verifier},
                                 "finish the sign-in")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise IdPRefused("The company's sign-in service sent no ID token. Ask your Patchbay admin to allow "
                             "the openid scope for the client Patchbay uses.")
        user, groups = await self._claims(id_token, nonce)
        refresh = body.get("refresh_token")
        return user, groups, refresh if isinstance(refresh, str) and refresh else None

    async def refresh(self, refresh_token: str, user: str) -> tuple[str, tuple[str, ...] | None]:
        """Asks the IdP whether the person is still signed in there: (its refresh token to keep, the
        groups of a fresh ID token or None when it sent none). ``IdPRefused``: they are not (removed,
        disabled, signed out); ``IdPUnavailable``: it cannot say now."""
        body = await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token},
                                 "renew the sign-in")
        new = body.get("refresh_token")
        keep = new if isinstance(new, str) and new else refresh_token
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            return keep, None
        who, groups = await self._claims(id_token, None)
        if who != user:
            raise IdPRefused("The company's sign-in service renewed the sign-in for another person.")
        return keep, groups

    async def aclose(self) -> None:
        await self._client.aclose()


def json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
