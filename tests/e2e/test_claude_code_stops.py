"""The real Claude Code CLI stops within seconds, with Patchbay's sentence, when no retry can help
(app/proxy/stops.py, docs/protocol.md "Errors that stop Claude Code"):

- the key stored for a backend is refused by its provider (a fake DeepSeek that checks the key and
  refuses it in DeepSeek's words);
- the backend does not answer at all (Ollama not started: a closed port).

Each case runs with both credential sources Patchbay sets up: ``ANTHROPIC_AUTH_TOKEN`` (``patchbay
connect`` / ``env`` / ``claude``) and an ``apiKeyHelper`` (what ``patchbay team join`` writes), with
Claude Code's own retry count (10), not the harness's 1. Before, the first took 11 tries and about
three minutes, the second likewise.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import GATEWAY_TOKEN, REPO
from tests.fakes import FakeUpstream
from tests.fakes.keys import KeyCheck

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult, GatewayProcess

pytestmark = pytest.mark.e2e

WRONG = "sk-deepseek-wrong-0123456789abcdef"
GOOD = "sk-deepseek-good-0123456789abcdef"
STOP_WITHIN_S = 20.0  # one try and Claude Code's start-up; retrying would take ~3 minutes
CLAUDE_RETRIES = {"CLAUDE_CODE_MAX_RETRIES": "10"}  # Claude Code's default, not the harness's 1


def _claude(run_claude: Callable[..., ClaudeResult], gw: GatewayProcess, workdir: Path, source: str) -> ClaudeResult:
    if source == "helper":  # the credential from an apiKeyHelper, as `patchbay team join` sets it up
        settings = workdir.parent / "claude-home" / ".claude" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"apiKeyHelper": f"echo {GATEWAY_TOKEN}"}))
    return run_claude("say hi", base_url=gw.url, cwd=workdir, token=GATEWAY_TOKEN if source == "token" else None,
                      timeout_s=STOP_WITHIN_S + 10, extra_env=CLAUDE_RETRIES, args=("--output-format", "json"))


def _shown(result: ClaudeResult) -> str:
    """What Claude Code shows the user: the result's text (the JSON output's ``result``)."""
    return str(result.json.get("result", ""))


@pytest.mark.parametrize("source", ["token", "helper"])
def test_a_refused_backend_key_stops_claude_code_with_the_fix(start_gateway, run_claude, workdir, tmp_path,
                                                              source):
    keyring_file = tmp_path / "keyring.json"
    keyring_file.write_text(json.dumps({"patchbay/backend:deepseek": WRONG}))
    check = KeyCheck("deepseek", GOOD)
    with FakeUpstream(wire="openai", models=("deepseek-chat",), guard=check) as up:
        gw = start_gateway("openai", up.url + "/v1", model="deepseek-chat", backend_id="deepseek", auth="keyring",
                           extra_env={"PYTHON_KEYRING_BACKEND": "tests.fakes.keyring_backend.FileKeyring",
                                      "PB_TEST_KEYRING_FILE": str(keyring_file), "PYTHONPATH": str(REPO)})
        result = _claude(run_claude, gw, workdir, source)
    shown = _shown(result)
    assert result.returncode != 0, result.describe()
    assert result.seconds < STOP_WITHIN_S, result.describe()
    assert "The key stored for backend deepseek was refused by its provider (401: Authentication Fails" in shown, \
        result.describe()
    assert "set a new one with `patchbay key set deepseek` or in Settings → Backends" in shown
    assert "/login" not in shown and WRONG not in shown
    generations = [r for r in up.requests if r.is_generation]
    assert 1 <= len(generations) <= 2, [r.path for r in up.requests]  # no retries (a title request may go too)


@pytest.mark.parametrize("source", ["token", "helper"])
def test_ollama_not_started_stops_claude_code_with_what_to_do(start_gateway, run_claude, workdir, source):
    with socket.socket() as s:  # a port nothing listens on: Ollama not started
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    gw = start_gateway("anthropic", url, model="qwen3-coder", backend_id="ollama")
    result = _claude(run_claude, gw, workdir, source)
    shown = _shown(result)
    assert result.returncode != 0, result.describe()
    assert result.seconds < STOP_WITHIN_S, result.describe()
    assert f'Ollama at {url} (backend "ollama") is not answering' in shown, result.describe()
    assert "start it with `ollama serve`" in shown and "or switch backend in Patchbay" in shown
