"""Connect leaves the user's own Anthropic credential in place: the gateway token goes into
ANTHROPIC_CUSTOM_HEADERS (merged with the user's headers), ANTHROPIC_AUTH_TOKEN only for a user
without a login or key; Disconnect takes out exactly our line (app/claude/auth.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.claude import auth as ca
from app.claude import connect as claude_code
from app.paths import Paths

URL = "http://127.0.0.1:8787"
TOKEN = "pb-token-0123456789"
LOGIN = '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-abc", "refreshToken": "r", "expiresAt": 1}}'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    (h / ".claude").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return h


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "cfg", tmp_path / "data", tmp_path / "logs")
    p.ensure()
    return p


def _env(home: Path) -> dict[str, str]:
    env: dict[str, str] = json.loads((home / ".claude" / "settings.json").read_text())["env"]
    return env


def test_a_subscription_user_keeps_the_login_and_the_token_joins_their_headers(home: Path, paths: Paths) -> None:
    (home / ".claude" / ".credentials.json").write_text(LOGIN)
    settings = home / ".claude" / "settings.json"
    before = '{\n  "env": {\n    "ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue"\n  },\n  "theme": "dark"\n}\n'
    settings.write_text(before)
    assert claude_code.credential(TOKEN).kind == "subscription"
    claude_code.connect(paths, URL, TOKEN)
    env = _env(home)
    assert "ANTHROPIC_AUTH_TOKEN" not in env and env["ANTHROPIC_BASE_URL"] == URL
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == f"X-Team: blue\nx-patchbay-token: {TOKEN}"
    assert claude_code.status(paths, URL, TOKEN).connected
    claude_code.disconnect(paths, URL)
    assert settings.read_text() == before  # exactly what connect changed, undone


def test_without_any_anthropic_credential_the_token_is_also_the_credential(home: Path, paths: Paths) -> None:
    assert claude_code.credential(TOKEN).kind == "none"
    claude_code.connect(paths, URL, TOKEN)
    env = _env(home)
    assert env["ANTHROPIC_AUTH_TOKEN"] == TOKEN and env["ANTHROPIC_CUSTOM_HEADERS"] == f"x-patchbay-token: {TOKEN}"
    claude_code.connect(paths, URL, TOKEN, choice="own")  # the user's choice: their own login
    assert "ANTHROPIC_AUTH_TOKEN" not in _env(home)
    claude_code.disconnect(paths, URL)
    assert not (home / ".claude" / "settings.json").exists()  # Patchbay had created it


def test_disconnect_takes_out_only_our_line_from_headers_edited_since(home: Path, paths: Paths) -> None:
    (home / ".claude" / ".credentials.json").write_text(LOGIN)
    settings = home / ".claude" / "settings.json"
    settings.write_text('{"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue"}}')
    claude_code.connect(paths, URL, TOKEN)
    data = json.loads(settings.read_text())
    data["env"]["ANTHROPIC_CUSTOM_HEADERS"] += "\nX-Added-Later: 1"
    settings.write_text(json.dumps(data, indent=2))
    result = claude_code.disconnect(paths, URL)
    env = _env(home)
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "X-Team: blue\nX-Added-Later: 1", result.summary()
    assert "ANTHROPIC_BASE_URL" not in env and "ANTHROPIC_CUSTOM_HEADERS" not in result.kept


def test_a_reconnect_after_an_older_connect_gives_the_login_back(home: Path, paths: Paths) -> None:
    """Connected before this change (ANTHROPIC_AUTH_TOKEN = the token), then logged in: Connect
    takes the token out of ANTHROPIC_AUTH_TOKEN, which Disconnect had nothing else to do with."""
    claude_code.connect(paths, URL, TOKEN)  # no login yet: the token is the credential
    assert _env(home)["ANTHROPIC_AUTH_TOKEN"] == TOKEN
    (home / ".claude" / ".credentials.json").write_text(LOGIN)
    assert claude_code.credential(TOKEN).kind == "subscription"  # our own token is not the user's
    claude_code.connect(paths, URL, TOKEN)
    assert "ANTHROPIC_AUTH_TOKEN" not in _env(home)


@pytest.mark.parametrize("env, settings, kind", [
    ({"ANTHROPIC_API_KEY": "sk-ant-api03-x"}, {}, "api_key"),
    ({}, {"env": {"ANTHROPIC_API_KEY": "sk-ant-api03-x"}}, "api_key"),
    ({}, {"apiKeyHelper": "vault read key"}, "helper"),
    ({"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-x"}, {}, "subscription"),
    ({"ANTHROPIC_AUTH_TOKEN": TOKEN}, {"env": {"ANTHROPIC_AUTH_TOKEN": TOKEN}}, "none"),
    ({}, {}, "none"),
])
def test_what_detect_sees(home: Path, env: dict[str, str], settings: dict[str, object], kind: str) -> None:
    cred = ca.detect(env, home, settings, own_token=TOKEN)
    assert cred.kind == kind
    text = ca.describe("auto", cred)
    assert ("Patchbay's token (no Anthropic account)" in text) == (kind == "none")
    assert "sk-ant" not in text and "vault" not in text  # never the credential itself


def test_a_connection_made_the_old_way_is_called_out_of_date(home: Path, paths: Paths) -> None:
    """The token as ANTHROPIC_AUTH_TOKEN alone (an older Patchbay's Connect) hides a login: the app
    and `patchbay connect` say to connect again, which moves the token into its header."""
    settings = home / ".claude" / "settings.json"
    settings.write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": URL, "ANTHROPIC_AUTH_TOKEN": TOKEN}}))
    st = claude_code.status(paths, URL, TOKEN)
    assert st.state == "outdated" and "old way" in st.message
    (home / ".claude" / ".credentials.json").write_text(LOGIN)
    claude_code.connect(paths, URL, TOKEN)
    assert "ANTHROPIC_AUTH_TOKEN" not in _env(home) and claude_code.status(paths, URL, TOKEN).connected


def test_what_connect_writes_is_the_header_the_gateway_reads() -> None:
    from app.proxy.access import TOKEN_HEADER

    assert ca.TOKEN_HEADER == TOKEN_HEADER
