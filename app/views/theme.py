"""Colours and small formatting helpers shared by the views.

Everything else takes its colours from the palette, so the window follows the platform's light or
dark look. The few fixed colours here (stream kinds, plot series, tray states) were chosen to
read on both a light and a dark background.
"""

from __future__ import annotations

import math
import time

from PySide6.QtGui import QColor, QGuiApplication, QPalette

from app.units import fmt_money, fmt_money_exact

# Stream content kinds: mid-tone colours with enough contrast on white and on #1e1e1e.
KIND_COLORS: dict[str, str] = {
    "text": "",  # the palette's own text colour
    "thinking": "#8a7fd6",
    "tool_use": "#d08a2c",
    "tool_input": "#2f9c8f",
    "error": "#d9534f",
    "meta": "#7f8c99",
}

# Tray / status states.
STATE_COLORS: dict[str, str] = {
    "ok": "#2e9d5b",
    "warn": "#e0a21b",
    "error": "#d64541",
    "paused": "#7f8c99",
    "stopped": "#7f8c99",
}

# Plot series: a qualitative palette readable on light and dark (Tableau 10, slightly lifted).
SERIES_COLORS: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)


def series_color(i: int) -> QColor:
    return QColor(SERIES_COLORS[i % len(SERIES_COLORS)])


def kind_color(kind: str, palette: QPalette | None = None) -> QColor:
    name = KIND_COLORS.get(kind, "")
    if not name:
        pal = palette or QGuiApplication.palette()
        return pal.color(QPalette.ColorRole.Text)
    return QColor(name)


# ----------------------------------------------------------------------------- formatting


def fmt_usd(value: float | None, *, unpriced: bool = False, short: bool = False) -> str:
    """A sum in the one money format (app.units.fmt_money); "—" for none, a "+" when some of it is unpriced."""
    if value is None:
        return "—"
    if value == 0 and unpriced:
        return "—"
    return fmt_money(value, short=short) + ("+" if unpriced and value else "")


def usd_tip(value: float | None) -> str:
    """The exact sum, for a tooltip beside a rounded one."""
    return "" if value is None else fmt_money_exact(value)


def fmt_tokens(n: int | float | None) -> str:
    if n is None:
        return "—"
    n = float(n)
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{int(n)}"


def fmt_ms(ms: float | None) -> str:
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "—"
    if ms >= 10_000:
        return f"{ms / 1000:.0f} s"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms"


def fmt_rate(tps: float | None) -> str:
    if not tps:
        return "—"
    return f"{tps:.0f} tok/s" if tps >= 10 else f"{tps:.1f} tok/s"


def fmt_clock(ts: float | None) -> str:
    if not ts:
        return "—"
    lt = time.localtime(ts)
    if time.strftime("%Y-%m-%d", lt) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", lt)
    return time.strftime("%b %d %H:%M", lt)


def fmt_ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "—"
    d = max(0.0, (now or time.time()) - ts)
    if d < 5:
        return "now"
    if d < 60:
        return f"{d:.0f} s ago"
    if d < 3600:
        return f"{d / 60:.0f} min ago"
    if d < 86400:
        return f"{d / 3600:.0f} h ago"
    return f"{d / 86400:.0f} d ago"


def short_session(session_id: str | None) -> str:
    if not session_id:
        return "(no session)"
    return session_id[:8]


# The selected row of a list (the page list, the backends list) carries a bar of its own at the left,
# in a fixed accent, so it shows where a desktop style's (inactive) highlight is as dark as the list.
SELECTION_ACCENT = "#4e79a7"
SELECTION_MARKER = ("QListView::item { border-left: 4px solid transparent; }"
                    f"QListView::item:selected {{ border-left: 4px solid {SELECTION_ACCENT}; font-weight: bold; "
                    "background: rgba(78, 121, 167, 70); color: palette(text); }")
