"""The real Claude Code CLI signed in with a Claude subscription, pointed at Patchbay with only
``ANTHROPIC_BASE_URL``: its OAuth token reaches the (fake) Anthropic API through the default
``anthropic`` backend, and the request's row is marked as served by the plan (no money spent,
its API-equivalent value apart), with the plan's 5-hour and weekly windows in ``patchbay usage
--json`` and the status line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, _base_env, spawn_gateway
from tests.fakes.subscription import OAUTH_TOKEN, SubscriptionAPI, credentials_json
from tests.serve_config import client_config


def _signed_in_home(home: Path) -> Path:
    """A HOME where Claude Code is logged in with a Max subscription (Linux keeps it in this file)."""
    (home / ".claude").mkdir(parents=True)
    f = home / ".claude" / ".credentials.json"
    f.write_text(json.dumps(credentials_json()))
    f.chmod(0o600)
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    return home


def _patchbay(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def test_claude_code_on_a_subscription_is_marked_and_shows_its_windows(claude_bin: Path, tmp_path: Path) -> None:
    with SubscriptionAPI() as api:
        gw = spawn_gateway(client_config(api.url, models=False), tmp_path / "patchbay-home")
        try:
            home = _signed_in_home(tmp_path / "user-home")
            work = tmp_path / "work"
            work.mkdir()
            env = _base_env() | {"HOME": str(home), "ANTHROPIC_BASE_URL": gw.url, "DISABLE_TELEMETRY": "1",
                                 "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                                 "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "1"}
            proc = subprocess.run([str(claude_bin), "-p", "Say hello.", "--output-format", "json", "--model",
                                   "claude-fake"], cwd=work, env=env, capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            assert "Hello from the plan." in proc.stdout
            assert "oauth" in api.credentials  # its subscription token reached the upstream as it came
            session = json.loads(proc.stdout.strip().splitlines()[-1])["session_id"]

            out: dict[str, Any] = {}
            deadline = time.monotonic() + 10  # the ledger commits in the gateway's writer thread
            while time.monotonic() < deadline:
                done = _patchbay(gw.env, "usage", "--json", "--since", "today")
                out = json.loads(done.stdout) if done.returncode == 0 else {}
                if out.get("subscription", {}).get("requests"):
                    break
                time.sleep(0.2)
            sub = out["subscription"]
            value = (12_000 * 3.0 + 800 * 15.0) / 1e6  # the fake's usage at the configured price
            assert sub["requests"] == api.credentials.count("oauth")
            assert sub["api_equiv_usd"] == pytest.approx(value * sub["requests"])
            assert out["total"]["cost_usd"] == 0.0  # the plan paid: nothing spent
            reset = time.strftime("%H:%M", time.localtime(api.windows.five_hour_reset))
            line = f"5 h window 63 % · resets {reset} · week 21 %"
            assert sub["windows"]["anthropic"]["text"] == line

            status = _patchbay(gw.env, "statusline", stdin=json.dumps({"session_id": session}))
            assert status.returncode == 0, status.stderr
            assert status.stdout.strip().endswith(f"API-equiv. session · $0.00 today · {line}"), status.stdout
        finally:
            gw.stop()
        assert OAUTH_TOKEN not in gw.log()
