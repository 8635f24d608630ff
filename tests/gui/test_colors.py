"""Backend colours in the window: distinct for the configured backends, even when two ids would pick
the same colour on their own (app/views/colors.py does the choosing; App keeps it current)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor

from app.views.colors import assign_colors, preferred_slot
from tests.gui.conftest import write_config


def _twin_of(backend_id: str) -> str:
    return next(f"{backend_id}-{i}" for i in range(1000) if preferred_slot(f"{backend_id}-{i}") == preferred_slot(
        backend_id) and f"{backend_id}-{i}" > backend_id)


def _icon_color(combo, index: int) -> str:  # type: ignore[no-untyped-def]
    image = combo.itemIcon(index).pixmap(12, 12).toImage()
    return QColor(image.pixelColor(6, 6)).name()


def test_backends_that_would_share_a_colour_get_two_in_the_toolbar(start_app, upstreams, patchbay_home: Path):
    a, b = upstreams
    twin = _twin_of("alpha")
    extra = f'\n[[backends]]\nid = "{twin}"\nkind = "anthropic"\nbase_url = "{a.url}"\nauth = "none"\nlocal = false\n'
    cfg = write_config(patchbay_home / "config.toml", a.url, b.url, extra=extra)
    r = start_app(cfg)
    combo = r.window.backend_combo
    ids = [combo.itemData(i) for i in range(combo.count())]
    assert sorted(ids) == sorted(["alpha", "beta", twin])
    shown = {i: _icon_color(combo, n) for n, i in enumerate(ids)}
    assert len(set(shown.values())) == 3, shown
    assert shown == assign_colors(ids)  # the same colours the menus, lists and charts use
