"""The real Claude Code CLI 2.1.332, signed in to a team ``patchbay serve`` (its credentials file
holds the gateway's URL and a team key, as ``/login`` stores a gateway sign-in), fetches
GET /managed/settings at start and runs with what its group pushes: the served ``model`` is the
model its turn asks for, a SIGHUP-reloaded group setting reaches the next start, and a revoked key
makes it stop before any model request with the gateway's 401."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import _base_env, spawn_gateway
from tests.fakes import AnthropicJSON, AnthropicStream, FakeUpstream, anthropic_message, anthropic_text_events
from tests.fakes.upstreams import ReceivedRequest, Response

pytestmark = pytest.mark.e2e

USER = "alice@corp.example"


def _config(url: str, model: str) -> str:
    return f"""[gateway]
port = 0

[[backends]]
id = "main"
kind = "anthropic"
base_url = "{url}"
auth = "none"
models = ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7"]

[active]
backend = "main"

[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
models = ["claude-sonnet-*", "claude-haiku-*"]
[team.groups.managed_settings]
model = "{model}"
"""


def _responder(req: ReceivedRequest) -> Response | None:
    if not req.path.endswith("/v1/messages"):
        return None
    body: dict[str, Any] = req.json or {}
    model = str(body.get("model") or "claude-sonnet-4-6")
    if req.is_stream:
        return AnthropicStream(anthropic_text_events("Hello from the team.", 2, usage=(30, 5), model=model))
    return AnthropicJSON(anthropic_message("Hello from the team.", model=model))


def _signed_in_home(home: Path, url: str, key: str) -> dict[str, str]:
    """A Claude Code home signed in to the gateway at ``url`` (GATEWAY-PROTOCOL §1.1: what /login stores)."""
    cfg = home / ".claude"
    cfg.mkdir(parents=True, exist_ok=True)
    expires = int((time.time() + 8 * 3600) * 1000)
    (cfg / ".credentials.json").write_text(json.dumps({
        "gatewayTrust": {"127.0.0.1": "http-loopback"},
        "enterpriseGateway": {"url": url, "jwt": key, "expiresAt": expires, "tokenEndpoint": f"{url}/oauth/token"}}))
    (cfg / "settings.json").write_text(json.dumps({"forceLoginMethod": "gateway", "forceLoginGatewayUrl": url}))
    (home / "work").mkdir(exist_ok=True)
    return _base_env() | {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(cfg), "CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1",
                          "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1"}


def _claude(claude_bin: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(claude_bin), "-p", "say hi", "--output-format", "json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _models_asked(up: FakeUpstream, since: int) -> list[str]:
    return [str((r.json or {}).get("model")) for r in up.requests[since:] if r.path.endswith("/v1/messages")]


def test_signed_in_claude_code_runs_with_its_groups_settings_and_stops_on_a_revoked_key(
        tmp_path: Path, claude_bin: Path) -> None:
    with FakeUpstream(_responder, wire="anthropic") as up:
        gw = spawn_gateway(_config(up.url, "claude-haiku-4-5"), tmp_path / "gw")
        try:
            made = gw.cli("team", "key", "create", USER)
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip()
            env = _signed_in_home(tmp_path / "laptop", gw.url, key)
            cwd = tmp_path / "laptop" / "work"

            first = _claude(claude_bin, env, cwd)
            assert first.returncode == 0, first.stderr + first.stdout
            assert _models_asked(up, 0)[-1] == "claude-haiku-4-5", "the served model is the session's model"

            cfg = gw.config_path
            cfg.write_text(cfg.read_text().replace('model = "claude-haiku-4-5"', 'model = "claude-sonnet-4-6"'))
            gw.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "config reloaded" not in gw.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            seen = len(up.requests)
            second = _claude(claude_bin, env, cwd)
            assert second.returncode == 0, second.stderr + second.stdout
            assert _models_asked(up, seen)[-1] == "claude-sonnet-4-6", "a reloaded group setting reaches the next start"

            key_id = json.loads(gw.cli("team", "key", "list", "--json").stdout)[0]["id"]
            assert gw.cli("team", "key", "revoke", key_id).returncode == 0
            time.sleep(1.0)  # a revocation reaches the verifier within 0.5 s
            seen = len(up.requests)
            t0 = time.monotonic()
            third = _claude(claude_bin, env, cwd)
            took = time.monotonic() - t0
            assert third.returncode != 0
            assert "no longer accepts this session" in third.stdout + third.stderr, third.stdout + third.stderr
            assert _models_asked(up, seen) == [], "no model request after the settings fetch was refused"
            print(f"revoked key: the CLI stopped after {took:.1f} s")
            assert took < 30, f"the CLI stopped after {took:.1f}s instead of retrying"
        finally:
            gw.stop()
