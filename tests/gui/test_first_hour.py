"""Issue 15: the snags of a new user's first hour (layout at the minimum size, a long session title,
empty tables, names after a restart, the keychain on a bare desktop, the log)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keyring
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QScrollArea

from tests.gui.conftest import send_in_thread, wait_for

LONG = "/home/dana/src/customer-portal/services/authentication-and-authorisation-gateway-migration-to-oauth2"


def _ask_from(r: Any, qtbot: Any, session: str, cwd: str) -> None:
    def call() -> Any:
        return r.client(session).messages.create(
            model="claude-fake", max_tokens=16, messages=[{"role": "user", "content": "hi"}],
            system=[{"type": "text", "text": "You are Claude Code."},
                    {"type": "text", "text": f"Working directory: {cwd}\n"}])

    send_in_thread(qtbot, call)


def _painted(widget: Any) -> int:
    """How many pixels of the widget differ from its background (text drawn on it)."""
    img = widget.grab().toImage()
    base = widget.palette().color(QPalette.ColorRole.Base).rgb()
    return sum(1 for y in range(0, img.height(), 2) for x in range(0, img.width(), 2) if img.pixel(x, y) != base)


def test_the_window_is_usable_at_its_minimum_size(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    w = r.window
    assert (w.minimumSize().width(), w.minimumSize().height()) == (900, 600)
    w.resize(900, 600)
    qtbot.wait(50)
    w.show_page("settings")
    page = w.page("settings")
    qtbot.wait(50)
    scroll = page.findChild(QScrollArea)
    assert scroll.horizontalScrollBar().maximum() == 0  # nothing cut off at the right: no sideways scrolling
    for button in (page.budget_save, page.budget_add, page.cc_connect, page.regen, page.ollama_apply):
        right = button.mapTo(scroll.viewport(), button.rect().topRight()).x()
        assert right <= scroll.viewport().width(), button.text()


def test_a_long_session_title_moves_nothing(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    w = r.window
    w.resize(900, 600)
    dash = w.page("dashboard")
    _ask_from(r, qtbot, "s-short", "/home/dana/notes")
    _ask_from(r, qtbot, "s-long", LONG)
    wait_for(qtbot, lambda: dash.sessions_model.find("s-long") >= 0 and dash.sessions_model.find("s-short") >= 0)
    dash.select_session("s-short")
    qtbot.wait(50)
    before = (dash.splitter.sizes(), dash.bottom_splitter.sizes())
    dash.select_session("s-long")
    qtbot.wait(50)
    assert (dash.splitter.sizes(), dash.bottom_splitter.sizes()) == before  # the splits stay
    title = dash.stream_title
    assert title.full_text().endswith(Path(LONG).name)
    assert title.shown_text().endswith("…") and title.toolTip() == title.full_text()  # elided, whole in the tip
    view = dash.recent_view
    header = view.horizontalHeader()
    for name in ("Cost", "TTFT", "Latency"):  # never pushed behind a scroll bar
        col = next(i for i, c in enumerate(dash.recent_model.columns) if c.title == name)
        if name != "TTFT":
            assert not view.isColumnHidden(col)
        if not view.isColumnHidden(col):
            assert header.sectionViewportPosition(col) + header.sectionSize(col) <= view.viewport().width() + 1
    assert view.horizontalScrollBar().maximum() == 0


def test_empty_tables_say_why(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    dash = r.window.page("dashboard")
    assert dash.sessions_model.rowCount() == 0
    assert "No Claude Code sessions yet" in dash.sessions_view.empty_text
    assert _painted(dash.sessions_view.viewport()) > 50  # the sentence is drawn
    req = r.window.page("requests")
    assert req.view.empty_text.startswith("No requests yet")


def test_session_names_survive_a_restart(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    _ask_from(r, qtbot, "s-named", "/home/dana/src/webshop")
    wait_for(qtbot, lambda: (s := r.bridge.live.session("s-named")) is not None and s.label == "webshop")
    r.app.quit()  # the names are written when the gateway stops

    r2 = start_app(config_file)
    wait_for(qtbot, lambda: r2.bridge.live.session("s-named") is not None)  # brought back from the ledger
    assert r2.bridge.live.session("s-named").label == "webshop"  # not "s-named"[:8]
    assert r2.bridge.live.session_labels()["s-named"] == "webshop"  # Spend's top sessions use these


def test_the_keychain_error_goes_once_no_key_is_chosen(start_app, config_file, qtbot) -> None:
    from tests.fakes.keyring_backend import LockedKeyring

    r = start_app(config_file)
    keyring.set_keyring(LockedKeyring())  # a keychain that refuses (a bare desktop has the private file now)
    r.window.show_page("backends")
    page = r.window.page("backends")
    page.list.setCurrentRow(0)
    page.auth_combo.setCurrentIndex(page.auth_combo.findData("keyring"))
    page.key_edit.setText("sk-secret")
    page.store_key()
    card = next(c for c in r.window.banner._cards.values() if c.msg.key == "apikey")
    assert "backends" in card.buttons and not card.buttons["backends"].isVisibleTo(card)  # on that very page
    r.window.show_page("dashboard")
    assert card.buttons["backends"].isVisibleTo(card)  # elsewhere it leads there
    r.window.show_page("backends")
    page.auth_combo.setCurrentIndex(page.auth_combo.findData("none"))  # "No key (local servers)"
    assert not any(m.key == "apikey" for m in r.window.messages())


def test_errors_the_window_shows_are_written_to_the_log(start_app, config_file, qtbot, caplog) -> None:
    r = start_app(config_file)
    caplog.set_level(logging.WARNING)
    config_file.write_text(config_file.read_text(encoding="utf-8") + "\n[gateway\n", encoding="utf-8")
    wait_for(qtbot, lambda: any(m.key == "config-edit" for m in r.window.messages()))
    rec = next(x for x in caplog.records if "The edited settings file cannot be used" in x.getMessage())
    assert rec.levelno == logging.ERROR and rec.name == "app.bridge"


def test_without_a_gpu_no_axes_are_drawn_under_the_note(start_app, config_file, qtbot) -> None:
    from app.host.hardware import HardwareSampler

    r = start_app(config_file, hardware_factory=lambda: HardwareSampler([]))
    r.window.show_page("monitor")
    mon = r.window.page("monitor")
    wait_for(qtbot, lambda: mon.gpu.absent and not mon.cpu.absent)  # a sample came: no GPU in it
    item = mon.gpu.plot.getPlotItem()
    assert not item.getAxis("left").isVisible() and not item.getAxis("bottom").isVisible()
    assert mon.cpu.plot.getPlotItem().getAxis("left").isVisible()


def test_monitor_fits_a_normal_window_and_scrolls_only_in_a_small_one(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    w = r.window
    w.resize(1240, 800)
    w.show_page("monitor")
    mon = w.page("monitor")
    qtbot.wait(100)
    scroll = mon.findChild(QScrollArea)
    assert scroll.verticalScrollBar().maximum() == 0  # plots and the model list share the window
    w.resize(900, 600)
    qtbot.wait(100)
    assert mon.view.height() >= 100  # the model list stays a list, not a sliver
    assert scroll.horizontalScrollBar().maximum() == 0
