"""Who sent a request: the ``Identity`` it carries, and the chain of verifiers that finds it.

Each identity source (IAP, ALB, Cloudflare Access, OIDC, issued keys) is one ``Verifier``: it
looks at the request's headers and returns ``None`` when its credential is not there at all,
an ``Identity`` when the credential is present and valid, and raises ``AuthError`` when it is
present but bad (malformed, expired, wrongly signed). ``IdentityChain`` asks the configured
verifiers in order; the first ``Identity`` wins. When none gives one, the chain raises the first
verifier's error (a present-but-bad credential explains more than "no credential"), or, when no
credential was there at all, one error naming the sources this gateway accepts.

Every error is a ``ApiError`` in Anthropic's shape: 401 ``authentication_error`` for any
credential problem (never 403: Claude Code does not run its ``apiKeyHelper`` again after a 403),
503 ``api_error`` when an identity provider's keys cannot be fetched. Messages never contain the
token or key text, nor anything PyJWT said about it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.errors import ApiError

log = logging.getLogger("patchbay.team")

SOURCE_NAMES = {"iap": "Google IAP", "alb": "the AWS load balancer", "cloudflare": "Cloudflare Access",
                "oidc": "the OIDC provider", "keys": "a Patchbay team key",
                "login": "a Patchbay sign-in"}  # "login": [team.login], not listed in identity

Headers = Mapping[str, str]  # lower-case names, as ASGI delivers them


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified person. ``user`` is their e-mail (or the configured ``user_claim``), lower-cased
    when it is an e-mail; ``groups`` are what the source asserted (the IdP's groups claim, or a
    key's ``--group``); ``source`` is one of ``app.config.team.SOURCES``; ``key_id`` names the issued key, if any."""

    user: str
    groups: tuple[str, ...] = ()
    source: str = "keys"
    key_id: str | None = None


class AuthError(ApiError):
    """A credential that is missing, malformed, expired or wrongly signed: 401 ``authentication_error``."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(401, "authentication_error", message)
        self.source = source


# On an error answer with this header Claude Code stops at once and shows the message, whatever
# the credential's source, where a 503 overloaded_error is retried and shown as "The API is at
# capacity" (docs/protocol.md, "What Claude Code does with an error").
STOP_RETRYING: tuple[tuple[bytes, bytes], ...] = ((b"x-should-retry", b"false"),)


class IdentityUnavailable(ApiError):
    """An identity provider's signing keys cannot be fetched: 503 ``api_error`` (not the caller's fault).
    ``final``: an outage that retrying at once will not end (the team's database is down), so Claude
    Code is told to stop and show the message."""

    def __init__(self, message: str, *, source: str | None = None, final: bool = False) -> None:
        super().__init__(503, "api_error", message, headers=list(STOP_RETRYING) if final else None)
        self.source = source


class Verifier(Protocol):
    """One identity source. ``verify`` returns None when its credential is absent."""

    source: str

    async def verify(self, headers: Headers) -> Identity | None: ...

    async def aclose(self) -> None:
        """Closes what it opened (its HTTP client); it may be used again afterwards."""
        ...


def normalise_user(value: str) -> str:
    value = value.strip()
    return value.lower() if "@" in value else value


def bearer(headers: Headers) -> str | None:
    """The credential in ``Authorization: Bearer …`` or ``x-api-key`` (Claude Code sends an
    ``apiKeyHelper``'s output as both), or None."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class IdentityChain:
    """The configured verifiers, tried in order."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        if not verifiers:
            raise ValueError("an identity chain needs at least one verifier")
        self.verifiers = tuple(verifiers)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(v.source for v in self.verifiers)

    async def identify(self, headers: Headers) -> Identity:
        first: ApiError | None = None
        for verifier in self.verifiers:
            try:
                found = await verifier.verify(headers)
            except (AuthError, IdentityUnavailable) as exc:
                log.info("identity: %s refused the request: %s", verifier.source, exc.message)
                if first is None:
                    first = exc
                continue
            if found is not None:
                return found
        if first is not None:
            raise first
        raise AuthError(missing_message(self.sources))

    async def aclose(self) -> None:
        for verifier in self.verifiers:
            await verifier.aclose()


def missing_message(sources: Sequence[str]) -> str:
    what = {"iap": "the x-goog-iap-jwt-assertion header Google IAP adds",
            "alb": "the x-amzn-oidc-data header the AWS load balancer adds",
            "cloudflare": "the Cf-Access-Jwt-Assertion header Cloudflare Access adds",
            "oidc": "an identity token from the OIDC provider as Authorization: Bearer",
            "keys": "a Patchbay team key as Authorization: Bearer or x-api-key",
            "login": "the access token Claude Code's /login got from this gateway"}
    wanted = "; or ".join(what[s] for s in sources)
    return (f"Patchbay: this team gateway needs to know who you are, and the request carried no credential it "
            f"accepts. Send {wanted}. A developer sets this up once with `patchbay team join URL`.")
