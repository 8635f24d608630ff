"""Issue 15 item 3: a hand-edited settings file is re-read by the running app. A valid edit is
applied (the next request follows it); a broken one shows the error strip and the app keeps
running on the last good settings; the app's own saves are not reported as edits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.gui.conftest import ask, wait_for


def _edit(path: Path, old: str, new: str, *, atomic: bool = False) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new)
    if atomic:  # how most editors save: a new file renamed over the old one
        tmp = path.with_name(path.name + ".swp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    else:
        path.write_text(text, encoding="utf-8")


def _titles(r: Any) -> list[str]:
    return [m.title for m in r.window.messages()]


def test_a_valid_hand_edit_is_applied_while_the_app_runs(qtbot, start_app, config_file, upstreams) -> None:
    alpha, beta = upstreams
    r = start_app(config_file)
    assert r.bridge.backends.active()[0] == "alpha"
    _edit(config_file, '[active]\nbackend = "alpha"', '[active]\nbackend = "beta"\nmodel = "gpt-fake"', atomic=True)
    wait_for(qtbot, lambda: r.bridge.backends.active() == ("beta", "gpt-fake"))
    wait_for(qtbot, lambda: r.window.backend_combo.currentData() == "beta")  # the toolbar follows
    assert "Settings file re-read" in _titles(r)
    before = len(beta.requests_to("/chat/completions"))
    ask(r, qtbot, "where do I go")
    assert len(beta.requests_to("/chat/completions")) == before + 1  # the gateway routes by the edited file


def test_a_second_edit_in_place_is_seen_too(qtbot, start_app, config_file) -> None:
    r = start_app(config_file)
    _edit(config_file, 'model = "gpt-fake"\ninput = 1.0', 'model = "gpt-fake"\ninput = 7.0', atomic=True)
    wait_for(qtbot, lambda: any(p.model == "gpt-fake" and p.input == 7.0 for p in r.bridge.engine.config.prices))
    _edit(config_file, "port = 0\n", "port = 0\n\n[ollama]\nurl = \"http://127.0.0.1:11500\"\n")  # plain write
    wait_for(qtbot, lambda: r.bridge.engine.config.ollama.url == "http://127.0.0.1:11500")
    wait_for(qtbot, lambda: r.bridge.monitor.ollama().url == "http://127.0.0.1:11500")


def test_a_broken_edit_shows_the_error_and_keeps_the_last_good_settings(qtbot, start_app, config_file,
                                                                         upstreams) -> None:
    alpha, _beta = upstreams
    r = start_app(config_file)
    good = r.bridge.engine.config
    _edit(config_file, '[active]\nbackend = "alpha"', '[active]\nbackend = "alpha"\nthis is not toml')
    wait_for(qtbot, lambda: "The edited settings file cannot be used" in _titles(r))
    msg = next(m for m in r.window.messages() if m.key == "config-edit")
    assert msg.level == "error" and "keeps running on the settings it had" in msg.text
    assert str(config_file.name) in msg.text or "line" in msg.text  # says where
    assert msg.action == "config"  # "Show the file"
    assert r.bridge.engine is not None and r.bridge.engine.config == good and r.bridge.running
    before = len(alpha.requests_to("/v1/messages"))
    ask(r, qtbot, "still working?")  # the gateway runs on the last good settings
    assert len(alpha.requests_to("/v1/messages")) == before + 1

    _edit(config_file, "\nthis is not toml", '\nmodel = "claude-fake-large"')  # fixed
    wait_for(qtbot, lambda: r.bridge.backends.active() == ("alpha", "claude-fake-large"))
    assert "The edited settings file cannot be used" not in _titles(r)


def test_an_unknown_backend_in_the_edit_is_refused_with_a_sentence(qtbot, start_app, config_file) -> None:
    r = start_app(config_file)
    _edit(config_file, '[active]\nbackend = "alpha"', '[active]\nbackend = "gamma"')
    wait_for(qtbot, lambda: "The edited settings file cannot be used" in _titles(r))
    assert r.bridge.backends.active()[0] == "alpha"


def test_the_apps_own_saves_are_not_reported_as_edits(qtbot, start_app, config_file) -> None:
    r = start_app(config_file)
    assert r.bridge.backends.switch("beta", "gpt-other")
    qtbot.wait(1200)  # past the watcher's settle time and a poll
    assert "Settings file re-read" not in _titles(r)
    assert r.bridge.backends.active() == ("beta", "gpt-other")


def test_fixing_a_file_that_was_broken_at_start_up_starts_the_gateway(qtbot, start_app, config_file) -> None:
    good = config_file.read_text(encoding="utf-8")
    config_file.write_text(good + "\n[gateway\n", encoding="utf-8")
    r = start_app(config_file, expect_ok=False)
    assert r.bridge.engine is None and r.bridge.fatal is not None
    config_file.write_text(good, encoding="utf-8")
    wait_for(qtbot, lambda: r.bridge.running)
    wait_for(qtbot, lambda: r.bridge.gateway().state == "running")


def test_the_ollama_address_is_a_setting(qtbot, start_app, config_file) -> None:
    from app.views.settings import SettingsPage

    r = start_app(config_file)
    r.window.show_page("settings")
    page = r.window.findChild(SettingsPage)
    assert page is not None and page.ollama_url.text() == "http://localhost:11434"
    page.ollama_url.setText("not a url")
    page.apply_ollama_url()
    assert "not a url" not in config_file.read_text(encoding="utf-8")  # refused, file untouched
    assert any(m.key == "settings" and m.level == "error" for m in r.window.messages())
    page.ollama_url.setText("http://127.0.0.1:11555")
    page.apply_ollama_url()
    assert 'url = "http://127.0.0.1:11555"' in config_file.read_text(encoding="utf-8")
    assert r.bridge.engine.config.ollama.url == "http://127.0.0.1:11555"


def test_connect_says_which_settings_json_it_changes(qtbot, start_app, config_file, monkeypatch,
                                                     tmp_path) -> None:
    from app.views.settings import SettingsPage

    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = start_app(config_file)
    r.window.show_page("settings")
    page = r.window.findChild(SettingsPage)
    assert page is not None
    text = page.cc_target.text()
    real = str(tmp_path / "home" / ".claude" / "settings.json")
    assert real in text and "PATCHBAY_HOME moves only Patchbay's own files" in text
    assert real in page.cc_connect.toolTip()
    assert not Path(real).exists()  # said before anything was written
