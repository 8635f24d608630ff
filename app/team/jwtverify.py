"""One signed-JWT check shared by the IAP, ALB, Cloudflare and OIDC sources.

PyJWT does the cryptography; this file only decides which algorithms and claims are required,
turns PyJWT's exceptions into sentences that never quote the token, and keeps a short cache of
tokens already verified (a proxy sends the same assertion on every request for minutes, so the
signature check runs once per token, not once per request).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from app.team.identity import AuthError, normalise_user
from app.team.jwtdecode import ASYMMETRIC, decoder

if TYPE_CHECKING:
    from jwt.types import Options


@dataclass(frozen=True, slots=True)
class JWTRules:
    source: str  # for messages and logs
    what: str  # "Google IAP's assertion (x-goog-iap-jwt-assertion)"
    algorithms: tuple[str, ...]
    audience: str | None
    issuer: str | tuple[str, ...] | None  # a tuple: any of these
    leeway_s: float = 30.0
    require: tuple[str, ...] = ("exp",)


class TokenCache:
    """Verified tokens → claims, kept until the token expires or ``max_s`` passes, whichever is
    first. Held in memory only; bounded."""

    def __init__(self, max_s: float = 60.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_s = max_s
        self.max_entries = max_entries
        self._clock = clock
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, token: str) -> dict[str, Any] | None:
        hit = self._items.get(token)
        if hit is None:
            return None
        if self._clock() >= hit[0]:
            self._items.pop(token, None)
            return None
        return hit[1]

    def put(self, token: str, claims: dict[str, Any], leeway_s: float) -> None:
        now = self._clock()
        until = now + self.max_s
        exp = claims.get("exp")
        if isinstance(exp, (int, float)):
            until = min(until, float(exp) + leeway_s)
        if until <= now:
            return
        if len(self._items) >= self.max_entries:
            self._items.clear()
        self._items[token] = (until, claims)


KeyLookup = Callable[[str], Awaitable[Any]]
_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}  # the JWK key type each algorithm family needs


# Parsed JOSE headers by their encoded text. An IdP writes the same header ({"alg", "kid", "typ"})
# on every token one key signs, so a first-seen token's header is usually one already read. Bounded;
# the dicts are only read, never changed.
_HEADERS: dict[str, Any] = {}
_HEADERS_MAX = 256


def _peek_header(token: str) -> Any:
    # Only to pick the key and refuse bad algorithms early: PyJWT parses and checks the whole token
    # (header included, strictly) again in decode(). Cheaper than jwt.get_unverified_header, which
    # validates every segment character by character, the signature included.
    head, dot, _ = token.partition(".")
    if not dot or not head or len(head) > 4096:
        raise ValueError("no header")
    header = _HEADERS.get(head)
    if header is None:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        if isinstance(header, dict):
            if len(_HEADERS) >= _HEADERS_MAX:
                _HEADERS.clear()
            _HEADERS[head] = header
    return header


def unverified_header(token: str, rules: JWTRules) -> dict[str, Any]:
    try:
        header = _peek_header(token)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or token.count(".") != 2:
        raise AuthError(f"Patchbay: {rules.what} is not a well-formed JWT. Send the credential exactly as "
                        "issued.", source=rules.source) from None
    alg = header.get("alg")
    if alg not in rules.algorithms:
        raise AuthError(f"Patchbay: {rules.what} uses the signing algorithm {str(alg)[:16]!r}, which this gateway "
                        f"does not accept (it accepts {', '.join(rules.algorithms)}). Unsigned and HMAC-signed "
                        "tokens are never accepted.", source=rules.source)
    return header


async def verify(token: str, rules: JWTRules, key_for: KeyLookup, cache: TokenCache | None = None,
                 header: dict[str, Any] | None = None) -> dict[str, Any]:
    """The token's claims, once its signature, algorithm, audience, issuer and times check out;
    ``AuthError`` otherwise. ``key_for(kid)`` gives the public key (a ``PyJWK`` or a key object)."""
    if cache is not None:
        known = cache.get(token)
        if known is not None:
            return known
    if header is None:
        header = unverified_header(token, rules)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthError(f"Patchbay: {rules.what} names no signing key (kid). Send the credential exactly as issued.",
                        source=rules.source)
    key = await key_for(kid)
    alg = header["alg"]
    if isinstance(key, jwt.PyJWK):
        family = _FAMILY.get(alg[:2])
        if key.key_type != family or (family != "RSA" and key.algorithm_name != alg):
            raise AuthError(f"Patchbay: {rules.what} claims the algorithm {alg} but its key {kid!r} is a "
                            f"{key.algorithm_name} key. The credential is forged or damaged.", source=rules.source)
        key = key.key
    options: Options = {"require": list(rules.require), "verify_aud": rules.audience is not None,
                               "verify_iss": rules.issuer is not None}
    try:
        claims: dict[str, Any] = decoder.decode(token, key, algorithms=[alg], audience=rules.audience,
                                                issuer=rules.issuer, leeway=rules.leeway_s, options=options)
    except jwt.ExpiredSignatureError:
        raise AuthError(f"Patchbay: {rules.what} has expired. Get a fresh one (Claude Code asks its "
                        "apiKeyHelper again after this 401).", source=rules.source) from None
    except jwt.ImmatureSignatureError:
        raise AuthError(f"Patchbay: {rules.what} is not valid yet (its nbf or iat lies in the future). Check the "
                        "clocks of this server and of the identity provider.", source=rules.source) from None
    except jwt.InvalidAudienceError:
        raise AuthError(f"Patchbay: {rules.what} was issued for another audience than this gateway. Ask for a token "
                        "for this gateway's audience (the [team] settings name it).", source=rules.source) from None
    except jwt.InvalidIssuerError:
        raise AuthError(f"Patchbay: {rules.what} comes from another issuer than the one this gateway trusts. Sign "
                        "in with the company's identity provider.", source=rules.source) from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"Patchbay: {rules.what} lacks the required {exc.claim!r} claim. Send the credential "
                        "exactly as issued.", source=rules.source) from None
    except jwt.InvalidSignatureError:
        raise AuthError(f"Patchbay: the signature of {rules.what} does not match the identity provider's key "
                        f"{kid!r}. The credential is forged or damaged.", source=rules.source) from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"Patchbay: {rules.what} cannot be used ({type(exc).__name__}). Send the credential "
                        "exactly as issued.", source=rules.source) from None
    if cache is not None:
        cache.put(token, claims, rules.leeway_s)
    return claims


def claim_user(claims: dict[str, Any], user_claim: str, rules: JWTRules) -> str:
    value = claims.get(user_claim)
    if not isinstance(value, str) or not value.strip():
        raise AuthError(f"Patchbay: {rules.what} carries no {user_claim!r} claim to name the user. Set user_claim in "
                        "[team] to a claim the identity provider sends (e.g. \"email\" or \"sub\").",
                        source=rules.source)
    if user_claim == "email" and claims.get("email_verified") is False:
        raise AuthError(f"Patchbay: the identity provider says the e-mail in {rules.what} is not verified. Verify "
                        "it with the provider, or ask an admin to use another user_claim.", source=rules.source)
    return normalise_user(value)


def claim_groups(claims: dict[str, Any], groups_claim: str | None) -> tuple[str, ...]:
    if not groups_claim:
        return ()
    value = claims.get(groups_claim)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(str(g) for g in value if isinstance(g, (str, int)) and str(g))


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def algorithms(allowed: Sequence[str]) -> tuple[str, ...]:
    return tuple(a for a in allowed if a in ASYMMETRIC)
