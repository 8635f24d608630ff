"""Google IAP: the signed ``x-goog-iap-jwt-assertion`` header.

ES256 with Google's published keys, ``aud`` = this backend service (or app), ``iss`` =
``https://cloud.google.com/iap``, 30 s of clock skew. The unsigned
``x-goog-authenticated-user-email`` header is never read: anyone who reaches the server
without going through IAP can write it.
"""

from __future__ import annotations

import time
from typing import Callable

import httpx

from app.team.identity import Headers, Identity
from app.team.jwks import JWKSCache
from app.team.jwtverify import JWTRules, TokenCache, claim_groups, claim_user, verify

IAP_JWKS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
IAP_ISSUER = "https://cloud.google.com/iap"
HEADER = "x-goog-iap-jwt-assertion"


class IAPVerifier:
    source = "iap"

    def __init__(self, audience: str, *, jwks_url: str = IAP_JWKS_URL, user_claim: str = "email",
                 groups_claim: str | None = "groups", leeway_s: float = 30.0,
                 client: httpx.AsyncClient | None = None, refetch_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = JWTRules("iap", f"Google IAP's assertion ({HEADER})", ("ES256",), audience, IAP_ISSUER,
                              leeway_s, ("exp", "iat", "aud", "iss"))
        self.keys = JWKSCache(jwks_url, source="iap", client=client, refetch_interval_s=refetch_interval_s, clock=clock)
        self.cache = TokenCache()
        self.user_claim = user_claim
        self.groups_claim = groups_claim

    async def verify(self, headers: Headers) -> Identity | None:
        token = headers.get(HEADER)
        if not token:
            return None
        claims = await verify(token.strip(), self.rules, self.keys.get, self.cache)
        return Identity(claim_user(claims, self.user_claim, self.rules), claim_groups(claims, self.groups_claim),
                        "iap")

    async def aclose(self) -> None:
        await self.keys.aclose()
