"""Google IAP: the signed ``x-goog-iap-jwt-assertion`` header.

ES256 with Google's published keys, ``aud`` = this backend service (or app), ``iss`` =
``https://cloud.google.com/iap``, 30 s of clock skew. The unsigned
``x-goog-authenticated-user-email`` header is never read: anyone who reaches the server
without going through IAP can write it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from app.config.team import IAP_JWKS_URL
from app.team.assertion import AssertionVerifier
from app.team.jwks import JWKSCache
from app.team.jwtverify import JWTRules

IAP_ISSUER = "https://cloud.google.com/iap"
HEADER = "x-goog-iap-jwt-assertion"


class IAPVerifier(AssertionVerifier):
    source = "iap"
    header = HEADER

    def __init__(self, audience: str, *, jwks_url: str = IAP_JWKS_URL, user_claim: str = "email",
                 groups_claim: str | None = "groups", leeway_s: float = 30.0,
                 client: httpx.AsyncClient | None = None, refetch_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(JWTRules("iap", f"Google IAP's assertion ({HEADER})", ("ES256",), audience, IAP_ISSUER,
                                  leeway_s, ("exp", "iat", "aud", "iss")),
                         JWKSCache(jwks_url, source="iap", client=client, refetch_interval_s=refetch_interval_s,
                                   clock=clock),
                         user_claim, groups_claim)
