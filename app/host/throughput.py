"""Output tokens per second over time, from finished requests.

A request's output tokens are spread evenly over the seconds it streamed them (from its first
token to its end), so a long answer shows as a plateau at its real speed rather than as one
spike when it finishes. Seconds are wall-clock seconds since the epoch. No Qt here.
"""

from __future__ import annotations

import math


class Throughput:
    def __init__(self, span_s: float = 600.0) -> None:
        self.span_s = span_s
        self.bins: dict[int, float] = {}  # second -> tokens generated in it

    def add(self, started_at: float, ttft_ms: float | None, ended_at: float, tokens: int) -> None:
        if tokens <= 0:
            return
        start = started_at + (ttft_ms or 0.0) / 1000.0
        end = max(ended_at, start)
        if end - start < 1e-3:  # answered in one piece: all in the second it ended
            self.bins[int(end)] = self.bins.get(int(end), 0.0) + tokens
        else:
            rate = tokens / (end - start)
            s = start
            while s < end:
                nxt = min(end, math.floor(s) + 1.0)
                self.bins[int(s)] = self.bins.get(int(s), 0.0) + rate * (nxt - s)
                s = nxt
        self._trim(end)

    def _trim(self, now: float) -> None:
        cut = int(now - self.span_s) - 1
        if self.bins and min(self.bins) < cut:
            self.bins = {k: v for k, v in self.bins.items() if k >= cut}

    def series(self, now: float) -> tuple[list[float], list[float]]:
        """Each whole second of the last ``span_s`` up to ``now`` (excluded) and its tokens/s."""
        last = int(now)
        first = int(now - self.span_s)
        xs = [float(s) for s in range(first, last)]
        return xs, [self.bins.get(s, 0.0) for s in range(first, last)]

    def rate(self, now: float, window_s: int = 10) -> float:
        """The mean tokens/s over the last ``window_s`` whole seconds."""
        last = int(now)
        return sum(self.bins.get(s, 0.0) for s in range(last - window_s, last)) / window_s
