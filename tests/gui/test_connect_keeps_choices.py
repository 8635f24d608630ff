"""Issue 26 item 5: `patchbay connect` from a terminal does not undo what was chosen in the app (it used
to remove "turn off non-essential traffic", turning Claude Code's telemetry back on). settings.json is the
one source of truth: a plain connect keeps the options set there and says so; a flag changes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.__main__ import main as cli


@pytest.fixture
def claude_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "claude"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(d))
    return d


def _settings(claude_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((claude_dir / "settings.json").read_text(encoding="utf-8"))


def test_a_terminal_connect_keeps_the_apps_choices(start_app, config_file, claude_dir, qtbot, capsys) -> None:
    r = start_app(config_file)
    r.window.show_page("settings")
    page = r.window.page("settings")
    page.cc_nonessential.setChecked(True)
    page.cc_statusline.setChecked(True)
    page.connect_claude()
    before = _settings(claude_dir)
    assert before["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and "statusLine" in before

    assert cli(["connect", "--config", str(config_file)]) == 0  # what a user types in a terminal
    out = capsys.readouterr().out
    after = _settings(claude_dir)
    assert after["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"  # telemetry stays off
    assert after["statusLine"] == before["statusLine"]
    assert after["env"]["ANTHROPIC_BASE_URL"] == r.url
    assert "kept what was chosen before" in out and "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1" in out

    assert cli(["connect", "--allow-nonessential-traffic", "--config", str(config_file)]) == 0  # said, not assumed
    assert "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" not in _settings(claude_dir)["env"]
