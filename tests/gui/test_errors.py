"""Errors a user meets appear in the window as sentences that say what to do."""

from __future__ import annotations

import socket

import anthropic
import keyring
import pytest
from PySide6.QtWidgets import QPushButton

from tests.gui.conftest import ask, wait_for, write_config


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_port_already_in_use_is_said_in_the_window_with_the_fix(start_app, patchbay_home, upstreams, qtbot):
    a, b = upstreams
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        cfg = write_config(patchbay_home / "config.toml", a.url, b.url, port=port)
        r = start_app(cfg, expect_ok=False)
        msgs = r.window.messages()
        assert len(msgs) == 1
        m = msgs[0]
        assert m.level == "error" and f"Port {port}" in m.text and "already in use" in m.text
        assert m.action == "settings"  # the banner offers the page where the port is changed
        assert "Traceback" not in m.text
        assert r.bridge.tray_state() == "error"
        assert r.bridge.gateway().state == "failed"
    finally:
        blocker.close()
    # the user frees the port and presses Retry
    r.window._banner_action("retry")
    assert r.bridge.running
    assert r.window.messages() == []


def test_corrupt_config_is_explained_and_retry_works_after_the_fix(start_app, patchbay_home, upstreams, qtbot):
    a, b = upstreams
    cfg = patchbay_home / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("[gateway]\nport = 0\n[[backends]]\nid = \"x\"\nkind = \"carrier-pigeon\"\n", encoding="utf-8")
    r = start_app(cfg, expect_ok=False)
    m = r.window.messages()[0]
    assert m.title == "The settings file cannot be used"
    assert str(cfg) in m.text and "carrier-pigeon" in m.text and 'kind = "anthropic"' in m.text
    assert m.action == "config"
    assert r.bridge.backends.backends() == [] and r.window.backend_combo.count() == 0  # nothing half-started
    card = r.window.banner._cards["startup"]
    assert {btn.text() for btn in card.findChildren(QPushButton)} == {
        "Show the file", "Retry", "Start with a fresh config"}
    write_config(cfg, a.url, b.url)
    r.window._banner_action("retry")
    assert r.bridge.running and r.window.messages() == []
    assert r.window.backend_combo.count() == 2


def test_reset_moves_a_broken_config_aside(start_app, patchbay_home, qtbot, monkeypatch):
    cfg = patchbay_home / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("this is = = not toml", encoding="utf-8")
    r = start_app(cfg, expect_ok=False)
    assert "not valid TOML" in r.window.messages()[0].text
    # the default config listens on 8787, which may be taken here: any outcome but a traceback is fine
    r.window._banner_action("reset")
    assert (patchbay_home / "config.toml.broken").read_text() == "this is = = not toml"
    assert cfg.exists() and "[[backends]]" in cfg.read_text()
    texts = " ".join(m.text for m in r.window.messages())
    assert "Traceback" not in texts
    assert r.bridge.engine is not None


def test_unreachable_backend_turns_the_tray_red_and_says_what_to_do(start_app, patchbay_home, upstreams, qtbot):
    a, b = upstreams
    dead = f"http://127.0.0.1:{_free_port()}"
    cfg = write_config(patchbay_home / "config.toml", dead, b.url)
    r = start_app(cfg)
    notified = []
    r.bridge.notices.message.connect(lambda m: notified.append(m))
    with pytest.raises(anthropic.APIStatusError) as err:
        ask(r, qtbot, "hello?", stream=False)
    assert err.value.status_code >= 500
    wait_for(qtbot, lambda: any(m.key == "health:alpha" for m in r.window.messages()))
    m = next(m for m in r.window.messages() if m.key == "health:alpha")
    assert "alpha" in m.title and "Backends page" in m.text and m.notify  # a tray notification too
    assert r.bridge.tray_state() == "error"
    assert "⚠" in r.window.backend_combo.itemText(r.window.backend_combo.findData("alpha"))
    # switching to a working backend clears the red state
    r.app.tray.backend_actions["beta"].trigger()
    assert r.bridge.tray_state() == "ok"


def test_budget_reached_is_announced_and_the_next_request_is_refused(start_app, patchbay_home, upstreams, qtbot):
    a, b = upstreams
    cfg = write_config(patchbay_home / "config.toml", a.url, b.url, extra="""
[[budgets]]
scope = "all"
period = "day"
limit_usd = 0.0001
warn_at = 0.5
action = "block"
""")
    r = start_app(cfg)
    # 10 in + 5 out at $3/$15 per million = $0.000105: the answer is stopped at the limit, charged
    # for what it delivered (app/budgets/hold_meter.py)
    with pytest.raises(anthropic.APIStatusError, match="stopped at the budget's limit"):
        ask(r, qtbot, "spend it all")
    wait_for(qtbot, lambda: any((m.key or "").startswith("budget:") for m in r.window.messages()))
    m = next(m for m in r.window.messages() if (m.key or "").startswith("budget:"))
    assert m.title.startswith("Budget reached") and m.action == "spend" and m.notify
    wait_for(qtbot, lambda: r.bridge.tray_state() == "error")
    assert "budget reached" in r.app.tray.spend_action.text()
    with pytest.raises(anthropic.APIStatusError) as err:  # streamed, as Claude Code asks: refused or stopped
        ask(r, qtbot, "one more")
    assert err.value.body["error"]["type"] == "billing_error"  # type: ignore[index]


def test_a_locked_keychain_says_what_to_do_instead(start_app, config_file, qtbot):
    from tests.fakes.keyring_backend import LockedKeyring

    r = start_app(config_file)
    keyring.set_keyring(LockedKeyring())
    page = r.window.page("backends")
    page.list.setCurrentRow(0)
    page.auth_combo.setCurrentIndex(page.auth_combo.findData("keyring"))
    page.key_edit.setText("sk-secret")
    page.store_key()
    m = next(m for m in r.window.messages() if m.key == "apikey")
    assert m.title == "The API key was not stored"
    assert "env:NAME" in m.text and "keychain" in m.text.lower()
    assert page.key_edit.text() == "sk-secret"  # nothing lost: the user can switch to env and retry


def test_budget_near_turns_the_icon_amber(start_app, patchbay_home, upstreams, qtbot):
    a, b = upstreams
    cfg = write_config(patchbay_home / "config.toml", a.url, b.url, extra="""
[[budgets]]
scope = "all"
period = "day"
limit_usd = 0.0002
warn_at = 0.5
action = "warn"
""")
    r = start_app(cfg)
    ok_icon = r.app.tray.current_icon().pixmap(32, 32).toImage()
    assert r.bridge.tray_state() == "ok"
    ask(r, qtbot, "a little")  # $0.000105 of $0.0002: past the warn line, under the limit
    wait_for(qtbot, lambda: r.bridge.tray_state() == "warn")
    m = next(m for m in r.window.messages() if (m.key or "").startswith("budget:"))
    assert m.level == "warn" and m.title.startswith("Budget nearly used")
    assert "near the budget" in r.app.tray.spend_action.text()
    assert r.app.tray.current_icon().pixmap(32, 32).toImage() != ok_icon  # the badge is drawn
    ask(r, qtbot, "still allowed")  # action = "warn": requests keep flowing
