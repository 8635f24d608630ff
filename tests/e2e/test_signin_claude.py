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
from collections.abc import Callable
from pathlib import Path

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
        import psycopg

        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT user_id, groups, identity_source FROM requests WHERE status = 200").fetchall()
            leaked = conn.execute("SELECT count(*) FROM requests WHERE error_message LIKE %s", (f"%{access[-20:]}%",)
                                  ).fetchone()
        assert rows and all(r[0] == ALICE and "eng" in (r[1] or "") and r[2] == "login" for r in rows), rows
        assert leaked == (0,)
        audit = admin_cli(tmp_path / "admin", config, "audit", "--json")
        actions = [(e["action"], e["detail"].get("user")) for e in json.loads(audit.stdout)
                   if e["action"].startswith("login.")]
        assert actions == [("login.signed_in", ALICE), ("login.revoked", ALICE)], actions
        assert access not in audit.stdout and tokens["refresh_token"] not in audit.stdout


def claude_login(claude_bin: Path, home: Path, public: str) -> tuple[list[dict[str, object]], int]:
    """``claude auth login --gateway-json`` answered as a program answers it (GATEWAY-PROTOCOL.md §1.1),
    the browser leg played when the ``polling`` screen shows the code. (screens, exit code)"""
    from tests.fakes.browser import Browser

    settings = home / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"forceLoginMethod": "gateway", "forceLoginGatewayUrl": public}))
    env = _base_env() | {"HOME": str(home), "CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1", "DISABLE_AUTOUPDATER": "1",
                         "BROWSER": "true"}
    proc = subprocess.Popen([str(claude_bin), "auth", "login", "--gateway-json"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    screens: list[dict[str, object]] = []
    timer = threading.Timer(60, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            screen = json.loads(line)
            screens.append(screen)
            if screen.get("state") in ("url_input", "trust_prompt", "confirm_account"):
                proc.stdin.write(json.dumps({"state": screen["state"], "shown": screen.get("shown"),
                                             "accept": True}) + "\n")
                proc.stdin.flush()
            elif screen.get("state") == "polling":
                browser = Browser()
                done = browser.sign_in(str(screen["browserUrl"]))
                browser.close()
                assert done.status_code == 200 and "signed in as" in done.text, done.text
        return screens, proc.wait(10)
    finally:
        timer.cancel()


def test_real_login_in_the_cli_then_a_signed_in_turn_a_rotating_refresh_and_logout_revoking(
        tmp_path: Path, pg_server: object, claude_bin: Path, run_claude: Callable[..., ClaudeResult],
        workdir: Path) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    target = workdir / "hello.txt"
    home = tmp_path / "claude-home"
    with FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as up, \
            FakeIssuer(redirect_uri=f"{public}/oauth/callback") as issuer:
        text = serve_config(up.url, model="fake-model", port0=False, ledger_url=url) + login_team(issuer, public)
        gw = spawn_gateway(text, tmp_path / "gw", extra_args=("--port", str(port)),
                           extra_env={SECRET_ENV: issuer.client_secret})
        try:
            screens, rc = claude_login(claude_bin, home, public)
            states = [s.get("state") for s in screens]
            assert rc == 0 and states[-1] == "done", screens
            assert "trust_prompt" in states and "polling" in states
            cred_file = home / ".claude" / ".credentials.json"
            stored = json.loads(cred_file.read_text())["enterpriseGateway"]
            assert stored["url"] == public and stored["revocationEndpoint"] == f"{public}/oauth/revoke"
            first_refresh = stored["idpRefreshToken"]

            # signed in ("pinned"): no ANTHROPIC_AUTH_TOKEN, no CLAUDE_CODE_USE_GATEWAY; a tool turn
            result = run_claude(PROMPT, base_url=public, cwd=workdir, token=None, home=home,
                                extra_env={"CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1"})
            assert result.returncode == 0 and target.read_text() == CONTENT, result.describe()

            # 2 minutes left: the CLI refreshes first (GATEWAY-PROTOCOL.md §9) and gets a new refresh token
            creds = json.loads(cred_file.read_text())
            creds["enterpriseGateway"]["expiresAt"] = int(time.time() * 1000) + 120_000
            cred_file.write_text(json.dumps(creds))
            target.unlink()
            again = run_claude(PROMPT, base_url=public, cwd=workdir, token=None, home=home,
                               extra_env={"CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1"})
            assert again.returncode == 0 and target.exists(), again.describe()
            renewed = json.loads(cred_file.read_text())["enterpriseGateway"]
            assert renewed["idpRefreshToken"] != first_refresh and renewed["jwt"] != stored["jwt"]
            assert renewed["expiresAt"] > time.time() * 1000 + 3000_000
            with httpx.Client(base_url=public, timeout=10, trust_env=False) as http:
                reused = http.post("/oauth/token", data={"grant_type": "refresh_token",
                                                         "refresh_token": first_refresh})
                assert reused.status_code == 401 and reused.json()["error"] == "invalid_grant"

                # the reuse revoked the sign-in: the CLI's current token is refused, and it stops at once
                time.sleep(0.6)
                r = http.post("/v1/messages/count_tokens", headers={"authorization": f"Bearer {renewed['jwt']}"},
                              json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 401 and r.headers["x-should-retry"] == "false", r.text
            stopped = run_claude(PROMPT, base_url=public, cwd=workdir, token=None, home=home,
                                 extra_env={"CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1"}, timeout_s=60)
            assert stopped.returncode != 0 and stopped.seconds < 20, stopped.describe()

            # a fresh sign-in, then `claude auth logout` revokes it through the advertised endpoint
            screens, rc = claude_login(claude_bin, home, public)
            assert rc == 0, screens
            token = json.loads(cred_file.read_text())["enterpriseGateway"]["jwt"]
            out = subprocess.run([str(claude_bin), "auth", "logout"], env=_base_env() | {
                "HOME": str(home), "CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1"}, capture_output=True, text=True,
                timeout=60, stdin=subprocess.DEVNULL)
            assert out.returncode == 0 and not cred_file.exists(), out.stderr
            time.sleep(0.6)
            with httpx.Client(base_url=public, timeout=10, trust_env=False) as http:
                r = http.post("/v1/messages/count_tokens", headers={"authorization": f"Bearer {token}"},
                              json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 401 and "signed out" in r.text, r.text
        finally:
            gw.stop()
        log = gw.log()
        assert first_refresh not in log and stored["jwt"] not in log and issuer.client_secret not in log
