"""The real Claude Code CLI on a developer's laptop, set up by `patchbay team join` with a per-user
key, against a team gateway (`python -m app serve`, `identity = ["keys"]`) whose admin issued the
key with `patchbay team key create`: the turn succeeds through the apiKeyHelper, the gateway knows
who sent it, a revoked key is refused, and `patchbay team leave` gives settings.json back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, _base_env, spawn_gateway
from tests.fakes import AnthropicJSON, AnthropicStream, FakeUpstream, anthropic_message, anthropic_text_events
from tests.fakes.upstreams import ReceivedRequest, Response

pytestmark = pytest.mark.e2e

USER = "alice@corp.example"
SETTINGS = '{\n  "permissions": {"allow": ["Bash(ls)"]},\n  "env": {"FOO": "bar"}\n}\n'


def _team_config(url: str) -> str:
    return f"""[gateway]
port = 0

[[backends]]
id = "a"
kind = "anthropic"
base_url = "{url}"
auth = "none"
models = ["claude-sonnet-4-5"]

[active]
backend = "a"

[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
models = ["claude-*"]
"""


def _responder(req: ReceivedRequest) -> Response | None:
    if not req.path.endswith("/v1/messages"):
        return None
    body: dict[str, Any] = req.json or {}
    if req.is_stream:
        return AnthropicStream(anthropic_text_events("Hello from the team gateway.", 3, usage=(30, 6),
                                                     model=str(body.get("model") or "claude-sonnet-4-5")))
    return AnthropicJSON(anthropic_message("Hello from the team gateway."))


def test_claude_code_through_team_join_with_a_per_user_key(tmp_path: Path, claude_bin: Path) -> None:
    with FakeUpstream(_responder, wire="anthropic") as up:
        gw = spawn_gateway(_team_config(up.url), tmp_path / "gateway-home")
        try:
            made = gw.cli("team", "key", "create", USER, "--group", "eng")
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip()
            assert key.startswith("pbk_")

            home = tmp_path / "laptop"
            (home / ".claude").mkdir(parents=True)
            settings = home / ".claude" / "settings.json"
            settings.write_text(SETTINGS)
            laptop = _base_env() | {
                "HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude"),
                "PATCHBAY_HOME": str(home / "patchbay"),
                # the laptop's keychain: a file keyring, which the apiKeyHelper's own process reads too
                "PYTHON_KEYRING_BACKEND": "tests.fakes.keyring_backend.FileKeyring",
                "PB_TEST_KEYRING_FILE": str(home / "keyring.json"), "PYTHONPATH": str(REPO),
            }
            joined = subprocess.run([sys.executable, "-m", "app", "team", "join", gw.url], cwd=REPO, env=laptop,
                                    input=key + "\n", capture_output=True, text=True, timeout=60)
            assert joined.returncode == 0, joined.stderr
            assert key not in settings.read_text()
            assert json.loads(settings.read_text())["env"]["ANTHROPIC_BASE_URL"] == gw.url

            claude_env = laptop | {"DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
                                   "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
                                   "CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": "60000"}
            work = tmp_path / "work"
            work.mkdir()
            run = subprocess.run([str(claude_bin), "-p", "say hello", "--output-format", "json"], cwd=work,
                                 env=claude_env, capture_output=True, text=True, timeout=180,
                                 stdin=subprocess.DEVNULL)
            why = f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}\n" \
                  f"gateway:\n{gw.log()[-3000:]}"
            assert run.returncode == 0, why
            result = json.loads(run.stdout.strip().splitlines()[-1])
            assert result["is_error"] is False and "team gateway" in result["result"], why
            served = [r for r in up.requests if r.path.endswith("/v1/messages")]
            assert served, why
            assert all(key not in json.dumps(r.headers) for r in up.requests), "the key never goes upstream"

            # the admin revokes the key: Claude Code's next turn is refused with 401
            listed = json.loads(gw.cli("team", "key", "list", "--json").stdout)
            assert gw.cli("team", "key", "revoke", listed[0]["id"]).returncode == 0
            time.sleep(0.6)
            refused = subprocess.run([str(claude_bin), "-p", "say hello again", "--output-format", "json"],
                                     cwd=work, env=claude_env, capture_output=True, text=True, timeout=180,
                                     stdin=subprocess.DEVNULL)
            assert len([r for r in up.requests if r.path.endswith("/v1/messages")]) == len(served)
            assert refused.returncode != 0 or json.loads(refused.stdout.strip().splitlines()[-1])["is_error"]
        finally:
            gw.stop()

        from app.ledger.reader import LedgerReader

        with LedgerReader(gw.home / "data" / "usage.sqlite3") as reader:
            rows = [r for r in reader.requests(limit=100) if r.status == 200]
        assert rows, "the served turn has its ledger row"
        assert all(key not in repr(r) for r in rows)
        import sqlite3

        conn = sqlite3.connect(gw.home / "data" / "usage.sqlite3")
        try:
            who = set(conn.execute("SELECT user_id, groups, identity_source, client_addr FROM requests "
                                   "WHERE status = 200").fetchall())
        finally:
            conn.close()
        assert who == {(USER, "eng", "keys", "127.0.0.1")}, "the ledger row names the user"

        left = subprocess.run([sys.executable, "-m", "app", "team", "leave"], cwd=REPO, env=laptop,
                              capture_output=True, text=True, timeout=60)
        assert left.returncode == 0, left.stderr
        assert settings.read_text() == SETTINGS
        assert "team-key" not in (home / "keyring.json").read_text()
