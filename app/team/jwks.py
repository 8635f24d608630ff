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
  when the key asked for is not among them;
- a fetch has one deadline for the whole of it (``timeout_s``, not per read: an endpoint that
  drips a byte a second cannot hold requests for a minute), and stops reading past
  ``MAX_DOC_BYTES`` (a 200 MB document is never read whole), inflated size counted where the
  endpoint compressed it although asked not to;
- ``PemKeyCache`` asks its endpoint about key ids it does not know only ``UNKNOWN_KID_BURST``
  times at once and then once per ``UNKNOWN_KID_EVERY_S``, whatever the ids (300 requests with
  made-up key ids made 300 fetches); ids the endpoint said it lacks are remembered (negative
  cache) for ``refetch_interval_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from app.team.identity import AuthError, IdentityUnavailable

log = logging.getLogger("patchbay.team")

MAX_DOC_BYTES = 1 << 20
UNKNOWN_KID_BURST = 3  # fetches for unknown key ids allowed at once ...
UNKNOWN_KID_EVERY_S = 10.0  # ... and then one per this many seconds
_KID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


class _Fetcher:
    """One lazily created ``httpx.AsyncClient`` (it belongs to the loop that first uses it)."""

    def __init__(self, client: httpx.AsyncClient | None, timeout_s: float) -> None:
        self._client = client
        self._own = client is None
        self._timeout_s = timeout_s

    async def get(self, url: str, source: str, what: str) -> bytes | None:
        """The body of a 200 (at most ``MAX_DOC_BYTES``), None for 404, or IdentityUnavailable for
        anything else: another status, a failure, a body too large, no whole answer within ``timeout_s``."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=True)
        client = self._client

        def unavailable(why: str) -> IdentityUnavailable:
            return IdentityUnavailable(
                f"Patchbay could not fetch {what} from {url} ({why}), so it cannot check who sent this request. "
                "Try again in a moment; if it persists, check that this server can reach that address.",
                source=source)

        try:
            async with asyncio.timeout(self._timeout_s):
                async with client.stream("GET", url, headers={
                        "accept": "application/json, application/x-pem-file, */*",
                        "accept-encoding": "identity"}) as resp:
                    if resp.status_code == 404:
                        return None
                    if resp.status_code != 200:
                        raise unavailable(f"HTTP {resp.status_code}")
                    body = await _read_capped(resp)
        except TimeoutError:
            raise unavailable(f"no whole answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise unavailable(type(exc).__name__) from None
        if body is None:
            raise unavailable(f"larger than {MAX_DOC_BYTES >> 20} MB")
        return body

    async def aclose(self) -> None:
        if self._own and self._client is not None:
            await self._client.aclose()
            self._client = None


async def _read_capped(resp: httpx.Response) -> bytes | None:
    """The body, or None once it passes MAX_DOC_BYTES (inflated, where it came gzip/deflate)."""
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    inflate = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(47 if encoding != "deflate" else zlib.MAX_WBITS)
    elif encoding not in ("", "identity"):
        raise httpx.DecodingError(f"content-encoding {encoding} that Patchbay asked not to get")
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_raw():
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, MAX_DOC_BYTES + 1 - size)
            except zlib.error as exc:
                raise httpx.DecodingError(str(exc)) from None
        size += len(chunk)
        if size > MAX_DOC_BYTES:
            return None
        parts.append(chunk)
    return b"".join(parts)


def json_doc(body: bytes) -> object:
    """``body`` as JSON, or None."""
    try:
        return json.loads(body)
    except ValueError:
        return None


class _UnknownKidBudget:
    """Fetches allowed for key ids not in the cache: a token bucket of ``burst``, one back per ``every_s``."""

    def __init__(self, clock: Callable[[], float], burst: int = UNKNOWN_KID_BURST,
                 every_s: float = UNKNOWN_KID_EVERY_S) -> None:
        self._clock = clock
        self.burst = burst
        self.every_s = every_s
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.every_s)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


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
            body = await self._fetcher.get(self.url, self.source, "the signing keys")
            if body is None:
                raise IdentityUnavailable(
                    f"Patchbay found no signing keys at {self.url} (HTTP 404). Check the gateway's [team] "
                    "settings for this identity source.", source=self.source)
            doc = json_doc(body)
            if doc is None:
                raise IdentityUnavailable(f"The signing keys at {self.url} are not JSON, so Patchbay cannot "
                                          "check credentials. Check the [team] settings.", source=self.source)
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
        self._unknown = _UnknownKidBudget(clock)
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
                    if not self._unknown.take():  # too many unknown ids just now: not asked, so not "unpublished"
                        raise IdentityUnavailable(
                            f"Patchbay does not know the signing key {kid!r} yet and has asked {self.base_url} "
                            "about unknown keys too often in the last seconds, so it cannot check this credential "
                            f"now. Try again in {self._unknown.every_s:g} seconds.", source=self.source)
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
        body = await self._fetcher.get(url, self.source, "the load balancer's signing key")
        if body is None:
            return None
        try:
            key = serialization.load_pem_public_key(body)
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
