"""Any OIDC issuer: a JWT sent as ``Authorization: Bearer`` (so ``gcloud auth print-identity-token``
works as Claude Code's ``apiKeyHelper`` as it is).

The keys come from the issuer's discovery document (``ISSUER/.well-known/openid-configuration``
→ ``jwks_uri``) unless ``jwks_url`` is given; the document's ``issuer`` must equal the one
configured (OIDC Discovery §4.3). ``iss``, ``aud``, ``exp`` and (when present) ``nbf`` and
``iat`` are checked; only asymmetric algorithms are accepted, so ``alg: none`` and an HS256
token "signed" with the issuer's public key are refused. A bearer credential that is not shaped
like a JWT is left to the next source (a Patchbay team key, say).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from app.config.reading import secure_url
from app.team.identity import Headers, Identity, IdentityUnavailable, bearer
from app.team.jwks import JWKSCache, json_doc
from app.team.jwtverify import (
    ASYMMETRIC,
    JWTRules,
    TokenCache,
    algorithms,
    claim_groups,
    claim_user,
    looks_like_jwt,
    verify,
)

# Google writes either form into its ID tokens' iss.
_ALIASES = {"https://accounts.google.com": ("https://accounts.google.com", "accounts.google.com")}


class OIDCVerifier:
    source = "oidc"

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None, user_claim: str = "email",
                 groups_claim: str | None = "groups", leeway_s: float = 30.0,
                 allowed_algorithms: Sequence[str] = ASYMMETRIC, client: httpx.AsyncClient | None = None,
                 refetch_interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer.rstrip("/")
        self.rules = JWTRules("oidc", "the identity token (Authorization: Bearer)", algorithms(allowed_algorithms),
                              audience, _ALIASES.get(self.issuer, (self.issuer,)), leeway_s,
                              ("exp", "iat", "aud", "iss"))
        self.keys = JWKSCache(jwks_url, source="oidc", client=client, resolve_url=self._discover,
                              refetch_interval_s=refetch_interval_s, clock=clock)
        self.cache = TokenCache()
        self.user_claim = user_claim
        self.groups_claim = groups_claim

    async def _discover(self, fetcher: Any) -> str:
        url = f"{self.issuer}/.well-known/openid-configuration"
        body = await fetcher.get(url, "oidc", "the OIDC discovery document")
        doc = json_doc(body) if body is not None else None
        if not isinstance(doc, dict):
            raise IdentityUnavailable(f"Patchbay found no OIDC discovery document at {url}. Check oidc_issuer, or "
                                      "set oidc_jwks_url in [team].", source="oidc")
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise IdentityUnavailable(f"The OIDC discovery document at {url} names another issuer than oidc_issuer. "
                                      "Write oidc_issuer exactly as the provider does.", source="oidc")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not secure_url(jwks_uri):
            raise IdentityUnavailable(f"The OIDC discovery document at {url} has no usable https jwks_uri. Set "
                                      "oidc_jwks_url in [team].", source="oidc")
        return jwks_uri

    async def verify(self, headers: Headers) -> Identity | None:
        token = bearer(headers)
        if token is None or not looks_like_jwt(token):
            return None
        claims = await verify(token, self.rules, self.keys.get, self.cache)
        return Identity(claim_user(claims, self.user_claim, self.rules), claim_groups(claims, self.groups_claim),
                        "oidc")

    async def aclose(self) -> None:
        await self.keys.aclose()
