"""Chart axes in the units people read: dollars from $0, tokens in k and M, shares in %.

pyqtgraph's own axis labelled the cost plot 0-0.01 for $0.0011 of data with no zero, wrote large
token counts as "1e+06", and put "share of the limit 0.2-1.2" beside a text saying "2 %". These
AxisItems choose their ticks from zero in steps of 1, 2, 2.5 or 5 x 10^n and write each in its
unit; ``nice_top`` gives a plot's upper bound that fits the data. The label functions are plain,
so the tests read exactly what the axes print.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg

STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
LABEL_MARGIN = 15  # px past each end of an axis where its end labels may be drawn


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 x 10^n) that cuts ``span`` into about ``ticks`` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in STEPS if m * power >= raw * 0.999)


def nice_top(value: float, *, minimum: float = 0.0, ticks: int = 4) -> float:
    """The plot's upper bound for data peaking at ``value``: a round number a little above it."""
    value = max(value, minimum)
    if value <= 0:
        return 1.0
    step = nice_step(value * 1.05, ticks)
    return step * math.ceil(value * 1.05 / step - 1e-9)


def zero_based_ticks(lo: float, hi: float, ticks: int = 4) -> tuple[float, list[float]]:
    """(step, values): multiples of a round step from 0 (or the first one above ``lo``) to ``hi``."""
    lo = max(lo, 0.0)
    step = nice_step(hi - lo, ticks)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return step, [round(i * step, 12) for i in range(first, last + 1)]


def _decimals(step: float) -> int:
    """Decimals that tell ticks ``step`` apart (0.25 -> 2, 0.0005 -> 4, 20 -> 0)."""
    d = 0
    while d < 10 and abs(round(step, d) - step) > step * 1e-6:
        d += 1
    return d


def money_label(value: float, step: float) -> str:
    """$0, $0.0005, $0.001, $1.50, $1,000: as many decimals as the step needs, none for zero."""
    if abs(value) < step * 1e-6:
        return "$0"
    d = _decimals(step)
    text = f"{abs(value):,.{d}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
        whole, _, frac = text.partition(".")
        if len(frac) == 1:
            text = f"{whole}.{frac}0"  # $1.5 -> $1.50: cents read as cents
    return f"{'-' if value < 0 else ''}${text}"


def count_label(value: float) -> str:
    """0, 500, 1.5k, 20k, 1M, 2.5M: token counts and rates without "1e+06"."""
    v = abs(value)
    sign = "-" if value < 0 else ""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= size:
            text = f"{v / size:.2f}".rstrip("0").rstrip(".")
            return f"{sign}{text}{unit}"
    return f"{sign}{v:.2f}".rstrip("0").rstrip(".") if v % 1 else f"{sign}{v:.0f}"


def percent_label(value: float, *, fraction: bool) -> str:
    """50 %, 125 %, 2.5 % (from a fraction 0-1 or a value 0-100)."""
    pct = value * 100 if fraction else value
    text = f"{pct:.1f}".rstrip("0").rstrip(".")
    return f"{text} %"


class _ZeroBased(pg.AxisItem):
    """Major ticks only, from zero, a round step apart; labels from ``label``."""

    ticks = 4

    def __init__(self, orientation: str = "left", **kw: Any) -> None:
        super().__init__(orientation, **kw)
        self.enableAutoSIPrefix(False)
        self.setStyle(hideOverlappingLabels=False)

    def boundingRect(self) -> Any:  # noqa: N802
        """Room for the labels at both ends ("$0" sits half below the axis). pyqtgraph leaves it out
        when a grid is drawn, and then drops the zero label."""
        br = super().boundingRect()
        m = LABEL_MARGIN
        return br.adjusted(0, -m, 0, m) if self.orientation in ("left", "right") else br.adjusted(-m, 0, m, 0)

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:  # noqa: N802,N803
        if maxVal <= max(minVal, 0.0):
            return []
        step, values = zero_based_ticks(minVal, maxVal, self.ticks)
        return [(step, values)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        return [self.label_for(v * scale, spacing * scale) for v in values]

    def label_for(self, value: float, step: float) -> str:
        raise NotImplementedError


class MoneyAxis(_ZeroBased):
    """Dollars from $0 (the cost plot)."""

    def label_for(self, value: float, step: float) -> str:
        return money_label(value, step)


class TokenAxis(_ZeroBased):
    """Token counts and rates in k / M (the tokens-per-minute plot, local tokens/s)."""

    def label_for(self, value: float, step: float) -> str:
        return count_label(value)


class PercentAxis(_ZeroBased):
    """Shares in %: ``fraction`` True for data 0-1 (budget share of the limit), False for 0-100."""

    def __init__(self, orientation: str = "left", *, fraction: bool = False, **kw: Any) -> None:
        super().__init__(orientation, **kw)
        self.fraction = fraction

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, list[float]]]:  # noqa: N802,N803
        if maxVal <= max(minVal, 0.0):
            return []
        quarter = 0.25 if self.fraction else 25.0  # 0, 25, 50, 75, 100 %
        full = 1.0 if self.fraction else 100.0  # past 100 % is room for an overrun bar, not a scale
        top = min(maxVal, full)
        span = top - max(minVal, 0.0)
        step = quarter if span >= quarter * 2 else nice_step(span, self.ticks)
        first, last = math.ceil(max(minVal, 0.0) / step - 1e-9), math.floor(top / step + 1e-9)
        return [(step, [round(i * step, 12) for i in range(first, last + 1)])]

    def label_for(self, value: float, step: float) -> str:
        return percent_label(value, fraction=self.fraction)


def left_axis_for(unit: str) -> dict[str, pg.AxisItem]:
    """The ``axisItems`` for a plot whose left axis counts ``unit`` ("%", "tok/s", "$"); {} for others."""
    if unit == "%":
        return {"left": PercentAxis("left")}
    if unit in ("tok/s", "tokens"):
        return {"left": TokenAxis("left")}
    if unit == "$":
        return {"left": MoneyAxis("left")}
    return {}
