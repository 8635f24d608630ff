"""Claude subscription (and API key) users through Patchbay, with the real Claude Code CLI.

Claude Code is logged in the way a Pro / Max user's is (``~/.claude/.credentials.json`` with
``claudeAiOauth``) and pointed at the gateway the way Patchbay says: the lines ``patchbay env``
prints, the settings.json ``patchbay connect`` writes, or ``patchbay claude``. The Anthropic fake
answers only the account's own credential (``Authorization: Bearer sk-ant-oat01-…`` with the
``oauth-2025-04-20`` beta, or its API key) and refuses Patchbay's token
(tests/fakes/subscription.py). A tool turn must complete; switching to a DeepSeek backend and
back in the same session needs no new login; the credential reaches neither DeepSeek nor the
ledger, the log or the gateway's output. And the fact the "no account" path rests on: Claude Code
without any credential refuses to run.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import REPO, GatewayProcess, spawn_gateway
from tests.e2e.test_claude_code import CONTENT, PROMPT, _explain, anthropic_responder
from tests.e2e.test_claude_code_switch import switch_active
from tests.fakes import FakeUpstream, OpenAIStream, ReceivedRequest, Response, openai_text_chunks
from tests.fakes.subscription import API_KEY, OAUTH_BETA, OAUTH_TOKEN, AccountGuard, credentials_json

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult

pytestmark = pytest.mark.e2e

GW_TOKEN = "pb-gateway-token-0123456789"  # long enough to tell apart from any beta name
QUIET = {"DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
         "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": "60000"}


def _config(account_url: str, deepseek_url: str) -> str:
    return ("[gateway]\nport = 0\n\n"
            f'[[backends]]\nid = "anthropic"\nkind = "anthropic"\nbase_url = "{account_url}"\nauth = "client"\n\n'
            f'[[backends]]\nid = "deepseek"\nkind = "openai"\nbase_url = "{deepseek_url}/v1"\nauth = "none"\n'
            'models = ["deepseek-chat"]\n\n'
            '[active]\nbackend = "anthropic"\n')


def _deepseek(req: ReceivedRequest) -> Response | None:
    if not req.path.endswith("/chat/completions"):
        return None
    return OpenAIStream(openai_text_chunks("DeepSeek here.", 3))


@pytest.fixture
def setup(tmp_path: Path, workdir: Path) -> Iterator[tuple[GatewayProcess, FakeUpstream, AccountGuard, FakeUpstream]]:
    guard = AccountGuard(gateway_token=GW_TOKEN)
    with FakeUpstream(anthropic_responder(str(workdir / "hello.txt")), wire="anthropic", guard=guard.guard) as acct, \
            FakeUpstream(_deepseek, wire="openai", models=("deepseek-chat",)) as ds:
        gw = spawn_gateway(_config(acct.url, ds.url), tmp_path / "patchbay-home", token=GW_TOKEN)
        try:
            yield gw, acct, guard, ds
        finally:
            gw.stop()


def _home(tmp_path: Path, login: bool) -> Path:
    home = tmp_path / "user-home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    if login:
        (home / ".claude" / ".credentials.json").write_text(json.dumps(credentials_json()))
    return home


def _patchbay(env: dict[str, str], *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _env_lines(gw: GatewayProcess, home: Path, **extra: str) -> dict[str, str | None]:
    """What `patchbay env` tells a POSIX shell: NAME -> value (None: unset)."""
    out = _patchbay(gw.env | {"HOME": str(home), **extra}, "env")
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout)
    got: dict[str, str | None] = {}
    for i, w in enumerate(words):
        if w == "export":
            name, _, value = words[i + 1].partition("=")
            got[name] = value
        elif w == "unset":
            got[words[i + 1]] = None
    return got


def _wrote_the_file(result: ClaudeResult, workdir: Path, up: FakeUpstream, gw: GatewayProcess,
                    guard: AccountGuard) -> None:
    why = _explain(result, up, gw) + f"\nrefused upstream: {guard.refused}"
    assert result.returncode == 0 and result.json.get("is_error") is False, why
    assert result.json.get("num_turns") == 2 and (workdir / "hello.txt").read_text() == CONTENT, why
    assert guard.refused == [], why


def _no_secret_left(gw: GatewayProcess, ds: FakeUpstream, *secrets: str) -> None:
    """Neither the user's credential nor the gateway token reached DeepSeek; the credential is in no
    file of Patchbay's (ledger, log, captures) and not in what the gateway printed."""
    sent = json.dumps([r.headers for r in ds.requests]) + "".join(r.body.decode("utf-8", "replace")
                                                                 for r in ds.requests)
    assert ds.requests and "x-patchbay-token" not in sent and gw.token not in sent
    files = [p for p in gw.home.rglob("*") if p.is_file() and p.name != "test-config.toml"]
    assert any(p.suffix in (".sqlite3", ".log") for p in files), files
    for secret in secrets:
        assert secret not in sent, "the user's credential reached DeepSeek"
        assert secret not in gw.log()
        for p in files:
            assert secret.encode() not in p.read_bytes(), f"the credential is in {p}"


def _ran_on_anthropic(up: FakeUpstream) -> list[ReceivedRequest]:
    return [r for r in up.requests_to("/v1/messages") if r.has_tools]


# --------------------------------------------------------------------------- patchbay env


def test_a_subscription_user_through_patchbay_env_switches_to_deepseek_and_back(
        setup: Any, run_claude: Callable[..., ClaudeResult], tmp_path: Path, workdir: Path) -> None:
    gw, acct, guard, ds = setup
    home = _home(tmp_path, login=True)
    told = _env_lines(gw, home)
    assert "ANTHROPIC_AUTH_TOKEN" not in told, told  # the login stays Claude Code's credential
    assert told["ANTHROPIC_CUSTOM_HEADERS"] == f"x-patchbay-token: {gw.token}"
    env = {k: v for k, v in told.items() if v is not None and k != "ANTHROPIC_BASE_URL"}
    run = lambda prompt, *more: run_claude(prompt, base_url=told["ANTHROPIC_BASE_URL"], cwd=workdir,  # noqa: E731
                                           token=None, home=home, extra_env=env | QUIET,
                                           args=(*more, "--output-format", "json", "--allowedTools", "Write"))

    first = run(PROMPT)
    _wrote_the_file(first, workdir, acct, gw, guard)
    seen = _ran_on_anthropic(acct)[-1].headers
    assert seen["authorization"] == f"Bearer {OAUTH_TOKEN}" and OAUTH_BETA in seen["anthropic-beta"]

    switch_active(gw, "deepseek")  # the tray's one click, mid-session
    second = run("and now?", "--continue")
    assert second.returncode == 0 and "DeepSeek here." in second.json.get("result", ""), _explain(second, ds, gw)

    switch_active(gw, "anthropic")  # and back: no new login
    before = len(_ran_on_anthropic(acct))
    third = run("back on Claude?", "--continue")
    assert third.returncode == 0 and third.json.get("is_error") is False, _explain(third, acct, gw)
    assert len(_ran_on_anthropic(acct)) > before and guard.refused == []
    gw.stop()
    _no_secret_left(gw, ds, OAUTH_TOKEN)


def test_an_api_key_user_through_patchbay_env(setup: Any, run_claude: Callable[..., ClaudeResult], tmp_path: Path,
                                             workdir: Path) -> None:
    gw, acct, guard, ds = setup
    home = _home(tmp_path, login=False)
    told = _env_lines(gw, home, ANTHROPIC_API_KEY=API_KEY)
    assert "ANTHROPIC_AUTH_TOKEN" not in told and told["ANTHROPIC_CUSTOM_HEADERS"] == f"x-patchbay-token: {gw.token}"
    env = {"ANTHROPIC_CUSTOM_HEADERS": str(told["ANTHROPIC_CUSTOM_HEADERS"]), "ANTHROPIC_API_KEY": API_KEY}
    result = run_claude(PROMPT, base_url=told["ANTHROPIC_BASE_URL"], cwd=workdir, token=None, home=home,
                        extra_env=env)
    _wrote_the_file(result, workdir, acct, gw, guard)
    assert _ran_on_anthropic(acct)[-1].headers["x-api-key"] == API_KEY
    out = run_claude("on deepseek", base_url=told["ANTHROPIC_BASE_URL"], cwd=workdir, token=None, home=home,
                     extra_env=env, args=("--continue", "--model", "deepseek,deepseek-chat", "--output-format", "json"))
    assert out.returncode == 0 and "DeepSeek here." in out.json.get("result", ""), _explain(out, ds, gw)
    gw.stop()
    _no_secret_left(gw, ds, API_KEY)


# --------------------------------------------------------------------------- patchbay connect / claude


def test_a_subscription_user_through_patchbay_connect(setup: Any, claude_bin: Path, tmp_path: Path,
                                                      workdir: Path) -> None:
    """Only settings.json points Claude Code at Patchbay: the env connect writes, nothing else."""
    gw, acct, guard, ds = setup
    home = _home(tmp_path, login=True)
    settings = home / ".claude" / "settings.json"
    settings.write_text('{"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue"}}\n')
    user = gw.env | {"HOME": str(home)}
    out = _patchbay(user, "connect")
    assert out.returncode == 0 and "your Claude subscription login" in out.stdout, out.stdout + out.stderr
    result = subprocess.run([str(claude_bin), "-p", PROMPT, "--output-format", "json", "--allowedTools", "Write"],
                            cwd=workdir, env={"PATH": user["PATH"], "HOME": str(home)} | QUIET, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    from tests.e2e.conftest import ClaudeResult

    _wrote_the_file(ClaudeResult(result.returncode, result.stdout, result.stderr, 0.0), workdir, acct, gw, guard)
    seen = _ran_on_anthropic(acct)[-1].headers
    assert seen["authorization"] == f"Bearer {OAUTH_TOKEN}" and OAUTH_BETA in seen["anthropic-beta"]
    assert _patchbay(user, "disconnect").returncode == 0
    assert settings.read_text() == '{"env": {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: blue"}}\n'


def test_a_subscription_user_through_patchbay_claude(setup: Any, claude_bin: Path, tmp_path: Path,
                                                     workdir: Path) -> None:
    gw, acct, guard, ds = setup
    home = _home(tmp_path, login=True)
    # PYTHONPATH: run from the project folder, `-m app` would find an installed Patchbay, not this one
    user = gw.env | {"HOME": str(home), "PATCHBAY_CLAUDE_BIN": str(claude_bin), "PYTHONPATH": str(REPO)} | QUIET
    out = _patchbay(user, "claude", "-p", PROMPT, "--output-format", "json", "--allowedTools", "Write", cwd=workdir)
    from tests.e2e.conftest import ClaudeResult

    _wrote_the_file(ClaudeResult(out.returncode, out.stdout, out.stderr, 0.0), workdir, acct, gw, guard)
    assert _ran_on_anthropic(acct)[-1].headers["authorization"] == f"Bearer {OAUTH_TOKEN}"
    pinned = _patchbay(user, "claude", "--backend", "deepseek", "-p", "hi", "--output-format", "json", cwd=workdir)
    assert pinned.returncode == 0 and "DeepSeek here." in pinned.stdout, pinned.stdout + pinned.stderr + gw.log()
    gw.stop()
    _no_secret_left(gw, ds, OAUTH_TOKEN)


# --------------------------------------------------------------------------- no Anthropic account


def test_without_any_anthropic_credential_claude_code_needs_the_token_as_its_credential(
        setup: Any, run_claude: Callable[..., ClaudeResult], tmp_path: Path, workdir: Path) -> None:
    """Measured (2.1.332): with no login, no key and no ANTHROPIC_AUTH_TOKEN, Claude Code answers
    "Not logged in · Please run /login" and sends nothing. So for such a user `patchbay env`
    (auto) keeps ANTHROPIC_AUTH_TOKEN = the token, and a DeepSeek-only set-up works."""
    gw, acct, guard, ds = setup
    home = _home(tmp_path, login=False)
    headers = {"ANTHROPIC_CUSTOM_HEADERS": f"x-patchbay-token: {gw.token}"}
    on_deepseek = ("--model", "deepseek,deepseek-chat", "--output-format", "json")
    bare = run_claude("hi", base_url=gw.url, cwd=workdir, token=None, home=home, extra_env=headers, args=on_deepseek)
    assert bare.returncode != 0 and "Not logged in" in bare.stdout, bare.describe()
    assert not ds.requests and not acct.requests  # it sent nothing at all

    told = _env_lines(gw, home)
    assert told["ANTHROPIC_AUTH_TOKEN"] == gw.token and told["ANTHROPIC_CUSTOM_HEADERS"] == headers[
        "ANTHROPIC_CUSTOM_HEADERS"]
    ok = run_claude("hi", base_url=gw.url, cwd=workdir, token=told["ANTHROPIC_AUTH_TOKEN"], home=home,
                    extra_env=headers, args=on_deepseek)
    assert ok.returncode == 0 and "DeepSeek here." in ok.json.get("result", ""), _explain(ok, ds, gw)
