"""Per-user keys an admin issues (``patchbay team key create EMAIL``), and the verifier that accepts them.

A key is ``pbk_`` + 43 characters from ``secrets.token_urlsafe(32)``: 256 random bits. Only its
SHA-256 is stored. A plain (fast, unsalted) hash is enough here, and is the right choice:
slow salted hashes (bcrypt, scrypt, argon2) exist to make *guessing* low-entropy passwords
expensive, but nobody can guess 256 random bits, however fast the hash; and a deterministic
hash is what lets a lookup go straight to the row through an index, in microseconds, on every
request. Someone who reads the database learns no usable key.

The verifier asks the ``KeyStore`` again after at most ``ttl_s`` (0.5 s), so a key revoked on
one instance is refused by every instance sharing the store within a second. A store whose
``lookup`` goes over the network (PostgreSQL; any store without ``lookup_blocks = False``) is
asked from a small thread pool of the verifier's own, never on the event loop: a database that
does not answer must not stall every other request. The SQLite file's point read (microseconds)
is asked inline. A store that cannot be
reached (``KeyStoreError``) is 503 ``api_error`` (``IdentityUnavailable``): it is not the
caller's bad credential, and Claude Code retries a 503. With ``[ledger] on_unreachable = "open"``
a key read from the store keeps that answer while the store is away, for up to ``OUTAGE_GRACE_S``
after the read (docs/team.md, "Outages"): verified keys keep working, revoked ones stay refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from app.team.identity import STOP_RETRYING, AuthError, Headers, Identity, IdentityUnavailable, bearer

log = logging.getLogger("patchbay.team")

KEY_PREFIX = "pbk_"
ID_PREFIX = "key_"


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return ID_PREFIX + secrets.token_hex(6)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One issued key, without the key itself."""

    id: str
    user: str
    groups: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    created_by: str | None = None
    revoked_by: str | None = None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


class KeyStoreError(Exception):
    """The key store cannot be used. ``str()`` is the whole message for the user."""


class KeyStoreReadOnly(KeyStoreError):
    """The database refused a write because the ledger's role may only read it (an admin's
    look at the team ledger). ``str()`` says so and what to use instead."""


class KeyStoreUnavailable(KeyStoreError):
    """The key store's database cannot be reached right now (not the caller's fault). ``str()``
    says where and what to do, never the password or a key."""


# with ``[ledger] on_unreachable = "open"``: how long after its last real answer a key's answer stands
# while the key store cannot be reached (a revocation made meanwhile cannot be seen before then)
OUTAGE_GRACE_S = 600.0

UNAVAILABLE = ("Patchbay cannot check team keys right now: the team's key store (the gateway's ledger database) "
               "does not answer. This is not a problem with your key: try again in a moment, and tell your "
               "Patchbay admin if it lasts.")


class KeyStore(Protocol):
    """Where issued keys live (the ledger's database, so every instance sees the same keys)."""

    def create(self, user: str, groups: Sequence[str] = (), *, expires_at: float | None = None,
               created_by: str | None = None) -> tuple[KeyRecord, str]:
        """A new key for ``user``: its record and the secret (shown once, never stored)."""
        ...

    def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]: ...

    def revoke(self, key_id: str, *, revoked_by: str | None = None) -> KeyRecord | None:
        """The revoked key's record (already-revoked keys keep their first revocation), or None
        when no key has that id."""
        ...

    def lookup(self, secret: str) -> KeyRecord | None:
        """The record whose hash matches ``secret``, revoked and expired ones included. Raises
        ``KeyStoreError`` when the store cannot be asked."""
        ...


def refused(message: str, headers: Headers) -> AuthError:
    """A team key no retry will make good (unknown, revoked, expired): Claude Code must stop at once
    and show ``message``. 401 with ``x-should-retry: false`` does that for a key in
    ``ANTHROPIC_AUTH_TOKEN`` or ``ANTHROPIC_API_KEY``; a key from an ``apiKeyHelper`` (what ``patchbay
    team join`` writes; Claude Code sends it as both ``x-api-key`` and ``Authorization: Bearer``) is
    retried on a 401 or 403 even so, for minutes, and only a 429 with that header ends it (measured
    with the CLI 2.1.332, docs/team.md)."""
    err = AuthError(message, source="keys")
    err.headers = list(STOP_RETRYING)
    if from_helper(headers):
        err.status, err.error_type = 429, "permission_error"
    return err


def from_helper(headers: Headers) -> bool:
    """Whether the credential came as Claude Code sends an apiKeyHelper's output: the same value in
    ``x-api-key`` and ``Authorization: Bearer``."""
    key = (headers.get("x-api-key") or "").strip()
    auth = (headers.get("authorization") or "").strip()
    return bool(key) and auth[:7].lower() == "bearer " and auth[7:].strip() == key


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class KeysVerifier:
    """Accepts a team key sent as ``Authorization: Bearer pbk_…`` or ``x-api-key: pbk_…``."""

    source = "keys"

    def __init__(self, store: KeyStore, *, ttl_s: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, max_entries: int = 4096, outage_grace_s: float = 0.0) -> None:
        if ttl_s >= 1.0:
            raise ValueError("ttl_s must stay under a second: revocations must reach every instance within one")
        self.store = store
        self.ttl_s = ttl_s
        # while the store cannot be reached, a key's last answer (active, revoked, unknown) stands for
        # this long after it was read (0: not at all; ``[ledger] on_unreachable = "open"`` sets
        # OUTAGE_GRACE_S, see docs/team.md "Outages")
        self.outage_grace_s = outage_grace_s
        self._clock = clock
        self._wall = wall
        self._max = max_entries
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}  # hash → (looked up at, record)
        self._asking: dict[str, asyncio.Future[KeyRecord | None]] = {}  # hash → the lookup under way
        self._pool: ThreadPoolExecutor | None = None
        self._outage = False  # answering from the cache because the store is away (logged once)

    async def _record(self, secret: str) -> KeyRecord | None:
        h = key_hash(secret)
        now = self._clock()
        hit = self._cache.get(h)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        if not getattr(self.store, "lookup_blocks", True):  # a local file's point read: microseconds, inline
            try:
                record = self.store.lookup(secret)
            except KeyStoreError as exc:
                return self._unreachable(h, now, exc)
            return self._remember(h, now, record)
        asking = self._asking.get(h)
        if asking is None:  # one lookup per key at a time, however many requests carry it
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="patchbay-keys")
            asking = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(
                self._pool, self.store.lookup, secret))
            self._asking[h] = asking

            def done(f: asyncio.Future[KeyRecord | None]) -> None:
                self._asking.pop(h, None)
                if not f.cancelled():
                    f.exception()  # retrieved here too: every request that waited may have gone

            asking.add_done_callback(done)
        try:
            record = await asyncio.shield(asking)
        except KeyStoreError as exc:
            return self._unreachable(h, now, exc)
        return self._remember(h, now, record)

    def _unreachable(self, h: str, now: float, exc: KeyStoreError) -> KeyRecord | None:
        """The store cannot be asked: the key's last answer while it is at most ``outage_grace_s``
        old (a database that is away, not one that refused), else 503 ``IdentityUnavailable``."""
        hit = self._cache.get(h)
        if isinstance(exc, KeyStoreUnavailable) and hit is not None and now - hit[0] < self.outage_grace_s:
            if not self._outage:
                log.warning("identity: the team key store cannot be asked (%s); keys verified in the last %.0f s "
                            "keep their last answer meanwhile ([ledger] on_unreachable = \"open\")", exc,
                            self.outage_grace_s)
                self._outage = True
            return hit[1]  # its looked-up time stays: the grace counts from the last real answer
        log.warning("identity: the team key store cannot be asked: %s", exc)
        raise IdentityUnavailable(UNAVAILABLE, source="keys", final=True) from None

    def _remember(self, h: str, now: float, record: KeyRecord | None) -> KeyRecord | None:
        self._outage = False
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[h] = (now, record)
        return record

    async def verify(self, headers: Headers) -> Identity | None:
        secret = bearer(headers)
        if secret is None or not secret.startswith(KEY_PREFIX):
            return None
        record = await self._record(secret)
        if record is None:
            raise refused("Patchbay: this team key is not one this gateway issued (or it was deleted). Ask your "
                          "Patchbay admin for a key: `patchbay team key create YOUR-EMAIL`.", headers)
        status = record.status(self._wall())
        if status == "revoked":
            assert record.revoked_at is not None
            raise refused(f"Patchbay: the team key {record.id} was revoked on {_day(record.revoked_at)}. Ask your "
                          "Patchbay admin for a new one.", headers)
        if status == "expired":
            assert record.expires_at is not None
            raise refused(f"Patchbay: the team key {record.id} expired on {_day(record.expires_at)}. Ask your "
                          "Patchbay admin for a new one.", headers)
        return Identity(record.user, record.groups, "keys", key_id=record.id)

    async def aclose(self) -> None:
        """Stops its lookup threads (the store belongs to whoever made it)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
