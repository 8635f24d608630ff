"""How `patchbay claude` builds Claude Code's command line and environment (nothing is started here)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from app.claude import connect as claude_code
from app.paths import Paths


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "cfg", tmp_path / "data", tmp_path / "logs")
    p.ensure()
    return p


@pytest.fixture
def claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "bin" / "claude"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATCHBAY_CLAUDE_BIN", str(exe))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "home" / ".claude"))
    return exe


def test_the_pin_joins_the_users_own_headers(paths: Paths, claude: Path):
    argv, env = claude_code.claude_command(
        paths, "http://127.0.0.1:8787", "tok", ["-p", "hi", "--model", "sonnet"], backend="ollama",
        model="qwen3-coder:30b",
        environ={"PATH": "/bin", "ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue\nx-patchbay-pin: old,one"})
    assert argv[0] == str(claude) and argv[1] == "--settings" and argv[3:] == ["-p", "hi", "--model", "sonnet"]
    expected = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8787", "ANTHROPIC_AUTH_TOKEN": "tok",
                "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1",  # Claude Code's own hints feed [routes]
                "ENABLE_TOOL_SEARCH": "true",  # MCP tools load on demand (tool_reference is translated)
                "ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue\nx-patchbay-pin: ollama,qwen3-coder:30b\nx-patchbay-token: tok"}
    assert {k: env[k] for k in expected} == expected and env["PATH"] == "/bin"
    settings = Path(argv[2])
    assert json.loads(settings.read_text()) == {"env": expected}
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600  # it holds the gateway token
    assert "tok" not in " ".join(argv)  # never on the command line, where others can read it


def test_headers_from_settings_json_are_the_ones_kept(paths: Paths, claude: Path, tmp_path: Path):
    """Claude Code's settings.json env wins over the environment, so its headers are the user's."""
    cfg = tmp_path / "home" / ".claude"
    cfg.mkdir(parents=True)
    (cfg / "settings.json").write_text('{"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-From-Settings: 1"}}')
    _argv, env = claude_code.claude_command(paths, "http://u", "t", [], backend="a",
                                            environ={"ANTHROPIC_CUSTOM_HEADERS": "X-From-Env: 1"})
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "X-From-Settings: 1\nx-patchbay-pin: a\nx-patchbay-token: t"


def test_without_an_anthropic_login_the_token_is_also_the_credential(paths: Paths, claude: Path):
    argv, env = claude_code.claude_command(paths, "http://u", "t", ["--resume"], environ={})
    assert json.loads(Path(argv[2]).read_text()) == {"env": {"ANTHROPIC_BASE_URL": "http://u",
                                                             "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1",
                                                             "ANTHROPIC_AUTH_TOKEN": "t",
                                                             "ANTHROPIC_CUSTOM_HEADERS": "x-patchbay-token: t",
                                                             "ENABLE_TOOL_SEARCH": "true"}}


@pytest.mark.parametrize("login", ["credentials file", "api key", "oauth env"])
def test_a_users_own_login_is_left_in_place(paths: Paths, claude: Path, tmp_path: Path, login: str):
    """A subscription login or an API key stays Claude Code's credential: no ANTHROPIC_AUTH_TOKEN,
    and one left by an older `eval "$(patchbay env)"` is taken out of the child's environment."""
    environ = {"ANTHROPIC_AUTH_TOKEN": "t"}
    if login == "credentials file":
        cfg = tmp_path / "home" / ".claude"
        cfg.mkdir(parents=True)
        (cfg / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "sk-ant-oat01-x"}}')
    elif login == "api key":
        environ["ANTHROPIC_API_KEY"] = "sk-ant-api03-mine"
    else:
        environ["CLAUDE_CODE_OAUTH_TOKEN"] = "sk-ant-oat01-y"
    argv, env = claude_code.claude_command(paths, "http://u", "t", [], environ=environ)
    assert "ANTHROPIC_AUTH_TOKEN" not in env and env["ANTHROPIC_CUSTOM_HEADERS"] == "x-patchbay-token: t"
    assert "ANTHROPIC_AUTH_TOKEN" not in json.loads(Path(argv[2]).read_text())["env"]
    _argv, env = claude_code.claude_command(paths, "http://u", "t", [], environ=environ, choice="token")
    assert env["ANTHROPIC_AUTH_TOKEN"] == "t"  # the user's choice wins


def test_a_token_an_older_connect_left_in_settings_json_is_outranked(paths: Paths, claude: Path, tmp_path: Path):
    """settings.json's env beats the process's; the --settings file beats settings.json, and an empty
    ANTHROPIC_AUTH_TOKEN there lets Claude Code's own login through."""
    cfg = tmp_path / "home" / ".claude"
    cfg.mkdir(parents=True)
    (cfg / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "sk-ant-oat01-x"}}')
    (cfg / "settings.json").write_text('{"env": {"ANTHROPIC_AUTH_TOKEN": "t"}}')
    argv, env = claude_code.claude_command(paths, "http://u", "t", [], environ={})
    assert json.loads(Path(argv[2]).read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == "" == env["ANTHROPIC_AUTH_TOKEN"]


def test_a_users_own_tool_search_setting_is_kept(paths: Paths, claude: Path):
    argv, env = claude_code.claude_command(paths, "http://u", "t", [], environ={"ENABLE_TOOL_SEARCH": "false"})
    assert env["ENABLE_TOOL_SEARCH"] == "false" and "ENABLE_TOOL_SEARCH" not in Path(argv[2]).read_text()


def test_our_options_stop_at_the_first_argument_for_claude():
    from app.cli.claude import parse_claude

    ns = parse_claude(["--backend", "o", "--model=m1", "-p", "hi", "--model", "opus"])
    assert (ns.backend, ns.model, ns.claude_args) == ("o", "m1", ["-p", "hi", "--model", "opus"])
    ns = parse_claude(["--", "--backend", "x"])
    assert ns.backend is None and ns.claude_args == ["--backend", "x"]


@pytest.mark.parametrize("backend, model, words", [(None, "m", "--model needs --backend"),
                                                    ("a,b", None, "not a backend id")])
def test_a_bad_pin_is_a_sentence(backend, model, words):
    with pytest.raises(claude_code.LaunchError, match=words):
        claude_code.pin_value(backend, model)
