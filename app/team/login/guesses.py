"""RFC 8628 §5.1: a user code is short (8 base-20 characters, ~34 bits), so the verification page
limits how many wrong codes one address may try: after ``LIMIT`` wrong codes within ``WINDOW_S`` the
page refuses every code from that address (429) until the oldest ages out.

Only wrong codes count, so people behind one NAT or load balancer address who type their codes right
are never slowed down. The count is this instance's memory (several instances each allow ``LIMIT``;
with ~34 bits and 10-minute codes that still leaves a guess at odds of about one in a billion a day).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

LIMIT = 10
WINDOW_S = 600.0
_MAX_ADDRESSES = 10_000


class WrongCodes:
    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        now = self._clock()
        seen = self._seen.get(address)
        if seen is None:
            if len(self._seen) >= _MAX_ADDRESSES:
                self._seen.clear()
            seen = self._seen[address] = deque()
        while seen and now - seen[0] >= self.window_s:
            seen.popleft()
        return seen

    def blocked(self, address: str) -> float | None:
        """Seconds until this address may try again, or None."""
        seen = self._recent(address)
        if len(seen) < self.limit:
            return None
        return max(1.0, self.window_s - (self._clock() - seen[0]))

    def wrong(self, address: str) -> None:
        self._recent(address).append(self._clock())
