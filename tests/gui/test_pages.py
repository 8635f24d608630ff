"""Backends, Requests and Settings pages; keyboard navigation; closing and quitting."""

from __future__ import annotations

import json

import anthropic
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QMessageBox

from app.config.disk import load_config
from tests.fakes.upstreams import openai_error
from tests.gui.conftest import ask, send_in_thread, wait_for

# --------------------------------------------------------------------------- backends


def test_backend_test_button_shows_time_to_first_token(start_app, config_file, qtbot):
    r = start_app(config_file)
    page = r.window.page("backends")
    r.window.show_page("backends")
    page.list.setCurrentRow(1)  # beta
    assert page.id_edit.text() == "beta"
    page.test_button.click()
    wait_for(qtbot, lambda: page.test_button.isEnabled())
    assert "✓ Works" in page.test_result.text() and "first token after" in page.test_result.text()


def test_backend_test_button_shows_the_upstreams_exact_error(start_app, config_file, upstreams, qtbot):
    _, beta = upstreams
    beta.enqueue(openai_error(401, "Incorrect API key provided: sk-wr***ng.", "invalid_request_error"))
    r = start_app(config_file)
    page = r.window.page("backends")
    page.list.setCurrentRow(1)
    page.test_button.click()
    wait_for(qtbot, lambda: page.test_button.isEnabled())
    assert "✗ Failed" in page.test_result.text()
    assert "Incorrect API key provided: sk-wr***ng." in page.test_result.text()


def test_fetch_models_fills_the_list_from_the_backend(start_app, config_file, qtbot):
    r = start_app(config_file)
    page = r.window.page("backends")
    page.list.setCurrentRow(1)
    page.fetch_button.click()
    wait_for(qtbot, lambda: "gpt-listed" in page.models_edit.toPlainText())
    assert page.models_edit.toPlainText().splitlines() == ["gpt-fake", "gpt-other", "gpt-listed"]
    assert "3 models" in page.fetch_state.text()
    assert page.dirty  # fetched, not saved until the user says so


def test_add_edit_reorder_remove_backends_and_store_a_key(start_app, config_file, qtbot, memory_keyring,
                                                          monkeypatch):
    r = start_app(config_file)
    page = r.window.page("backends")
    template = next(a for a in page.add_button.menu().actions() if a.text() == "DeepSeek")
    template.trigger()
    assert page.id_edit.text() == "deepseek" and page.list.count() == 3
    page.url_edit.setText("https://api.deepseek.example/v1")
    page.url_edit.textEdited.emit(page.url_edit.text())
    assert page.key_edit.echoMode() == QLineEdit.EchoMode.Password
    page.key_edit.setText("sk-deepseek-secret")
    assert page.save()
    cfg = load_config(config_file)
    assert [b.id for b in cfg.backends] == ["alpha", "beta", "deepseek"]
    assert cfg.backend("deepseek").base_url == "https://api.deepseek.example/v1"
    assert cfg.backend("deepseek").auth == "keyring"
    assert "sk-deepseek-secret" not in config_file.read_text()
    assert memory_keyring.store[("patchbay", "backend:deepseek")] == "sk-deepseek-secret"
    assert r.app.tray.backend_actions.keys() == {"alpha", "beta", "deepseek"}  # the tray follows

    page.list.setCurrentRow(2)
    page.up_button.click()
    page.up_button.click()
    assert page.save()
    assert [b.id for b in load_config(config_file).backends] == ["deepseek", "alpha", "beta"]
    assert [r.window.backend_combo.itemData(i) for i in range(3)] == ["deepseek", "alpha", "beta"]

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    page.list.setCurrentRow(0)
    page.remove_button.click()
    assert page.save()
    assert [b.id for b in load_config(config_file).backends] == ["alpha", "beta"]


def test_cloud_and_command_backends_show_their_own_fields_and_save(start_app, config_file, qtbot):
    r = start_app(config_file)
    page = r.window.page("backends")
    r.window.show_page("backends")

    def add(label: str) -> None:
        next(a for a in page.add_button.menu().actions() if a.text() == label).trigger()

    add("AWS Bedrock")
    assert page.kind_combo.currentData() == "bedrock" and page.auth_combo.currentData() == "aws"
    assert page.region_edit.isVisibleTo(page) and page.profile_edit.isVisibleTo(page)
    assert not page.project_edit.isVisibleTo(page) and not page.command_edit.isVisibleTo(page)
    assert page.url_edit.text() == "" and "bedrock-runtime.us-east-1" in page.url_edit.placeholderText()
    client = page.auth_combo.findData("client")
    assert not page.auth_combo.model().item(client).isEnabled()  # a cloud kind signs for itself
    page.region_edit.setText("eu-central-1")
    page.region_edit.textEdited.emit("eu-central-1")
    assert "bedrock-runtime.eu-central-1" in page.url_edit.placeholderText()
    page.profile_edit.setText("work")
    page.profile_edit.textEdited.emit("work")

    add("Google Vertex AI")
    assert page.project_edit.isVisibleTo(page) and not page.profile_edit.isVisibleTo(page)
    assert not page.fetch_button.isEnabled() and "type the ids" in page.fetch_state.text()
    page.project_edit.setText("my-proj-1")
    page.project_edit.textEdited.emit("my-proj-1")
    page.region_edit.setText("global")
    page.region_edit.textEdited.emit("global")

    add("Company gateway (token command)")
    assert page.command_edit.isVisibleTo(page) and page.ttl_spin.isVisibleTo(page)
    assert page.command_edit.text() == "gcloud auth print-identity-token"
    page.url_edit.setText("https://llm.example.com")
    page.url_edit.textEdited.emit("https://llm.example.com")
    page.ttl_spin.setValue(120)
    assert page.save()

    cfg = load_config(config_file)
    aws, gcp, company = cfg.backend("bedrock"), cfg.backend("vertex"), cfg.backend("company")
    assert (aws.kind, aws.region, aws.profile, aws.auth) == ("bedrock", "eu-central-1", "work", "aws")
    assert aws.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert (gcp.project, gcp.region, gcp.base_url) == ("my-proj-1", "global", "https://aiplatform.googleapis.com")
    assert company.auth == "command:gcloud auth print-identity-token" and company.token_ttl_s == 120
    assert "amazonaws.com" not in config_file.read_text()  # derived from the region, not written


def test_a_vertex_backend_without_a_project_is_not_saved(start_app, config_file, qtbot, monkeypatch):
    r = start_app(config_file)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, title, text: shown.append(text))
    page = r.window.page("backends")
    next(a for a in page.add_button.menu().actions() if a.text() == "Google Vertex AI").trigger()
    assert not page.save()
    assert "project id" in shown[0]
    assert load_config(config_file).backend("vertex") is None


def test_renaming_the_active_backend_keeps_it_active(start_app, config_file, qtbot):
    r = start_app(config_file)
    page = r.window.page("backends")
    page.list.setCurrentRow(0)
    page.id_edit.setText("alpha2")
    page.id_edit.textEdited.emit("alpha2")
    assert page.save()
    assert load_config(config_file).active.backend == "alpha2"
    assert r.bridge.backends.active()[0] == "alpha2"


def test_an_invalid_backend_is_not_saved(start_app, config_file, qtbot, monkeypatch):
    r = start_app(config_file)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, title, text: shown.append(text))
    page = r.window.page("backends")
    page.list.setCurrentRow(1)
    page.url_edit.setText("not a url")
    page.url_edit.textEdited.emit("not a url")
    assert not page.save()
    assert "http://" in shown[0]
    assert load_config(config_file).backend("beta").base_url.startswith("http://127.0.0.1")


# --------------------------------------------------------------------------- requests


def test_requests_page_lists_filters_sorts_and_opens_details(start_app, config_file, upstreams, qtbot):
    r = start_app(config_file)
    ask(r, qtbot, "one", session="s-one")
    ask(r, qtbot, "two", session="s-two")
    r.app.tray.backend_actions["beta"].trigger()
    ask(r, qtbot, "three", session="s-two")
    page = r.window.page("requests")
    r.window.show_page("requests")
    wait_for(qtbot, lambda: page.model.rowCount() == 3 and not any(x.in_flight for x in page.model.rows()))
    assert page.proxy.rowCount() == 3
    page.backend_filter.setCurrentIndex(page.backend_filter.findText("beta"))
    assert page.proxy.rowCount() == 1
    page.backend_filter.setCurrentIndex(0)
    page.search.setText("s-one")
    assert page.proxy.rowCount() == 1
    page.search.clear()
    page.view.sortByColumn(2, Qt.SortOrder.AscendingOrder)  # backend
    assert [page.proxy.index(i, 2).data() for i in range(3)] == ["alpha", "alpha", "beta"]
    assert page.count.text() == "3 requests"

    page.view.activated.emit(page.proxy.index(2, 0))  # Enter on the beta row
    wait_for(qtbot, lambda: page._dialogs and page._dialogs[-1].isVisible())
    dlg = page._dialogs[-1]
    assert "Request " in dlg.windowTitle()
    labels = [w.text() for w in dlg.findChildren(type(page.count))]
    assert "beta" in labels and "s-two" in labels
    dlg.close()


def test_requests_page_picks_up_new_requests_live(start_app, config_file, qtbot):
    r = start_app(config_file)
    page = r.window.page("requests")
    r.window.show_page("requests")
    ask(r, qtbot, "live")
    wait_for(qtbot, lambda: page.model.rowCount() == 1 and page.model.row(0).status == 200)


# --------------------------------------------------------------------------- settings


def test_token_reveal_copy_and_regenerate(start_app, config_file, qtbot, monkeypatch, qapp):
    r = start_app(config_file)
    page = r.window.page("settings")
    old = r.bridge.settings.gateway_token()
    assert page.token.echoMode() == QLineEdit.EchoMode.Password and page.token.text() == old
    page.reveal.click()
    assert page.token.echoMode() == QLineEdit.EchoMode.Normal
    page.copy.click()
    assert qapp.clipboard().text() == old
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    page.regen.click()
    new = page.token.text()
    assert new and new != old and r.bridge.settings.gateway_token() == new
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=r.url, api_key=old, max_retries=0).messages.create(
            model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    ask(r, qtbot, "with the new token")


def test_budgets_capture_and_start_at_login_are_saved(start_app, config_file, patchbay_home, qtbot, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    r = start_app(config_file)
    page = r.window.page("settings")
    page._add_budget_row(None)
    t = page.budget_table
    t.cellWidget(0, 2).setValue(12.5)
    t.cellWidget(0, 1).setCurrentIndex(t.cellWidget(0, 1).findData("week"))
    page.budget_save.click()
    cfg = load_config(config_file)
    assert [(b.scope, b.period, b.limit_usd, b.warn_at, b.action) for b in cfg.budgets] == [
        ("all", "week", 12.5, 0.8, "block")]
    page.capture.setCurrentIndex(page.capture.findData("errors"))
    assert load_config(config_file).ledger.capture == "errors"
    page.login.setChecked(True)
    entry = tmp_path / "xdg" / "autostart" / "patchbay.desktop"
    assert entry.exists() and f"-m app --config {config_file}" in entry.read_text()
    page.login.setChecked(False)
    assert not entry.exists()


def test_port_change_restarts_the_gateway_on_the_new_port(start_app, config_file, qtbot):
    import socket

    r = start_app(config_file)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    page = r.window.page("settings")
    page.port.setValue(port)
    page.port_apply.click()
    assert r.bridge.running and r.url.endswith(f":{port}")
    assert load_config(config_file).gateway.port == port
    ask(r, qtbot, "on the new port")
    wait_for(qtbot, lambda: any(s.requests for s in r.bridge.live.sessions()))


def test_connect_claude_code_merges_into_its_settings(start_app, config_file, tmp_path, monkeypatch, qtbot):
    cc = tmp_path / "claude"
    cc.mkdir()
    original = json.dumps({"hooks": {"Stop": []}, "env": {"FOO": "1"}}, indent=4) + "\n"
    (cc / "settings.json").write_text(original)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(cc))
    r = start_app(config_file)
    page = r.window.page("settings")
    tray = r.app.tray
    assert "Not connected" in page.cc_state.text() and not page.cc_disconnect.isEnabled()
    assert tray.cc_status_action.text() == "Claude Code: not connected"
    page.cc_nonessential.setChecked(True)
    page.cc_alias["haiku"].setCurrentIndex(page.cc_alias["haiku"].findData("beta,gpt-other"))
    page.cc_connect.click()
    data = json.loads((cc / "settings.json").read_text())
    assert data["hooks"] == {"Stop": []} and data["env"]["FOO"] == "1"
    assert data["env"]["ANTHROPIC_BASE_URL"] == r.url
    assert data["env"]["ANTHROPIC_AUTH_TOKEN"] == r.bridge.settings.gateway_token()
    assert data["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert data["env"]["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "beta,gpt-other"
    assert "Connected" in page.cc_state.text() and page.cc_disconnect.isEnabled()
    assert r.bridge.settings.gateway_token() not in page.cc_env.text()  # the token is masked on screen
    assert tray.cc_action.text() == "Disconnect Claude Code"

    # another tool points Claude Code elsewhere: the page and the tray notice without a click
    text = (cc / "settings.json").read_text().replace(r.url, "http://127.0.0.1:1")
    (cc / "settings.json").write_text(text)
    wait_for(qtbot, lambda: "Changed by something else" in page.cc_state.text())
    assert "http://127.0.0.1:1" in page.cc_state.text()
    assert tray.cc_status_action.text() == "Claude Code: changed by something else"
    assert tray.cc_action.text() == "Connect Claude Code again"

    tray.cc_action.trigger()  # connect again from the tray, keeping the alias and the option
    data = json.loads((cc / "settings.json").read_text())
    assert data["env"]["ANTHROPIC_BASE_URL"] == r.url and data["env"]["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "beta,gpt-other"
    wait_for(qtbot, lambda: "✓ Connected" in page.cc_state.text())

    page.cc_disconnect.click()
    # the token goes (it was absent before Patchbay); the address goes back to the other tool's,
    # which it held before this last Connect
    data = json.loads((cc / "settings.json").read_text())
    assert data == {"hooks": {"Stop": []}, "env": {"FOO": "1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}}
    assert (cc / "settings.json").read_text() == original.replace(
        '"FOO": "1"', '"FOO": "1",\n        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"')
    wait_for(qtbot, lambda: "Points at another gateway" in page.cc_state.text())
    assert tray.cc_status_action.text() == "Claude Code: points at another gateway"
    assert tray.cc_action.text() == "Connect Claude Code"


def test_a_broken_claude_settings_file_is_named_and_left_alone(start_app, config_file, tmp_path, monkeypatch):
    cc = tmp_path / "claude"
    cc.mkdir()
    (cc / "settings.json").write_text('{\n  "env": {},  // mine\n}\n')
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(cc))
    r = start_app(config_file)
    page = r.window.page("settings")
    assert "cannot be read" in page.cc_state.text() and "line 2, column 15" in page.cc_state.text()
    assert not page.cc_connect.isEnabled() and not r.app.tray.cc_action.isEnabled()
    assert (cc / "settings.json").read_text() == '{\n  "env": {},  // mine\n}\n'


# --------------------------------------------------------------------------- window


def test_ctrl_number_switches_pages(start_app, config_file, qtbot):
    r = start_app(config_file)
    w = r.window
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    for n, key in enumerate(["dashboard", "backends", "spend", "requests", "monitor", "settings"], 1):
        qtbot.keyClick(w, getattr(Qt.Key, f"Key_{n}"), Qt.KeyboardModifier.ControlModifier)
        assert w.current_page() == key
        assert w.nav.currentRow() == n - 1


def test_pause_from_the_toolbar_refuses_requests_until_resumed(start_app, config_file, qtbot):
    r = start_app(config_file)
    r.window.pause_action.trigger()
    assert r.bridge.paused() and r.app.tray.pause_action.isChecked()
    for n in (1, 2):
        with pytest.raises(anthropic.APIStatusError) as err:
            ask(r, qtbot, "while paused", stream=False, session="s-paused")
        assert err.value.status_code == 503 and "paused" in err.value.message
        wait_for(qtbot, lambda n=n: r.bridge.live.refused_while_paused == n)
    assert "2 requests refused" in r.window.state_label.text()  # counted in the window
    retrying = anthropic.Anthropic(base_url=r.url, api_key=r.bridge.settings.gateway_token(), max_retries=3)
    with pytest.raises(anthropic.APIStatusError):  # the official SDK honours x-should-retry: one try, no retries
        send_in_thread(qtbot, lambda: retrying.messages.create(model="claude-fake", max_tokens=8,
                                                               messages=[{"role": "user", "content": "hi"}]))
    qtbot.wait(300)
    assert r.bridge.live.refused_while_paused == 3
    wait_for(qtbot, lambda: (s := r.bridge.live.session("s-paused")) is not None and s.errors == 2)
    assert "3 requests refused" in r.window.state_label.text()
    r.app.tray.pause_action.trigger()
    assert not r.bridge.paused()
    assert "refused" not in r.window.state_label.text()
    ask(r, qtbot, "resumed")
    r.window.pause_action.trigger()  # a new pause counts from zero
    wait_for(qtbot, lambda: r.bridge.live.refused_while_paused == 0)


def test_closing_the_window_keeps_the_app_in_the_tray_and_quit_stops_the_gateway(qtbot, qasync_loop, config_file):
    from app.gui import App

    app = App(config_file, use_system_tray=True)
    qtbot.addWidget(app.window)
    assert app.start()
    app.show_window()
    app.window.close()
    assert not app.window.isVisible()
    assert app.bridge.running  # still serving from the tray
    app.tray.open_action.trigger()
    assert app.window.isVisible()
    app.tray.quit_action.trigger()
    assert not app.bridge.running and app.bridge.engine.runtime.running is False


def test_without_a_tray_closing_the_window_quits(start_app, config_file, qtbot):
    r = start_app(config_file)
    r.window.close()
    assert not r.bridge.running


def test_request_details_show_bodies_when_capture_is_on(start_app, config_file, qtbot):
    r = start_app(config_file)
    settings = r.window.page("settings")
    settings.capture.setCurrentIndex(settings.capture.findData("all"))
    ask(r, qtbot, "keep my body", session="cap")
    page = r.window.page("requests")
    r.window.show_page("requests")
    page.reload()
    wait_for(qtbot, lambda: page.model.rowCount() == 1 and page.model.row(0).status == 200)

    def opened() -> bool:
        page._dialogs.clear()
        page.view.activated.emit(page.proxy.index(0, 0))
        qtbot.waitUntil(lambda: bool(page._dialogs), timeout=3000)
        from PySide6.QtWidgets import QPlainTextEdit

        bodies = [e.toPlainText() for e in page._dialogs[-1].findChildren(QPlainTextEdit)]
        page._dialogs[-1].close()
        return any("keep my body" in b for b in bodies)

    wait_for(qtbot, opened)  # the ledger writes the captured body a moment after the request


def test_the_backends_page_says_which_models_have_no_known_output_limit(start_app, config_file, qtbot):
    r = start_app(config_file)
    page = r.window.page("backends")
    page.list.setCurrentRow(1)  # beta: gpt-fake, gpt-other
    assert page.max_tokens.value() == 0
    assert not page.limit_note.isHidden()
    assert "No known output limit for gpt-fake, gpt-other" in page.limit_note.text()
    page.models_edit.setPlainText("deepseek-chat\nmystery-model")
    assert "for mystery-model:" in page.limit_note.text() and "deepseek-chat" not in page.limit_note.text()
    page.max_tokens.setValue(8192)  # the user's own limit applies to every model
    assert page.limit_note.isHidden() and page.limit_note.text() == ""


def test_disconnect_after_claude_code_rewrote_its_settings_offers_to_remove_the_model(
        start_app, config_file, tmp_path, monkeypatch, qtbot):
    cc = tmp_path / "claude"
    cc.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(cc))
    r = start_app(config_file)
    page = r.window.page("settings")
    page.cc_connect.click()
    assert (cc / "settings.json").exists()
    # /model beta,gpt-fake: Claude Code saves it and rewrites the whole file, two-space indented
    data = json.loads((cc / "settings.json").read_text())
    data["model"] = "beta,gpt-fake"
    (cc / "settings.json").write_text(json.dumps(data, indent=2))
    page.cc_disconnect.click()
    assert json.loads((cc / "settings.json").read_text()) == {"model": "beta,gpt-fake"}
    msg = next(m for m in r.window.messages() if m.title == "Claude Code disconnected")
    assert 'holds settings Patchbay did not write: "model"' in msg.text and msg.action == "remove_model"
    assert "back to what it held before" not in msg.text
    from PySide6.QtWidgets import QPushButton

    button = next(b for b in r.window.banner.findChildren(QPushButton) if b.text() == "Remove that model setting")
    button.click()
    assert not (cc / "settings.json").exists() or json.loads((cc / "settings.json").read_text()) == {}
    assert any(m.title == "Claude Code's model setting removed" for m in r.window.messages())
