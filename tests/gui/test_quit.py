"""Issue 26 item 1: Quit never silently breaks a connected Claude Code. It asks (keep serving in the
background / disconnect Claude Code / cancel); the background gateway answers the SDK on the same address
with the same token, and the next start of the app takes the port back."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import anthropic
import psutil
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.desktop import background as background_gateway
from tests.gui.conftest import wait_for, write_config


@pytest.fixture
def claude_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "claude"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(d))
    return d


def _answer(button_text: str, seen: list[str], remember: bool = False) -> None:
    """Click ``button_text`` in the question once it is on screen (it is modal: exec() waits)."""
    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(50, click)
            return
        seen.append(box.text() + "\n" + box.informativeText())
        if remember and box.checkBox() is not None:
            box.checkBox().setChecked(True)
        next(b for b in box.buttons() if b.text() == button_text).click()

    QTimer.singleShot(50, click)


def _env(claude_dir: Path) -> dict[str, Any]:
    if not (claude_dir / "settings.json").exists():  # Disconnect removes a file that Connect created
        return {}
    return json.loads((claude_dir / "settings.json").read_text(encoding="utf-8")).get("env", {})


def test_quit_while_connected_asks_and_disconnect_puts_claude_code_back(start_app, config_file, claude_dir,
                                                                       qtbot) -> None:
    r = start_app(config_file)
    r.app.ask_on_quit = None  # the real question
    assert r.bridge.settings.connect_claude_code()
    assert _env(claude_dir).get("ANTHROPIC_BASE_URL") == r.url
    seen: list[str] = []
    _answer("Cancel", seen)
    r.app.request_quit()
    assert seen and "Claude Code is connected" in seen[0] and "ECONNREFUSED" in seen[0]
    assert not r.app.quitting and r.bridge.running  # Cancel: nothing happened
    _answer("Disconnect Claude Code and quit", seen)
    r.app.request_quit()
    assert len(seen) == 2 and r.app.quitting and not r.bridge.running
    assert "ANTHROPIC_BASE_URL" not in _env(claude_dir)  # Claude Code talks to Anthropic again, not to nothing


def test_quit_without_claude_code_connected_asks_nothing(start_app, config_file, claude_dir, qtbot) -> None:
    r = start_app(config_file)
    r.app.ask_on_quit = lambda *_a: pytest.fail("asked although Claude Code is not connected")
    r.app.request_quit()
    assert r.app.quitting and not r.bridge.running


def test_keep_serving_in_the_background_answers_claude_code_until_the_app_takes_over(
        start_app, upstreams, claude_dir, patchbay_home, qtbot) -> None:
    with socket.socket() as s:  # a fixed port, as a user's config has: the next start serves where Claude Code goes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config_file = write_config(patchbay_home / "config.toml", upstreams[0].url, upstreams[1].url, port=port)
    r = start_app(config_file)
    r.app.ask_on_quit = None  # the real question
    assert r.bridge.settings.connect_claude_code()
    url, token = r.url, r.bridge.settings.gateway_token()
    seen: list[str] = []
    _answer("Keep serving in the background", seen, remember=True)
    r.app.request_quit()
    assert seen and r.app.quitting
    paths = r.bridge.engine.paths if r.bridge.engine else None
    pid = background_gateway.running_pid(paths)
    assert pid is not None
    try:
        assert _env(claude_dir).get("ANTHROPIC_BASE_URL") == url  # Claude Code left as it was, and it works:
        client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0, timeout=20.0)
        msg = client.messages.create(model="claude-fake", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        assert msg.content and msg.content[0].type == "text"
        # the next start ends the background gateway and serves again itself; the answer was remembered
        r2 = start_app(config_file)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert background_gateway.running_pid(paths) is None
        r2.app.ask_on_quit = lambda *_a: pytest.fail("asked again after “Don't ask again”")
        r2.app.request_quit()
        wait_for(qtbot, lambda: background_gateway.running_pid(paths) is not None, timeout=20)
    finally:
        background_gateway.stop(paths)
    assert background_gateway.running_pid(paths) is None
