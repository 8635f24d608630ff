"""`patchbay claude`, `patchbay connect` / `disconnect` and `patchbay statusline`, as the user runs them:
real subprocesses, the gateway as ``python -m app serve``, fake upstreams on loopback, and the
real Claude Code CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.e2e.conftest import REPO, GatewayProcess, _base_env, spawn_gateway
from tests.fakes import FakeUpstream, OpenAIStream, openai_text_chunks

pytestmark = pytest.mark.e2e

USER_SETTINGS = """{
  "permissions": {"allow": ["Bash(ls)"]},
  "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "true"}]}]},
  "enabledPlugins": {"x@y": true},
  "env": {
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    "ANTHROPIC_CUSTOM_HEADERS": "X-User-Header: kept"
  }
}
"""


def two_backend_config(anthropic_url: str, openai_url: str) -> str:
    return f"""[gateway]
port = 0

[[backends]]
id = "a"
kind = "anthropic"
base_url = "{anthropic_url}"
auth = "none"

[[backends]]
id = "o"
kind = "openai"
base_url = "{openai_url}/v1"
auth = "none"
models = ["gpt-default", "gpt-pinned"]

[active]
backend = "a"

[[prices]]
model = "gpt-pinned"
input = 2.0
output = 10.0

[[budgets]]
scope = "all"
period = "day"
limit_usd = 10.0
action = "warn"
"""


@pytest.fixture
def two_backends(tmp_path: Path) -> Iterator[tuple[GatewayProcess, FakeUpstream, FakeUpstream]]:
    with FakeUpstream(wire="anthropic") as a, FakeUpstream(wire="openai") as o:
        gw = spawn_gateway(two_backend_config(a.url, o.url), tmp_path / "patchbay-home")
        try:
            yield gw, a, o
        finally:
            gw.stop()


def user_env(gw: GatewayProcess, home: Path, **extra: str) -> dict[str, str]:
    return gw.env | {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude"), **extra}


def patchbay(env: dict[str, str], *args: str, cwd: Path = REPO, stdin: str | None = None,
             timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


# --------------------------------------------------------------------------- patchbay claude


def test_patchbay_claude_pins_that_run_only(two_backends, claude_bin: Path, tmp_path: Path) -> None:
    gw, a, o = two_backends
    home = tmp_path / "user-home"
    (home / ".claude").mkdir(parents=True)
    # the user's own settings point elsewhere and carry a header: `patchbay claude` must win for
    # its run without touching the file
    (home / ".claude" / "settings.json").write_text(USER_SETTINGS)
    work = tmp_path / "work"
    work.mkdir()
    env = user_env(gw, home, PATCHBAY_CLAUDE_BIN=str(claude_bin), DISABLE_TELEMETRY="1",
                   DISABLE_ERROR_REPORTING="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                   DISABLE_AUTOUPDATER="1", CLAUDE_CODE_MAX_RETRIES="1")

    pinned = patchbay(env, "claude", "--backend", "o", "--model", "gpt-pinned", "-p", "say hi",
                      "--output-format", "json", cwd=work)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr + gw.log()
    assert json.loads(pinned.stdout.strip().splitlines()[-1])["is_error"] is False
    generation = o.requests_to("/chat/completions")
    assert generation and {r.json["model"] for r in generation} == {"gpt-pinned"}
    assert not a.requests_to("/v1/messages"), "a pinned run reached the active backend"

    plain = patchbay(env, "claude", "-p", "say hi again", "--output-format", "json", cwd=work)
    assert plain.returncode == 0, plain.stdout + plain.stderr + gw.log()
    assert a.requests_to("/v1/messages"), "the plain run did not go to the active backend"
    assert len(o.requests_to("/chat/completions")) == len(generation), "the pin outlived its run"

    assert (home / ".claude" / "settings.json").read_text() == USER_SETTINGS
    gw.stop()
    from app.ledger.reader import LedgerReader

    with LedgerReader(gw.home / "data" / "usage.sqlite3") as reader:
        rows = reader.requests(limit=100)
    by_session: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        by_session.setdefault(r.session_id, set()).add((r.backend, r.route))
    assert sorted(by_session.values(), key=sorted) == sorted([{("o", "pin")}, {("a", "active")}], key=sorted)


def test_patchbay_claude_explains_a_stopped_gateway_and_a_missing_claude(tmp_path: Path, claude_bin: Path) -> None:
    home = tmp_path / "patchbay-home"
    home.mkdir()
    (home / "config.toml").write_text('[gateway]\nport = 9\n\n[[backends]]\nid = "a"\nkind = "anthropic"\n'
                                      'base_url = "http://127.0.0.1:9"\nauth = "none"\n\n[active]\nbackend = "a"\n')
    env = _base_env() | {"PATCHBAY_HOME": str(home), "PATCHBAY_TOKEN": "tok", "HOME": str(tmp_path),
                         "PATCHBAY_CLAUDE_BIN": str(claude_bin)}
    down = patchbay(env, "claude", "-p", "hi")
    assert down.returncode == 2
    assert "not running at http://127.0.0.1:9" in down.stderr and "patchbay serve" in down.stderr
    missing = patchbay(env | {"PATCHBAY_CLAUDE_BIN": str(tmp_path / "nope")}, "claude", "-p", "hi")
    assert missing.returncode == 2 and "PATCHBAY_CLAUDE_BIN" in missing.stderr
    no_path = patchbay({k: v for k, v in env.items() if k != "PATCHBAY_CLAUDE_BIN"} | {"PATH": str(tmp_path)},
                       "claude", "-p", "hi")
    assert no_path.returncode == 2 and "Claude Code is not installed" in no_path.stderr
    wrong = patchbay(env, "claude", "--backend", "zzz", "-p", "hi")
    assert wrong.returncode == 2 and 'no backend "zzz"' in wrong.stderr


# --------------------------------------------------------------------------- connect / disconnect


def test_connect_and_disconnect_commands(two_backends, tmp_path: Path) -> None:
    gw, _a, _o = two_backends
    home = tmp_path / "user-home"
    (home / ".claude").mkdir(parents=True)
    settings = home / ".claude" / "settings.json"
    settings.write_text(USER_SETTINGS)
    env = user_env(gw, home)

    out = patchbay(env, "connect", "--disable-nonessential-traffic", "--haiku", "o,gpt-default", "--statusline")
    assert out.returncode == 0, out.stderr
    assert "Connected" in out.stdout and "saved as" in out.stdout
    data = json.loads(settings.read_text())
    assert data["env"]["ANTHROPIC_AUTH_TOKEN"] == gw.token
    assert data["env"]["ANTHROPIC_BASE_URL"] == gw.url  # the running gateway's port, not the config's port = 0
    assert data["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert data["env"]["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "o,gpt-default"
    assert data["env"]["ANTHROPIC_CUSTOM_HEADERS"] == f"X-User-Header: kept\nx-patchbay-token: {gw.token}"
    assert data["statusLine"]["type"] == "command" and "statusline" in data["statusLine"]["command"]
    assert data["hooks"] == json.loads(USER_SETTINGS)["hooks"]

    again = patchbay(env, "connect", "--disable-nonessential-traffic", "--haiku", "o,gpt-default", "--statusline")
    assert again.returncode == 0 and "Already connected" in again.stdout

    shell = patchbay(env, "env")  # the same address for a shell
    assert shell.returncode == 0 and f"export ANTHROPIC_BASE_URL={gw.url}\n" in shell.stdout

    bad = patchbay(env, "connect", "--haiku", "nope,m")
    assert bad.returncode == 2 and 'no backend "nope"' in bad.stderr

    out = patchbay(env, "disconnect")
    assert out.returncode == 0, out.stderr
    assert settings.read_text() == USER_SETTINGS

    settings.write_text('{\n  "env": {}, // a comment\n}\n')
    out = patchbay(env, "connect")
    assert out.returncode == 2
    assert f"{settings} is not valid JSON (line 2, column 14: a comment" in out.stderr
    assert settings.read_text() == '{\n  "env": {}, // a comment\n}\n'


# --------------------------------------------------------------------------- statusline


def test_statusline_shows_backend_model_session_cost_and_todays_spend(two_backends, tmp_path: Path) -> None:
    gw, a, o = two_backends
    home = tmp_path / "user-home"
    (home / ".claude").mkdir(parents=True)
    env = user_env(gw, home)

    def ask(session: str, pin: str, usage: tuple[int, int, int]) -> None:
        o.enqueue(OpenAIStream(openai_text_chunks("hi", model="gpt-pinned", usage=usage)))
        client = anthropic.Anthropic(base_url=gw.url, api_key=gw.token, max_retries=0,
                                     default_headers={"X-Claude-Code-Session-Id": session, "x-patchbay-pin": pin})
        with client.messages.stream(model="claude-sonnet-5-5", max_tokens=20,
                                    messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()

    ask("sess-1", "o,gpt-pinned", (1_000_000, 100_000, 0))  # $2 + $1
    ask("sess-1", "o,gpt-pinned", (500_000, 0, 0))  # $1
    ask("sess-2", "o,gpt-pinned", (250_000, 0, 0))  # $0.50
    deadline = time.monotonic() + 10  # the ledger commits in the gateway's writer thread
    payload = {"session_id": "sess-1", "model": {"id": "claude-sonnet-5-5", "display_name": "Sonnet"},
               "cost": {"total_cost_usd": 9.99}, "workspace": {"current_dir": str(tmp_path)}}
    expected = "o · gpt-pinned · $4.00 session · $4.50/$10 today"
    while True:
        out = patchbay(env, "statusline", stdin=json.dumps(payload))
        if out.stdout.strip() == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.returncode == 0 and out.stdout.strip() == expected, out.stdout + out.stderr

    # the command `patchbay connect --statusline` installs prints the same line
    assert patchbay(env, "connect", "--statusline").returncode == 0
    command = json.loads((home / ".claude" / "settings.json").read_text())["statusLine"]["command"]
    installed = subprocess.run(command, shell=True, env=env, input=json.dumps(payload), capture_output=True,
                               text=True, timeout=30)
    assert installed.returncode == 0 and installed.stdout.strip() == expected, installed.stderr

    # a session with nothing recorded yet: where its requests will go (the active backend)
    fresh = patchbay(env, "statusline", stdin=json.dumps({**payload, "session_id": "new"}))
    assert fresh.stdout.strip() == "a · claude-sonnet-5-5 · $0.00 session · $4.50/$10 today"
    # garbage on stdin still gives a line, never a traceback
    junk = patchbay(env, "statusline", stdin="not json")
    assert junk.returncode == 0 and junk.stdout.strip() == "a · ? · $0.00 session · $4.50/$10 today"
