"""A circuit breaker per backend, and the health the GUI shows.

closed ──(``failures`` failures in a row)──▶ open ──(cooling period over)──▶ half-open
  ▲                                            ▲                               │
  └────────── the trial request succeeds ──────┼───────────────────────────────┤
                                               └── the trial fails: cool twice as long (up to a cap)

While a backend is open, requests that have somewhere else to go (a ``[routes] fallback``)
skip it. Half-open lets exactly one trial request through; the others keep skipping it until
the trial's verdict is in. A request whose client went away gives no verdict.

The breakers live on the gateway's event loop and are only touched there. Each change
publishes an immutable :class:`BackendHealth` (an event on the hub, for the GUI) and replaces
the ``snapshot`` dict in one assignment, so another thread may read it without a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from app.events import BackendHealth

Clock = Callable[[], float]


@dataclass
class Breaker:
    threshold: int = 3
    base_cooldown_s: float = 30.0
    max_cooldown_s: float = 300.0
    state: str = "closed"  # closed | open | half_open
    failures: int = 0  # consecutive
    cooldown_s: float = 0.0  # the current (or last) cooling period
    open_until: float = 0.0  # monotonic clock
    trial: bool = False  # a half-open trial request is in flight
    last_error: str | None = None

    def acquire(self, now: float) -> bool:
        """May a request go to this backend now? (Half-open: hands out the one trial.)"""
        if self.state == "closed":
            return True
        if self.state == "open":
            if now < self.open_until:
                return False
            self.state = "half_open"
        if self.trial:
            return False
        self.trial = True
        return True

    def force(self) -> None:
        """Every candidate is cooling: this request goes here anyway, as the trial."""
        if self.state != "closed":
            self.state = "half_open"
            self.trial = True

    def success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.cooldown_s = 0.0
        self.trial = False
        self.last_error = None

    def failure(self, error: str, now: float) -> None:
        self.failures += 1
        self.last_error = error
        if self.state == "half_open":
            self.cooldown_s = min(self.max_cooldown_s, max(self.base_cooldown_s, self.cooldown_s * 2))
            self._open(now)
        elif self.state == "closed" and self.failures >= self.threshold:
            self.cooldown_s = self.base_cooldown_s
            self._open(now)
        self.trial = False

    def release(self) -> None:
        """The trial ended with no verdict (the client went away)."""
        self.trial = False

    def _open(self, now: float) -> None:
        self.state = "open"
        self.open_until = now + self.cooldown_s

    @property
    def health(self) -> Literal["ok", "failing", "open"]:
        if self.state != "closed":
            return "open"
        return "failing" if self.failures else "ok"


class HealthBoard:
    """The breakers of all backends (by id), kept across config changes."""

    def __init__(self, publish: Callable[[BackendHealth], None] | None = None, *,
                 clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._breakers: dict[str, Breaker] = {}
        self._publish = publish
        self._clock = clock
        self._wall = wall
        self.threshold = 3
        self.cooldown_s = 30.0
        self.max_cooldown_s = 300.0
        self.snapshot: Mapping[str, BackendHealth] = MappingProxyType({})

    def configure(self, threshold: int, cooldown_s: float, max_cooldown_s: float) -> None:
        self.threshold, self.cooldown_s, self.max_cooldown_s = threshold, cooldown_s, max_cooldown_s
        for b in self._breakers.values():
            b.threshold, b.base_cooldown_s, b.max_cooldown_s = threshold, cooldown_s, max_cooldown_s

    def breaker(self, backend: str) -> Breaker:
        b = self._breakers.get(backend)
        if b is None:
            b = self._breakers[backend] = Breaker(self.threshold, self.cooldown_s, self.max_cooldown_s)
        return b

    def acquire(self, backend: str) -> bool:
        b = self._breakers.get(backend)
        if b is None or b.state == "closed":
            return True
        before = b.state
        ok = b.acquire(self._clock())
        if b.state != before:
            self._changed(backend, b)
        return ok

    def force(self, backend: str) -> None:
        b = self.breaker(backend)
        before = b.state
        b.force()
        if b.state != before:
            self._changed(backend, b)

    def success(self, backend: str) -> None:
        b = self._breakers.get(backend)
        if b is None:
            b = self.breaker(backend)
            b.success()
            self._changed(backend, b)
            return
        changed = b.state != "closed" or b.failures > 0 or backend not in self.snapshot
        b.success()
        if changed:
            self._changed(backend, b)

    def failure(self, backend: str, error: str) -> None:
        b = self.breaker(backend)
        b.failure(error, self._clock())
        self._changed(backend, b)

    def release(self, backend: str) -> None:
        b = self._breakers.get(backend)
        if b is not None:
            b.release()

    def forget(self, keep: set[str]) -> None:
        """Drop the breakers of backends that are no longer configured."""
        gone = [k for k in self._breakers if k not in keep]
        for k in gone:
            del self._breakers[k]
        if gone:
            self.snapshot = MappingProxyType({k: v for k, v in self.snapshot.items() if k in keep})

    def _changed(self, backend: str, b: Breaker) -> None:
        until = None
        if b.state != "closed":
            until = self._wall() + max(0.0, b.open_until - self._clock())
        h = BackendHealth(backend, b.health, b.failures, until, b.last_error, b.state == "half_open")
        snap = dict(self.snapshot)
        snap[backend] = h
        self.snapshot = MappingProxyType(snap)
        if self._publish is not None:
            self._publish(h)
