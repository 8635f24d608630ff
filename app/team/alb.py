"""AWS Application Load Balancer: the signed ``x-amzn-oidc-data`` header.

ES256; the public key is fetched per key id from ``https://public-keys.auth.elb.REGION.amazonaws.com/KID``
(a PEM file); the JWT header's ``signer`` field must equal this load balancer's ARN, so a token
minted by another ALB (even in the same account) is refused. The ALB writes its segments as
base64url *with* ``=`` padding, which some JWT libraries reject; PyJWT accepts it, and the
signature covers the segments exactly as sent, so nothing may be stripped before checking.
``x-amzn-oidc-identity`` (plain text) is never read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from app.team.assertion import AssertionVerifier
from app.team.identity import AuthError
from app.team.jwks import PemKeyCache
from app.team.jwtverify import JWTRules, unverified_header, verify

HEADER = "x-amzn-oidc-data"


def alb_keys_url(region: str) -> str:
    return f"https://public-keys.auth.elb.{region}.amazonaws.com"


def region_of_arn(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[2] == "elasticloadbalancing" else None


class ALBVerifier(AssertionVerifier):
    source = "alb"
    header = HEADER

    def __init__(self, arn: str, *, region: str | None = None, keys_url: str | None = None,
                 user_claim: str = "email", groups_claim: str | None = "groups", leeway_s: float = 30.0,
                 client: httpx.AsyncClient | None = None, refetch_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        region = region or region_of_arn(arn)
        if keys_url is None:
            if not region:
                raise ValueError("the ALB verifier needs alb_region (or an ARN that names the region)")
            keys_url = alb_keys_url(region)
        self.arn = arn
        super().__init__(JWTRules("alb", f"the load balancer's assertion ({HEADER})", ("ES256",), None, None,
                                  leeway_s, ("exp",)),
                         PemKeyCache(keys_url, client=client, refetch_interval_s=refetch_interval_s, clock=clock),
                         user_claim, groups_claim)

    async def claims(self, token: str) -> dict[str, Any]:
        claims = self.cache.get(token)
        if claims is None:
            header = unverified_header(token, self.rules)
            if header.get("signer") != self.arn:
                raise AuthError("Patchbay: the load balancer's assertion (x-amzn-oidc-data) was signed by another "
                                "load balancer than the one named by alb_arn. Requests must come through this "
                                "gateway's own load balancer.", source="alb")
            claims = await verify(token, self.rules, self.keys.get, self.cache, header=header)
        return claims
