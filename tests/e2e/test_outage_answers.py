"""Answers the real Claude Code CLI must take as final, stopping at once with Patchbay's sentence,
with the credential in ``ANTHROPIC_AUTH_TOKEN`` and from an ``apiKeyHelper`` (as ``patchbay team
join`` writes) alike:

- the team's PostgreSQL is down under ``on_unreachable = "closed"``, for each identity source (a
  team key: its lookup fails; an OIDC token: the budget check fails). Before, the budget refusal was
  503 ``overloaded_error`` (3 tries, then "The API is at capacity") and a team key's lookup failure
  a plain 503 that Claude Code kept retrying for minutes;
- a revoked team key. Before, Claude Code retried the 401 11-13 times over 3-4 minutes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.e2e.conftest import _base_env, spawn_gateway
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.pg import PgServer
from tests.serve_config import SONNET_PRICES, serve_config

pytestmark = [pytest.mark.e2e]

ALICE = "alice@corp.example"
AUDIENCE = "patchbay"
GIVE_UP_S = 150.0  # far beyond "at once"; before the change the key path had not ended by then


@pytest.fixture
def pg() -> Iterator[PgServer]:
    server = PgServer().start()  # our own: this test stops it
    try:
        yield server
    finally:
        server.destroy()


def claude(claude_bin: Path, base: Path, url: str, credential: str, helper: bool) -> tuple[float, str]:
    """One ``claude -p`` with Claude Code's own retry settings; (seconds until it exited, its output)."""
    home = base / ("helper" if helper else "token")
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    env = _base_env() | {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude"), "ANTHROPIC_BASE_URL": url,
                         "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
                         "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    if helper:
        secret = home / "credential"
        secret.write_text(credential)
        (home / ".claude" / "settings.json").write_text(json.dumps({"apiKeyHelper": f"cat {secret}"}))
    else:
        env["ANTHROPIC_AUTH_TOKEN"] = credential
    work = home / "work"
    work.mkdir(exist_ok=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run([str(claude_bin), "-p", "say hello", "--output-format", "json"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=GIVE_UP_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return GIVE_UP_S, "(still retrying)"
    return time.monotonic() - t0, p.stdout + p.stderr


def test_claude_code_stops_at_once_with_patchbays_words_while_the_database_is_down(
        tmp_path: Path, pg: PgServer, claude_bin: Path) -> None:
    responder = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("hi", model="priced",
                                                                               usage=(10, 2, 0, 0))),
                             wire="anthropic", record=False)
    with responder as up, FakeIdP() as idp:
        url = pg.create_db()
        text = serve_config(up.url, ledger_url=url, prices=SONNET_PRICES, budget_usd=5.0,
                            extra='on_unreachable = "closed"\n\n[team]\nidentity = ["oidc", "keys"]\n'
                                  f'oidc_issuer = "{idp.oidc_issuer}"\noidc_audience = "{AUDIENCE}"\n')
        gw = spawn_gateway(text, tmp_path / "gw")
        try:
            made = gw.cli("team", "key", "create", ALICE, "--group", "eng", "--config", str(gw.config_path))
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip()
            token = idp.oidc_token(ALICE, aud=AUDIENCE)
            for credential in (key, token):  # both work while the database answers
                client = anthropic.Anthropic(base_url=gw.url, api_key=credential, max_retries=0)
                with client.messages.stream(model="priced", max_tokens=20,
                                            messages=[{"role": "user", "content": "hi"}]) as s:
                    assert s.get_final_message().content[0].type == "text"
            pg.stop()
            results = {}
            for name, credential, words in (("team key", key, "the team's key store"),
                                            ("OIDC token", token, "the ledger database does not answer")):
                for helper in (False, True):
                    how = "apiKeyHelper" if helper else "ANTHROPIC_AUTH_TOKEN"
                    took, out = claude(claude_bin, tmp_path / name.replace(" ", "-"), gw.url, credential, helper)
                    results[(name, how)] = (took, words in out, out[-600:])
        finally:
            gw.stop()
    for (name, how), (took, shown, _out) in results.items():
        print(f"database down, {name} via {how}: Claude Code exited after {took:.1f} s, Patchbay's words shown: "
              f"{shown}")
    for (name, how), (took, shown, out) in results.items():
        assert took < 20.0 and shown, f"{name} via {how}: {took:.1f} s\n{out}"


def test_claude_code_stops_at_once_on_a_revoked_key(tmp_path: Path, claude_bin: Path) -> None:
    with FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("hi", model="priced")),
                      wire="anthropic") as up:
        gw = spawn_gateway(serve_config(up.url, extra='\n[team]\nidentity = ["keys"]\n'), tmp_path / "gw")
        try:
            made = gw.cli("team", "key", "create", ALICE, "--config", str(gw.config_path))
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip()
            listed = json.loads(gw.cli("team", "key", "list", "--json", "--config", str(gw.config_path)).stdout)
            assert gw.cli("team", "key", "revoke", listed[0]["id"], "--config", str(gw.config_path)).returncode == 0
            time.sleep(0.6)  # past the verifier's cache
            results = {}
            for helper in (False, True):
                how = "apiKeyHelper" if helper else "ANTHROPIC_AUTH_TOKEN"
                results[how] = claude(claude_bin, tmp_path / "revoked", gw.url, key, helper)
        finally:
            gw.stop()
        assert not [r for r in up.requests if r.path.endswith("/v1/messages")], "a revoked key reaches nothing"
    for how, (took, out) in results.items():
        print(f"revoked key via {how}: Claude Code exited after {took:.1f} s, Patchbay's words shown: "
              f"{'was revoked' in out}")
    for how, (took, out) in results.items():
        assert took < 20.0 and "was revoked" in out and key not in out, f"{how}: {took:.1f} s\n{out[-800:]}"
