"""Cloudflare Access: the signed ``Cf-Access-Jwt-Assertion`` header.

Keys at ``https://TEAM.cloudflareaccess.com/cdn-cgi/access/certs`` (they rotate every six weeks;
the old key stays published for seven days, and an unknown key id refetches), ``aud`` must hold
the Access application's AUD tag, ``iss`` is the team domain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from app.team.assertion import AssertionVerifier
from app.team.jwks import JWKSCache
from app.team.jwtverify import JWTRules

HEADER = "cf-access-jwt-assertion"


def team_domain(team: str) -> str:
    team = team.strip().removeprefix("https://").rstrip("/")
    return f"https://{team}" if "." in team else f"https://{team}.cloudflareaccess.com"


class CloudflareVerifier(AssertionVerifier):
    source = "cloudflare"
    header = HEADER

    def __init__(self, team: str, audience: str, *, certs_url: str | None = None, user_claim: str = "email",
                 groups_claim: str | None = "groups", leeway_s: float = 30.0,
                 client: httpx.AsyncClient | None = None, refetch_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        issuer = team_domain(team)
        super().__init__(JWTRules("cloudflare", "Cloudflare Access's assertion (Cf-Access-Jwt-Assertion)",
                                  ("RS256",), audience, issuer, leeway_s, ("exp", "aud", "iss")),
                         JWKSCache(certs_url or f"{issuer}/cdn-cgi/access/certs", source="cloudflare", client=client,
                                   refetch_interval_s=refetch_interval_s, clock=clock),
                         user_claim, groups_claim)
