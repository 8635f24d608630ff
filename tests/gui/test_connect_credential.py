"""The app's Connect says which credential Claude Code will send, and writes it: a subscription
login stays Claude Code's credential (the token goes into ANTHROPIC_CUSTOM_HEADERS, masked on
screen); "Use Patchbay's token" makes the token the credential for use without an account."""

from __future__ import annotations

import json

from tests.fakes.subscription import credentials_json


def test_connect_keeps_a_subscription_login_and_says_so(start_app, config_file, tmp_path, monkeypatch, qtbot):
    cc = tmp_path / "claude"
    cc.mkdir()
    (cc / ".credentials.json").write_text(json.dumps(credentials_json()))
    (cc / "settings.json").write_text('{"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue"}}\n')
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(cc))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    r = start_app(config_file)
    page = r.window.page("settings")
    token = r.bridge.settings.gateway_token()
    assert "your Claude subscription login" in page.cc_credential.text()
    page.cc_connect.click()
    env = json.loads((cc / "settings.json").read_text())["env"]
    assert "ANTHROPIC_AUTH_TOKEN" not in env and env["ANTHROPIC_BASE_URL"] == r.url
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == f"X-Team: blue\nx-patchbay-token: {token}"
    assert "Connected" in page.cc_state.text()
    assert token not in page.cc_env.text() and "x-patchbay-token" in page.cc_env.text()

    page.cc_use_token.setChecked(True)  # no Anthropic account wanted: Patchbay's token is the credential
    assert "Patchbay's token (no Anthropic account)" in page.cc_credential.text()
    page.cc_connect.click()
    env = json.loads((cc / "settings.json").read_text())["env"]
    assert env["ANTHROPIC_AUTH_TOKEN"] == token and "Connected" in page.cc_state.text()
    page.cc_disconnect.click()
    assert json.loads((cc / "settings.json").read_text()) == {"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue"}}
