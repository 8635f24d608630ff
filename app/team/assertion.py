"""What the three signed-header verifiers (Google IAP, AWS ALB, Cloudflare Access) share: the
header they read, the key cache and token cache, and how verified claims become an Identity.

Each verifier sets its own rules and key source; ALB adds its ``signer`` check by overriding
``claims``.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.team.identity import Headers, Identity
from app.team.jwtverify import JWTRules, TokenCache, claim_groups, claim_user, verify


class KeySource(Protocol):
    async def get(self, kid: str) -> Any: ...

    async def aclose(self) -> None: ...


class AssertionVerifier:
    """A verifier for one signed assertion header; subclasses set ``source`` and ``header``."""

    source: str
    header: str

    def __init__(self, rules: JWTRules, keys: KeySource, user_claim: str, groups_claim: str | None) -> None:
        self.rules = rules
        self.keys = keys
        self.cache = TokenCache()
        self.user_claim = user_claim
        self.groups_claim = groups_claim

    async def claims(self, token: str) -> dict[str, Any]:
        return await verify(token, self.rules, self.keys.get, self.cache)

    async def verify(self, headers: Headers) -> Identity | None:
        token = headers.get(self.header)
        if not token:
            return None
        claims = await self.claims(token.strip())
        return Identity(claim_user(claims, self.user_claim, self.rules), claim_groups(claims, self.groups_claim),
                        self.source)

    async def aclose(self) -> None:
        await self.keys.aclose()
