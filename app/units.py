"""Plain formatting shared by the services' sentences and the views (no Qt, no I/O)."""

from __future__ import annotations

import math


def fmt_bytes(n: float | None) -> str:
    """Decimal units, as Ollama and disk tools print sizes: 4.7 GB, 274.0 MB; None is a dash."""
    if n is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


MONEY_MAX_DECIMALS = 8  # a millionth of a cent; smaller sums read "<$0.00000001"


def _money_decimals(v: float) -> int:
    """Decimals that show two significant digits of a sum under $1 (at least cents)."""
    return min(MONEY_MAX_DECIMALS, max(2, 1 - math.floor(math.log10(v))))


def _trim(digits: str) -> str:
    """Drops zeros past the cents: 0.0500 -> 0.05, 0.0021 stays."""
    whole, _, frac = digits.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"


def fmt_money(usd: float, *, short: bool = False) -> str:
    """US dollars, the one way the app and the command line print a sum.

    $1,234 (no cents from $100 up), $12.30, $1.23; under $1 two significant digits: $0.42,
    $0.028, $0.0021, $0.00034. ``short`` (a cramped label): under a cent reads "<$0.01", the rest
    in cents. Zero is $0.00; negative sums get a minus sign."""
    if usd != usd:  # NaN
        return "—"
    sign = "-" if usd < 0 else ""
    v = abs(usd)
    if v == 0:
        return "$0.00"
    if v >= 99.995:  # what would print as $100.00 or more: whole dollars
        return f"{sign}${v:,.0f}"
    if v >= 0.995 or (short and v >= 0.005):  # what would print as $1.00 (or, short, $0.01) or more
        return f"{sign}${v:,.2f}"
    if short:
        return f"{sign}<$0.01"
    if v < 10 ** -MONEY_MAX_DECIMALS:
        return f"{sign}<${10 ** -MONEY_MAX_DECIMALS:.{MONEY_MAX_DECIMALS}f}"
    return f"{sign}${_trim(f'{v:.{_money_decimals(v)}f}')}"


def fmt_money_exact(usd: float) -> str:
    """The exact sum for a tooltip: every digit the ledger keeps (to a millionth of a cent)."""
    if usd and abs(usd) < 10 ** -MONEY_MAX_DECIMALS:
        return fmt_money(usd)
    sign = "-" if usd < 0 else ""
    return f"{sign}${_trim(f'{abs(usd):,.{MONEY_MAX_DECIMALS}f}')}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 model", "2 models", "0 models" (``many`` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
