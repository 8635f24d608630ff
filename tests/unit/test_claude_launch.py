"""How `patchbay claude` builds Claude Code's command line and environment (nothing is started here)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from app.paths import Paths
from app.services import claude_code


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
                "ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue\nx-patchbay-pin: ollama,qwen3-coder:30b"}
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
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "X-From-Settings: 1\nx-patchbay-pin: a"


def test_no_pin_and_no_headers_leaves_the_variable_out(paths: Paths, claude: Path):
    argv, env = claude_code.claude_command(paths, "http://u", "t", ["--resume"], environ={})
    assert "ANTHROPIC_CUSTOM_HEADERS" not in env
    assert json.loads(Path(argv[2]).read_text()) == {"env": {"ANTHROPIC_BASE_URL": "http://u",
                                                             "ANTHROPIC_AUTH_TOKEN": "t",
                                                             "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1",
                                                             "ENABLE_TOOL_SEARCH": "true"}}


def test_a_users_own_tool_search_setting_is_kept(paths: Paths, claude: Path):
    argv, env = claude_code.claude_command(paths, "http://u", "t", [], environ={"ENABLE_TOOL_SEARCH": "false"})
    assert env["ENABLE_TOOL_SEARCH"] == "false" and "ENABLE_TOOL_SEARCH" not in Path(argv[2]).read_text()


def test_our_options_stop_at_the_first_argument_for_claude():
    from app.services.claude_cli import parse_claude

    ns = parse_claude(["--backend", "o", "--model=m1", "-p", "hi", "--model", "opus"])
    assert (ns.backend, ns.model, ns.claude_args) == ("o", "m1", ["-p", "hi", "--model", "opus"])
    ns = parse_claude(["--", "--backend", "x"])
    assert ns.backend is None and ns.claude_args == ["--backend", "x"]


@pytest.mark.parametrize("backend, model, words", [(None, "m", "--model needs --backend"),
                                                    ("a,b", None, "not a backend id")])
def test_a_bad_pin_is_a_sentence(backend, model, words):
    with pytest.raises(claude_code.LaunchError, match=words):
        claude_code.pin_value(backend, model)
