"""How much request-body memory the gateway holds at once, and giving freed memory back to the OS.

``BodyRoom``: every request to /v1/messages holds the bytes of its body (the raw bytes, the parsed
JSON, the copy sent upstream) from the moment it is read until it is answered. Twenty-four 30 MB
bodies at once took a gateway to 2.7 GB. A request takes room for its body before reading it (its
``content-length``, or chunk by chunk when it has none) and gives it back when it is answered; while
the room is full, reading waits (the client is slowed by TCP, nothing is lost), and after
``WAIT_S`` the request is answered 503 ``overloaded_error`` with ``retry-after`` (Claude Code and
the SDKs retry it). One body always fits, however large (up to ``max_body_mb``), so a single
big request is never refused for room.

``tune_malloc``/``trim``: glibc raises its mmap threshold after a big block is freed (up to 32 MB),
so later big bodies come from the heap and stay there once freed (2 GB stayed after the burst
above). A fixed threshold keeps every big block in its own mapping, returned to the OS on free;
``trim`` (``malloc_trim``) hands back free heap pages after large bodies. Both are no-ops where the
C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import time
from typing import Any

from app.errors import ApiError

log = logging.getLogger("patchbay.gateway")

BODIES_IN_FLIGHT_BYTES = 96 << 20  # request bodies held at once (one body always fits)
WAIT_S = 60.0  # how long a request waits for room before it is answered 503 (Claude Code waits 600 s)
RETRY_AFTER_S = 2
TRIM_AFTER_BYTES = 4 << 20  # bodies this large, once answered, are worth a malloc_trim
TRIM_EVERY_S = 1.0  # at most one malloc_trim this often

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 10  # blocks this large or larger get their own mapping


class Hold:
    """The room one request holds; ``take`` more as its body arrives. An async context manager
    (``BodyRoom.hold``) that gives it all back on leaving: a class, not ``asynccontextmanager``,
    whose async generator costs every request a dozen calls before its upstream write."""

    __slots__ = ("room", "held")

    def __init__(self, room: BodyRoom) -> None:
        self.room = room
        self.held = 0

    async def take(self, n: int) -> None:
        await self.room.take(self, n)

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.room._give(self)


class BodyRoom:
    def __init__(self, limit: int = BODIES_IN_FLIGHT_BYTES, wait_s: float = WAIT_S) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.in_use = 0
        self.peak = 0  # the most held at once (diagnostics, tests)
        self._freed = asyncio.Event()
        self._last_trim = 0.0

    def hold(self) -> Hold:
        """``async with room.hold() as h``: the room this request takes, given back on leaving."""
        return Hold(self)

    async def take(self, h: Hold, n: int) -> None:
        if n <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        # room, or this request is the only one holding any (one body always fits)
        while self.in_use + n > self.limit and self.in_use != h.held:
            left = deadline - loop.time()
            if left <= 0:
                raise self._full(n)
            self._freed.clear()
            try:
                async with asyncio.timeout(left):
                    await self._freed.wait()
            except TimeoutError:
                raise self._full(n) from None
        h.held += n
        self.in_use += n
        self.peak = max(self.peak, self.in_use)

    def _give(self, h: Hold) -> None:
        n, h.held = h.held, 0
        if not n:
            return
        self.in_use -= n
        self._freed.set()
        if n >= TRIM_AFTER_BYTES:
            now = time.monotonic()
            if now - self._last_trim >= TRIM_EVERY_S:
                self._last_trim = now
                asyncio.get_running_loop().call_soon(trim)  # once this request's objects are gone

    def _full(self, n: int) -> ApiError:
        return ApiError(
            503, "overloaded_error",
            f"Patchbay is holding {self.in_use >> 20} MB of other requests' bodies, its limit of {self.limit >> 20} "
            f"MB, and this request's {max(1, n >> 20)} MB did not fit within {self.wait_s:g} s. Nothing was sent "
            "upstream; send it again in a moment.",
            headers=[(b"retry-after", str(RETRY_AFTER_S).encode())])


# --------------------------------------------------------------------------- the C allocator


def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl has no malloc_trim
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()
_tuned = False


def tune_malloc() -> None:
    """Fix glibc's mmap threshold (once per process) so big freed blocks go back to the OS."""
    global _tuned
    if _LIBC is None or _tuned:
        return
    _tuned = True
    ok = _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _LIBC.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)
    if not ok:
        log.debug("mallopt refused the mmap threshold; large bodies may stay resident after use")


def trim() -> None:
    """Hand free heap pages back to the OS (glibc's malloc_trim)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
