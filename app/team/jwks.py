"""Signing keys of an identity provider, fetched over HTTPS and cached.

Two shapes: ``JWKSCache`` reads a JWK set (``{"keys": [...]}``: Google IAP, Cloudflare Access,
any OIDC issuer's ``jwks_uri``); ``PemKeyCache`` fetches one PEM public key per key id
(``BASE/KID``: the AWS load balancer's endpoint).

Rules, the same for both:
- a known ``kid`` is answered from memory (no I/O on the request path);
- an unknown ``kid`` refetches once, and at most once per ``refetch_interval_s`` (so a stream of
  tokens with made-up key ids cannot turn the gateway into a load generator for the IdP);
  concurrent requests share one fetch;
- a JWK set is also refreshed when older than ``max_age_s``; a refetch replaces the whole set,
  so a key the IdP stopped publishing stops verifying (rotation is followed both ways);
- a fetch that fails keeps the keys already known and raises ``IdentityUnavailable`` (503) only
  when the key asked for is not among them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Callable

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from app.team.identity import AuthError, IdentityUnavailable

log = logging.getLogger("patchbay.team")

MAX_DOC_BYTES = 1 << 20
_KID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


class _Fetcher:
    """One lazily created ``httpx.AsyncClient`` (it belongs to the loop that first uses it)."""

    def __init__(self, client: httpx.AsyncClient | None, timeout_s: float) -> None:
        self._client = client
        self._own = client is None
        self._timeout_s = timeout_s

    async def get(self, url: str, source: str, what: str) -> httpx.Response | None:
        """The response (200), None for 404, or IdentityUnavailable for anything else."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=True)
        try:
            resp = await self._client.get(url, headers={"accept": "application/json, application/x-pem-file, */*"})
        except httpx.HTTPError as exc:
            raise IdentityUnavailable(
                f"Patchbay could not fetch {what} from {url} ({type(exc).__name__}), so it cannot check who sent "
                "this request. Try again in a moment; if it persists, check that this server can reach that "
                "address.", source=source) from None
        if resp.status_code == 404:
            return None
        if resp.status_code != 200 or len(resp.content) > MAX_DOC_BYTES:
            raise IdentityUnavailable(
                f"Patchbay could not fetch {what} from {url} (HTTP {resp.status_code}), so it cannot check who "
                "sent this request. Try again in a moment.", source=source)
        return resp

    async def aclose(self) -> None:
        if self._own and self._client is not None:
            await self._client.aclose()
            self._client = None


class JWKSCache:
    """The JWK set at ``url`` (or at the URL ``resolve_url()`` finds, e.g. from a discovery document)."""

    def __init__(self, url: str | None, *, source: str, client: httpx.AsyncClient | None = None,
                 resolve_url: Callable[[_Fetcher], Any] | None = None, refetch_interval_s: float = 30.0,
                 max_age_s: float = 3600.0, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if url is None and resolve_url is None:
            raise ValueError("JWKSCache needs a url or resolve_url")
        self.url = url
        self.source = source
        self._resolve_url = resolve_url
        self.refetch_interval_s = refetch_interval_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._fetcher = _Fetcher(client, timeout_s)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_error: IdentityUnavailable | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the set was fetched (tests, diagnostics)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    async def get(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        now = self._clock()
        if key is not None and self._fetched_at is not None and now - self._fetched_at < self.max_age_s:
            return key
        async with self._lock:
            now = self._clock()
            fresh = self._fetched_at is not None and now - self._fetched_at < self.max_age_s
            if kid not in self._keys or not fresh:
                may_refetch = self._fetched_at is None or now - self._fetched_at >= self.refetch_interval_s
                if may_refetch:
                    await self._refresh(keep_on_error=bool(self._keys))
        key = self._keys.get(kid)
        if key is None and not self._keys and self._last_error is not None:
            raise self._last_error  # the IdP is away: say so (503), not "bad credential"
        if key is None:
            raise AuthError(
                f"Patchbay: the credential is signed with the key {kid!r}, which {self.source_name} does not "
                "publish. Get a fresh credential; if this persists, the gateway's settings point at the wrong "
                "identity provider.", source=self.source)
        return key

    @property
    def source_name(self) -> str:
        from app.team.identity import SOURCE_NAMES

        return SOURCE_NAMES.get(self.source, self.source)

    async def _refresh(self, *, keep_on_error: bool) -> None:
        self._fetched_at = self._clock()  # also on failure: the rate limit holds against a dead IdP
        self.fetches += 1
        try:
            if self.url is None:
                assert self._resolve_url is not None
                self.url = await self._resolve_url(self._fetcher)
            assert self.url is not None
            resp = await self._fetcher.get(self.url, self.source, "the signing keys")
            if resp is None:
                raise IdentityUnavailable(
                    f"Patchbay found no signing keys at {self.url} (HTTP 404). Check the gateway's [team] "
                    "settings for this identity source.", source=self.source)
            try:
                doc = resp.json()
            except ValueError:
                raise IdentityUnavailable(f"The signing keys at {self.url} are not JSON, so Patchbay cannot "
                                          "check credentials. Check the [team] settings.",
                                          source=self.source) from None
            self._keys = parse_jwk_set(doc)
            self._last_error = None
            log.info("identity: %s publishes %d signing key(s) at %s", self.source, len(self._keys), self.url)
        except IdentityUnavailable as exc:
            self._last_error = exc
            if not keep_on_error:
                raise
            log.warning("identity: refreshing %s's keys failed, keeping the %d known: %s", self.source,
                        len(self._keys), exc.message)

    async def aclose(self) -> None:
        await self._fetcher.aclose()


def parse_jwk_set(doc: Any) -> dict[str, jwt.PyJWK]:
    """kid → key for every usable public key in a JWK set (keys PyJWT cannot use, and symmetric
    keys, are skipped)."""
    out: dict[str, jwt.PyJWK] = {}
    items = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("kid"), str) or item.get("kty") == "oct":
            continue
        if item.get("use", "sig") != "sig":
            continue
        try:
            out[item["kid"]] = jwt.PyJWK(item)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
    return out


class PemKeyCache:
    """One PEM public key per key id at ``base_url/KID`` (the AWS load balancer's key endpoint).

    A key id's key never changes there, so a found key is kept; an unknown id is asked for again
    at most once per ``refetch_interval_s``."""

    def __init__(self, base_url: str, *, source: str = "alb", client: httpx.AsyncClient | None = None,
                 refetch_interval_s: float = 30.0, timeout_s: float = 5.0, max_keys: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.source = source
        self.refetch_interval_s = refetch_interval_s
        self.max_keys = max_keys
        self._clock = clock
        self._fetcher = _Fetcher(client, timeout_s)
        self._keys: dict[str, Any] = {}
        self._missing: dict[str, float] = {}  # kid → when the endpoint last said it has no such key
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not _KID_RE.match(kid):
            raise AuthError("Patchbay: the load balancer's credential names a malformed signing key id. "
                            "Requests must come through the load balancer.", source=self.source)
        async with self._lock:
            key = self._keys.get(kid)
            if key is None:
                asked = self._missing.get(kid)
                if asked is None or self._clock() - asked >= self.refetch_interval_s:
                    key = await self._fetch(kid)
        if key is None:
            raise AuthError(f"Patchbay: the load balancer's credential is signed with the key {kid!r}, which the "
                            f"key endpoint {self.base_url} does not publish. Requests must come through the "
                            "load balancer named by alb_arn.", source=self.source)
        return key

    async def _fetch(self, kid: str) -> Any:
        self.fetches += 1
        url = f"{self.base_url}/{kid}"
        self._missing[kid] = self._clock()
        resp = await self._fetcher.get(url, self.source, "the load balancer's signing key")
        if resp is None:
            return None
        try:
            key = serialization.load_pem_public_key(resp.content)
        except ValueError:
            raise IdentityUnavailable(f"The signing key at {url} is not a PEM public key, so Patchbay cannot check "
                                      "the load balancer's credential. Check alb_region / alb_keys_url.",
                                      source=self.source) from None
        if len(self._keys) >= self.max_keys:
            self._keys.pop(next(iter(self._keys)))
        self._keys[kid] = key
        self._missing.pop(kid, None)
        if len(self._missing) > 1024:
            self._missing.clear()
        return key

    async def aclose(self) -> None:
        await self._fetcher.aclose()
