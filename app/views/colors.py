"""A colour per backend: distinct among the configured backends, the same after every restart, and
readable on a light and on a dark background. No Qt: colours are "#rrggbb" strings.

Each id has a preferred slot in ``PALETTE`` (a brand's colour for the well-known names, else a hash
of the id, never Python's per-process ``hash``); two ids that want the same slot are resolved in
a fixed order (brand names first, then by id), the later one taking the next free slot. So the same
set of backends always gets the same colours, whatever order the config lists them in. Past the
palette's eleven colours, more are made at the same lightness along the golden angle.
"""

from __future__ import annotations

import colorsys
import re
import zlib
from collections.abc import Iterable

# Eleven colours at one relative luminance (about 0.23): contrast about 3.7:1 on white and 4.4:1 on
# #1e1e1e, so a dot, a bar or a line reads in light and in dark mode alike. Pairwise CIE76 distance
# of at least 24 (tests/unit/test_backend_colors.py checks both).
PALETTE: tuple[str, ...] = (
    "#d95f2a",  # coral (anthropic)
    "#4086d6",  # blue (deepseek, vertex)
    "#2c974f",  # green (openai)
    "#a768d3",  # violet (openrouter)
    "#ad7b09",  # amber (bedrock)
    "#d55599",  # magenta
    "#119397",  # teal
    "#5d931f",  # olive
    "#e1526a",  # red
    "#a47c58",  # brown
    "#76878f",  # slate (ollama)
)

BRANDS: dict[str, int] = {
    "anthropic": 0, "claude": 0, "deepseek": 1, "vertex": 1, "google": 1, "gemini": 1, "openai": 2,
    "openrouter": 3, "bedrock": 4, "aws": 4, "ollama": 10,
}

TARGET_LUMINANCE = 0.23


def _brand(backend_id: str) -> int | None:
    """The brand slot of "anthropic", "Anthropic-work", "ollama_local" ...; None for other names."""
    head = re.split(r"[^a-z0-9]+", backend_id.lower(), maxsplit=1)[0]
    return BRANDS.get(head)


def preferred_slot(backend_id: str) -> int:
    brand = _brand(backend_id)
    return brand if brand is not None else zlib.crc32(backend_id.encode("utf-8")) % len(PALETTE)


def _luminance(rgb: tuple[float, float, float]) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def extra_color(n: int) -> str:
    """The n-th colour past the palette: the golden angle around the hue circle, lightness chosen
    for the palette's luminance."""
    hue = (0.07 + n * 0.381966) % 1.0
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if _luminance(colorsys.hls_to_rgb(hue, mid, 0.6)) < TARGET_LUMINANCE:
            lo = mid
        else:
            hi = mid
    r, g, b = colorsys.hls_to_rgb(hue, (lo + hi) / 2, 0.6)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def assign_colors(backend_ids: Iterable[str]) -> dict[str, str]:
    """Backend id -> "#rrggbb", all different, for the configured set (the order given is ignored)."""
    ids = sorted(set(backend_ids), key=lambda i: (_brand(i) is None, i))
    taken: set[int] = set()
    out: dict[str, str] = {}
    extras = 0
    for backend_id in ids:
        start = preferred_slot(backend_id)
        for k in range(len(PALETTE)):
            slot = (start + k) % len(PALETTE)
            if slot not in taken:
                taken.add(slot)
                out[backend_id] = PALETTE[slot]
                break
        else:
            out[backend_id] = extra_color(extras)
            extras += 1
    return out


def color_for(backend_id: str, assigned: dict[str, str] | None = None) -> str:
    """The assigned colour, or (a backend no longer configured, say in old ledger rows) its preferred one."""
    if assigned and backend_id in assigned:
        return assigned[backend_id]
    return PALETTE[preferred_slot(backend_id)]
