"""The keep-alive pool of the gateway's upstream client (app/proxy/transport.py): idle
connections per (scheme, host, port), a cap on open connections with a queue of waiters, and a
sweeper that closes connections idle past the expiry."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Protocol, TypeVar

import httpx

__all__ = ["Pool", "Pooled"]


class Pooled(Protocol):
    """What the pool asks of a connection."""

    key: tuple[bytes, bytes, int]
    loop: asyncio.AbstractEventLoop
    counted: bool  # holds one of the pool's slots until forgotten
    reused: bool
    idle_since: float

    def is_usable(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)


class Pool(Generic[C]):
    """Idle keep-alive connections per (scheme, host, port), and a cap on open connections."""

    def __init__(self, max_connections: int | None, max_keepalive: int | None, expiry: float | None) -> None:
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive
        self.expiry = expiry
        self.idle: dict[tuple[bytes, bytes, int], list[C]] = {}
        self.idle_count = 0
        self.open = 0  # connections holding a slot: connecting, active or idle
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def take_idle(self, key: tuple[bytes, bytes, int], now: float) -> C | None:
        conns = self.idle.get(key)
        while conns:
            conn = conns.pop()
            self.idle_count -= 1
            if conn.is_usable() and (self.expiry is None or now - conn.idle_since < self.expiry):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def reserve(self, key: tuple[bytes, bytes, int], timeout: float | None) -> C | None:
        """Take a slot for a new connection (None), closing another host's idle one or waiting if
        full; or, when one for ``key`` comes back to the pool while waiting, that one."""
        while self.max_connections is not None and self.open >= self.max_connections:
            if self.idle_count:
                self._close_oldest_idle()
                continue
            fut: asyncio.Future[None] = self.loop.create_future()  # type: ignore[union-attr]
            self.waiters.append(fut)
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except BaseException as exc:
                if fut.done() and not fut.cancelled():
                    self._wake()  # we were woken but leave: pass the turn on
                elif fut in self.waiters:
                    self.waiters.remove(fut)
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout(
                        "Too many upstream connections are open and none came free in time; "
                        "raise the connection limit or send fewer requests at once.") from None
                raise
            conn = self.take_idle(key, self.loop.time())  # type: ignore[union-attr]
            if conn is not None:  # someone released one for this host meanwhile
                return conn
        self.open += 1
        return None

    def forget(self, conn: C) -> None:
        if conn.counted:
            conn.counted = False
            self.open -= 1
            conns = self.idle.get(conn.key)
            if conns and conn in conns:
                conns.remove(conn)
                self.idle_count -= 1
            self._wake()

    def release(self, conn: C) -> None:
        if self.closed or (self.max_keepalive is not None and self.idle_count >= self.max_keepalive):
            conn.close()
            return
        conn.reused = False
        conn.idle_since = conn.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)
        self.idle_count += 1
        if self.expiry is not None and self.sweeper is None:
            self.sweeper = conn.loop.call_later(self.expiry, self._sweep)
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _close_oldest_idle(self) -> None:
        oldest: C | None = None
        for conns in self.idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is not None:
            oldest.close()

    def _sweep(self) -> None:
        self.sweeper = None
        if self.loop is None or self.expiry is None:
            return
        now = self.loop.time()
        soonest: float | None = None
        for conns in list(self.idle.values()):
            for conn in list(conns):
                age = now - conn.idle_since
                if age >= self.expiry:
                    conn.close()
                else:
                    soonest = age if soonest is None else max(soonest, age)
        if soonest is not None:
            self.sweeper = self.loop.call_later(self.expiry - soonest, self._sweep)

    def close_all(self) -> None:
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conns in list(self.idle.values()):
            for conn in list(conns):
                conn.close()
        self.idle.clear()
        self.idle_count = 0
