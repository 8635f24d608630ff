"""Icons drawn with QPainter: the tray glyph (a patch cord with the active backend's initial) and
the app icon. Drawn, not loaded, so the tray can show any backend and state without assets."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap

from app.views.colors import assign_colors, color_for
from app.views.theme import STATE_COLORS

ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


_ASSIGNED: dict[str, str] = {}  # the configured backends' colours (app.views.colors.assign_colors)


def use_backends(backend_ids: Iterable[str]) -> None:
    """Give the configured backends their distinct colours (the app calls this when the list changes)."""
    _ASSIGNED.clear()
    _ASSIGNED.update(assign_colors(backend_ids))


def backend_color(backend_id: str) -> QColor:
    """A stable colour per backend id (the same in the tray, the toolbar and the plots' legend),
    distinct among the configured backends."""
    return QColor(color_for(backend_id, _ASSIGNED))


def initial_of(backend_id: str) -> str:
    for ch in backend_id:
        if ch.isalnum():
            return ch.upper()
    return "?"


def draw_glyph(size: int, initial: str, color: QColor, state: str = "ok") -> QPixmap:
    """The tray glyph: a rounded tile in the backend's colour, a patch cord from a jack at the
    bottom left looping to the top right, and the backend's initial. ``state`` adds a corner
    badge: "warn" (amber), "error" (red); "paused"/"stopped" grey the tile out."""
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    s = float(size)
    tile = QColor(color)
    if state in ("paused", "stopped"):
        tile = QColor(STATE_COLORS["paused"])
    pad = s * 0.04
    rect = QRectF(pad, pad, s - 2 * pad, s - 2 * pad)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(tile))
    p.drawRoundedRect(rect, s * 0.22, s * 0.22)

    # The cord: a loop from a jack (bottom left) to a plug (top right), behind the letter.
    if size >= 20:
        cord = QPainterPath(QPointF(s * 0.20, s * 0.80))
        cord.cubicTo(QPointF(s * 0.10, s * 0.30), QPointF(s * 0.75, s * 0.95), QPointF(s * 0.80, s * 0.22))
        pen = QPen(QColor(255, 255, 255, 150), max(1.2, s * 0.075))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(cord)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(255, 255, 255, 230))
        p.drawEllipse(QPointF(s * 0.20, s * 0.80), s * 0.085, s * 0.085)
        p.drawRoundedRect(QRectF(s * 0.72, s * 0.12, s * 0.16, s * 0.13), s * 0.03, s * 0.03)

    # The initial.
    f = QFont()
    f.setBold(True)
    f.setPixelSize(max(8, int(s * (0.62 if size < 20 else 0.52))))
    p.setFont(f)
    p.setPen(QColor("white"))
    p.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), initial[:1])

    # The state badge.
    if state in ("warn", "error"):
        r = s * 0.20
        c = QPointF(s - r - pad * 0.5, r + pad * 0.5)
        p.setPen(QPen(QColor("white"), max(1.0, s * 0.04)))
        p.setBrush(QColor(STATE_COLORS[state]))
        p.drawEllipse(c, r, r)
        if size >= 22:
            p.setPen(QColor("white"))
            bf = QFont(f)
            bf.setPixelSize(max(6, int(r * 1.5)))
            p.setFont(bf)
            p.drawText(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r), int(Qt.AlignmentFlag.AlignCenter), "!")
    p.end()
    return pm


def state_icon(backend_id: str, state: str = "ok") -> QIcon:
    icon = QIcon()
    color = backend_color(backend_id)
    ini = initial_of(backend_id)
    for sz in ICON_SIZES[:6]:
        icon.addPixmap(draw_glyph(sz, ini, color, state))
    return icon


_DOTS: dict[tuple[str, int], QIcon] = {}


def dot_icon(color: QColor | str, size: int = 12) -> QIcon:
    """A small filled circle, for backend colours in menus and lists (cached: tables ask often)."""
    key = (QColor(color).name(), size)
    icon = _DOTS.get(key)
    if icon is None:
        icon = _DOTS[key] = _draw_dot(QColor(color), size)
    return icon


def _draw_dot(color: QColor, size: int) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(color))
    p.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    p.end()
    return QIcon(pm)


_HEALTH_DOTS: dict[tuple[str, str], QIcon] = {}
HEALTH_COLORS = {"ok": "ok", "failing": "warn", "open": "error"}


def health_icon(color: QColor | str, health: str, size: int = 16) -> QIcon:
    """The backend's colour dot with a small health dot at its lower right: green ok, amber
    failing, red skipped by the circuit breaker; none while nothing is known."""
    from app.views.theme import STATE_COLORS

    key = (QColor(color).name(), health)
    icon = _HEALTH_DOTS.get(key)
    if icon is not None:
        return icon
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(color))
    p.drawEllipse(QRectF(1, 1, size - 5, size - 5))
    state = HEALTH_COLORS.get(health)
    if state is not None:
        p.setBrush(QColor(STATE_COLORS[state]))
        p.setPen(QColor("white"))
        r = size * 0.5
        p.drawEllipse(QRectF(size - r - 0.5, size - r - 0.5, r, r))
    p.end()
    icon = _HEALTH_DOTS[key] = QIcon(pm)
    return icon


def app_icon() -> QIcon:
    """The application icon: the PNGs rendered from app/resources/icons/patchbay.svg, else the glyph
    with a "P" in Patchbay's own colour."""
    from app.paths import RESOURCES

    icon = QIcon()
    for png in sorted((RESOURCES / "icons").glob("patchbay*.png")):
        icon.addFile(str(png))
    if not icon.isNull():
        return icon
    for sz in ICON_SIZES:
        icon.addPixmap(draw_glyph(sz, "P", QColor("#5b5bd6")))
    return icon


def write_icon_files(folder: Path) -> list[Path]:
    """Render one tray glyph per state (for docs) into ``folder`` as PNGs. The app icon's PNGs
    come from ``app/resources/icons/patchbay.svg`` (``packaging/make_icons.py``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for state in ("ok", "warn", "error", "paused"):
        path = folder / f"tray-{state}.png"
        draw_glyph(64, "A", backend_color("anthropic"), state).save(str(path))
        out.append(path)
    return out


if __name__ == "__main__":  # python -m app.views.icons: regenerate app/resources/icons/tray-*.png
    import sys

    from PySide6.QtWidgets import QApplication

    from app.paths import RESOURCES

    _app = QApplication.instance() or QApplication(sys.argv[:1])
    for p in write_icon_files(RESOURCES / "icons"):
        print(p)
