"""Sign-in from Claude Code, end to end: two ``patchbay serve`` processes with ``[team.login]`` on one
PostgreSQL (tests/pg.py), the fake OIDC issuer, a device flow driven as the CLI and a browser drive it
against instance 1 (the ``public_url``), then the REAL Claude Code CLI 2.1.332 in gateway mode
(``CLAUDE_CODE_USE_GATEWAY=1``, GATEWAY-PROTOCOL.md §1.2) with the minted token against instance 2:
a tool turn (Write) completes there. Then the admin's ``patchbay team login revoke --user`` on the
shared database: both instances refuse the token within a second (measured, printed), with 401 and
``x-should-retry: false``, and the CLI run again stops at once showing Patchbay's sentence.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from tests.e2e.conftest import REPO, ClaudeResult, _base_env, spawn_gateway
from tests.e2e.test_claude_code import CONTENT, PROMPT, anthropic_responder
from tests.fakes.oidc_issuer import FakeIssuer
from tests.fakes.upstreams import FakeUpstream
from tests.serve_config import serve_config
from tests.team.signin_setup import SECRET_ENV, free_port, login_team, sign_in

pytestmark = [pytest.mark.e2e]

ALICE = "alice@corp.example"
GATEWAY_MODE = {"CLAUDE_CODE_USE_GATEWAY": "1", "CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1"}


def admin_cli(home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    env = _base_env() | {"PATCHBAY_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app", "team", *args, "--config", str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_claude_code_signed_in_through_patchbay_runs_a_tool_turn_and_a_revocation_reaches_both_instances(
        tmp_path: Path, pg_server: object, run_claude: Callable[..., ClaudeResult], workdir: Path) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    ports = [free_port(), free_port()]
    public = f"http://127.0.0.1:{ports[0]}"  # both instances behind one public address, as behind a balancer
    target = workdir / "hello.txt"
    with FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as up, \
            FakeIssuer(redirect_uri=f"{public}/oauth/callback") as issuer:
        text = serve_config(up.url, model="fake-model", port0=False, ledger_url=url) + login_team(issuer, public)
        env = {SECRET_ENV: issuer.client_secret}
        gws = [spawn_gateway(text, tmp_path / f"home-{i}", extra_args=("--port", str(p)), extra_env=env)
               for i, p in enumerate(ports)]
        config = tmp_path / "team.toml"
        config.write_text(text)
        try:
            tokens = sign_in(public, wait_s=0.0)
            access = tokens["access_token"]
            result = run_claude(PROMPT, base_url=gws[1].url, cwd=workdir, token=access, extra_env=GATEWAY_MODE)
            assert result.returncode == 0, result.describe()
            assert target.read_text() == CONTENT, result.describe()
            turns = [r for r in up.requests if r.path.endswith("/v1/messages") and (r.json or {}).get("tools")]
            assert len(turns) >= 2 and all(r.headers.get("authorization") != f"Bearer {access}" for r in up.requests)

            listed = admin_cli(tmp_path / "admin", config, "login", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            sessions = json.loads(listed.stdout)
            assert [(s["user"], s["groups"], s["revoked_at"]) for s in sessions] == [(ALICE, ["eng"], None)]

            refused_at: dict[int, float] = {}
            answers: dict[int, httpx.Response] = {}

            def hammer(k: int) -> None:
                with httpx.Client(base_url=gws[k].url, timeout=10, trust_env=False) as http:
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        r = http.post("/v1/messages/count_tokens", headers={"authorization": f"Bearer {access}"},
                                      json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
                        if r.status_code == 401:
                            refused_at[k], answers[k] = time.time(), r
                            return
                        time.sleep(0.02)

            threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            assert not refused_at
            revoked = admin_cli(tmp_path / "admin", config, "login", "revoke", "--user", ALICE)
            assert revoked.returncode == 0, revoked.stderr
            assert "Revoked 1 sign-in" in revoked.stdout
            for t in threads:
                t.join(25)
            import psycopg

            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT revoked_at FROM login_sessions").fetchone()
            assert row is not None
            after = {k: at - float(row[0]) for k, at in refused_at.items()}
            print(f"\nrevoked sign-in refused by instance 1 {after.get(0, -1) * 1000:.0f} ms, by instance 2 "
                  f"{after.get(1, -1) * 1000:.0f} ms after the revocation")
            assert len(after) == 2 and max(after.values()) < 1.0, after
            for r in answers.values():
                assert r.headers.get("x-should-retry") == "false"
                assert r.json()["error"]["type"] == "authentication_error" and "revoked" in r.text
                assert access not in r.text

            again = run_claude(PROMPT, base_url=gws[1].url, cwd=workdir, token=access, extra_env=GATEWAY_MODE,
                               timeout_s=60)
            assert again.returncode != 0 and again.seconds < 20, again.describe()
            assert "revoked" in again.stdout + again.stderr, again.describe()
            print(f"the CLI stopped {again.seconds:.1f} s after start with the revoked token")
        finally:
            for gw in gws:
                gw.stop()
        for gw in gws:
            log = gw.log()
            for secret in (access, tokens["refresh_token"], tokens["device_code"], issuer.client_secret):
                assert secret not in log
