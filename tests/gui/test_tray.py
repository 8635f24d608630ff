"""Issue 15 items 10 and 11: the tray's model submenu against an aggregator listing hundreds of
models (configured ones first, the rest behind a searchable chooser), and one click to the menu."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QSystemTrayIcon

from app.config.disk import load_config
from tests.fakes.upstreams import FakeUpstream
from tests.gui.conftest import ask, wait_for, write_config

MANY = tuple(f"vendor-{i % 7}/model-{i:03d}" for i in range(300)) + ("gpt-fake", "gpt-other")


@pytest.fixture
def aggregator():  # type: ignore[no-untyped-def]
    with FakeUpstream(wire="openai", models=MANY) as up:
        yield up


def _labels(menu) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_the_model_menu_shows_configured_models_and_the_rest_in_a_chooser(start_app, patchbay_home: Path,
                                                                          upstreams, aggregator, qtbot) -> None:
    alpha, _beta = upstreams
    cfg = write_config(patchbay_home / "config.toml", alpha.url, aggregator.url)
    r = start_app(cfg)
    tray = r.app.tray
    tray.backend_actions["beta"].trigger()
    tray.models_menu.aboutToShow.emit()
    wait_for(qtbot, lambda: tray.more_action is not None)
    labels = _labels(tray.models_menu)
    assert labels[:3] == ["Default (gpt-fake)", "gpt-fake", "gpt-other"]  # the configured ones first
    assert len(labels) < 10  # not 300 entries
    assert tray.more_action.text() == f"All {len(MANY):,} models from beta…"

    tray.more_action.trigger()
    chooser = tray.chooser
    assert chooser is not None and len(chooser.visible_models()) == len(MANY)
    chooser.search.setText("vendor-3 model-24")  # words in any order narrow the list
    shown = chooser.visible_models()
    assert shown == [m for m in MANY if "vendor-3" in m and "model-24" in m] and shown
    assert chooser.count.text().endswith(f"of {len(MANY):,}")
    chooser.search.returnPressed.emit()  # Enter takes the first match
    assert r.bridge.backends.active() == ("beta", shown[0])
    assert load_config(cfg).active.model == shown[0]
    assert tray.model_actions[shown[0]].isChecked()  # the active one shows in the menu from now on
    ask(r, qtbot, "which model?")
    assert [q for q in aggregator.requests if q.path.endswith("/chat/completions")][-1].json["model"] == shown[0]


def test_a_short_list_stays_in_the_menu(start_app, config_file, upstreams, qtbot) -> None:
    r = start_app(config_file)
    tray = r.app.tray
    tray.backend_actions["beta"].trigger()
    tray.models_menu.aboutToShow.emit()
    wait_for(qtbot, lambda: "gpt-listed" in tray.model_actions)
    assert tray.more_action is None
    assert _labels(tray.models_menu) == ["Default (gpt-fake)", "gpt-fake", "gpt-other", "gpt-listed"]


def test_a_left_click_opens_the_menu_on_linux(start_app, config_file, qtbot, monkeypatch) -> None:
    import app.views.tray as tray_mod

    r = start_app(config_file)
    tray = r.app.tray
    opened: list[bool] = []
    monkeypatch.setattr(tray_mod, "LEFT_CLICK_MENU", True)
    r.app.tray.openRequested.connect(lambda: opened.append(True))
    tray._activated(QSystemTrayIcon.ActivationReason.Trigger)  # what the tray host sends for a left click
    wait_for(qtbot, tray.menu.isVisible)
    assert not opened  # the menu, not the window
    tray.menu.hide()
    tray._activated(QSystemTrayIcon.ActivationReason.DoubleClick)
    assert opened == [True]  # a double click still opens the window
    monkeypatch.setattr(tray_mod, "LEFT_CLICK_MENU", False)  # Windows: a click opens the window
    tray._activated(QSystemTrayIcon.ActivationReason.Trigger)
    assert opened == [True, True] and not tray.menu.isVisible()
