"""Patchbay's own access tokens for a signed-in developer: short-lived HS256 JWTs.

Claims: ``iss`` (the ``public_url``), ``aud`` ``"patchbay"``, ``sub`` (the person as Patchbay records
them), ``email`` (when ``sub`` is one), ``groups`` (the IdP's groups claim at sign-in or at the last
refresh), ``sid`` (the sign-in: ``login_sessions.id``, what revocation cuts), ``iat``, ``exp``, ``jti``.
The header's ``kid`` starts with ``pbl-``: that is how the verifier knows a token is Patchbay's own
before checking it. The key lives in the shared database (``login_keys``), so every instance
verifies every instance's tokens. Claude Code reads no claim it needs from the token in the signed-in
mode (it keeps ``expires_in``); in the unpinned mode it reads ``exp`` (GATEWAY-PROTOCOL.md §1.2, §8).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

AUDIENCE = "patchbay"
KID_PREFIX = "pbl-"
ACCESS_TTL_S = 3600  # Claude Code refreshes 5 minutes before expiry, so an hour means ~one refresh an hour
REFRESH_TTL_S = 14 * 24 * 3600  # a refresh token unused for two weeks is dead (rotation renews it)


@dataclass(frozen=True)
class Signer:
    kid: str
    key: bytes
    issuer: str  # the public_url

    def mint(self, session_id: str, user: str, groups: Sequence[str], *, ttl_s: float = ACCESS_TTL_S,
             now: float | None = None) -> tuple[str, int]:
        """(token, expires_in)."""
        iat = int(time.time() if now is None else now)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": AUDIENCE, "sub": user, "groups": list(groups),
                                  "sid": session_id, "iat": iat, "exp": iat + int(ttl_s),
                                  "jti": secrets.token_hex(8)}
        if "@" in user:
            claims["email"] = user
        token = jwt.encode(claims, self.key, algorithm="HS256", headers={"kid": self.kid, "typ": "at+jwt"})
        return token, int(ttl_s)

    def decode(self, token: str, *, leeway_s: float = 0.0) -> dict[str, Any]:
        """The claims of a token this signer made; PyJWT's exceptions otherwise."""
        claims: dict[str, Any] = jwt.decode(token, self.key, algorithms=["HS256"], audience=AUDIENCE,
                                            issuer=self.issuer, leeway=leeway_s,
                                            options={"require": ["exp", "iat", "sid", "sub", "iss", "aud"]})
        return claims


def new_refresh_token() -> str:
    return "pbr_" + secrets.token_urlsafe(32)
