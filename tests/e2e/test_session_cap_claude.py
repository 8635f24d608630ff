"""Issue 26 item 8 with the real Claude Code CLI: a session past its cost cap (``[[budgets]] scope =
"session"``) is stopped with the sentence naming the session cap, at once (no retries), while a new
session goes on."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import gateway_config, spawn_gateway
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.e2e

CAP = """
[[prices]]
model = "claude-fake"  # what the fake upstream says answered
input = 1000.0
output = 1000.0

[[budgets]]
scope = "session"
period = "day"
limit_usd = 0.001
action = "block"
"""


def test_claude_code_is_stopped_at_its_session_cap_and_a_new_session_goes_on(run_claude, tmp_path: Path) -> None:
    with FakeUpstream(wire="anthropic") as up:
        config = gateway_config("anthropic", up.url).replace('auth = "none"\n', 'auth = "none"\nlocal = false\n')
        gw = spawn_gateway(config + CAP, tmp_path / "patchbay-home")  # a remote backend: priced
        try:
            work = tmp_path / "work"
            work.mkdir()
            sid = str(uuid.uuid4())
            first = run_claude("Say hi.", base_url=gw.url, cwd=work, token=gw.token,
                               args=("--output-format", "json", "--model", "fake-model", "--session-id", sid))
            assert first.returncode == 0, first.describe()  # its first request passes and spends past $0.001
            sent = len(up.requests_to("/v1/messages"))
            again = run_claude("Say hi again.", base_url=gw.url, cwd=work, token=gw.token,
                               args=("--output-format", "json", "--model", "fake-model", "--resume", sid))
            said = again.stdout + again.stderr
            assert "session cap reached" in said, again.describe()
            assert len(up.requests_to("/v1/messages")) == sent  # nothing went upstream
            other = run_claude("Say hi.", base_url=gw.url, cwd=work, token=gw.token,
                               args=("--output-format", "json", "--model", "fake-model"))
            assert other.returncode == 0 and not other.json.get("is_error"), other.describe()
        finally:
            gw.stop()
