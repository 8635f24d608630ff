"""Fixtures for end-to-end tests: real processes (the gateway as ``python -m app serve``, the
Claude Code CLI) talking over loopback to fake upstreams.

- ``claude_bin``: the Claude Code CLI (``$PATCHBAY_CLAUDE_BIN`` or the copy ``.ci/run`` installs
  under ``.cache/claude-code``); a missing CLI fails the test, it never skips it.
- ``start_gateway(backend_kind, upstream_base_url, ...)``: a gateway subprocess on a free port,
  stopped after the test; the returned :class:`GatewayProcess` keeps its ``home``
  (``PATCHBAY_HOME``: config, ledger, logs) and can run other ``patchbay`` commands against it
  (``gw.cli("usage", "--json")``).
- ``run_claude(prompt, base_url=..., cwd=...)``: one headless ``claude -p`` run with a throwaway
  ``HOME`` and the environment docs/protocol.md lists; ``home=`` gives it a HOME of the test's
  (e.g. one holding a subscription login), ``token=None`` leaves ANTHROPIC_AUTH_TOKEN out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream

REPO = Path(__file__).resolve().parents[2]
CLAUDE_VERSION = "2.1.332"
DEFAULT_CLAUDE = REPO / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
GATEWAY_TOKEN = "tok"
LISTENING_RE = re.compile(r"Patchbay gateway listening on (http://\S+)")


def _base_env() -> dict[str, str]:
    """The parts of our own environment a child process needs, and nothing that could point it
    at a real account (no ANTHROPIC_*, no proxies)."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "TERM")
    return {k: os.environ[k] for k in keep if k in os.environ}


# --------------------------------------------------------------------------- Claude Code


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    configured = os.environ.get("PATCHBAY_CLAUDE_BIN")
    path = Path(configured) if configured else DEFAULT_CLAUDE
    if not path.exists():
        where = f"PATCHBAY_CLAUDE_BIN={configured}" if configured else str(DEFAULT_CLAUDE)
        pytest.fail(
            f"The Claude Code CLI is not at {where}. Install it with `npm install --prefix .cache/claude-code "
            f"@anthropic-ai/claude-code@{CLAUDE_VERSION}` (what .ci/run does), or point PATCHBAY_CLAUDE_BIN "
            "at a claude binary.",
            pytrace=False,
        )
    return path


@dataclass
class ClaudeResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> dict[str, Any]:
        """The ``--output-format json`` result object (the last JSON line of stdout)."""
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"claude printed no JSON result.\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}")

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f}s\nstdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}"


@pytest.fixture
def run_claude(claude_bin: Path, tmp_path: Path) -> Callable[..., ClaudeResult]:
    def run(
        prompt: str,
        *,
        base_url: str,
        cwd: Path,
        token: str | None = GATEWAY_TOKEN,  # None: no ANTHROPIC_AUTH_TOKEN (a login or an apiKeyHelper in HOME)
        args: Sequence[str] = ("--output-format", "json", "--allowedTools", "Write"),
        timeout_s: float = 120.0,
        extra_env: dict[str, str] | None = None,
        home: Path | None = None,
    ) -> ClaudeResult:
        home = home or tmp_path / "claude-home"
        home.mkdir(exist_ok=True)
        env = _base_env() | {
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": base_url,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_MAX_RETRIES": "1",  # a broken gateway should fail the test fast, not after 10 retries
            "API_TIMEOUT_MS": "60000",
        } | ({"ANTHROPIC_AUTH_TOKEN": token} if token is not None else {}) | (extra_env or {})
        t0 = time.monotonic()
        try:
            proc = subprocess.run([str(claude_bin), "-p", prompt, *args], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise AssertionError(f"claude did not finish within {timeout_s:.0f}s.\nstdout:\n{out}\nstderr:\n{err}") from None
        return ClaudeResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)

    return run


# --------------------------------------------------------------------------- the gateway


def gateway_config(backend_kind: str, base_url: str, model: str = "fake-model", backend_id: str = "fake",
                   auth: str = "none") -> str:
    return (
        "[gateway]\nport = 0\n\n"
        "[[backends]]\n"
        f'id = "{backend_id}"\nkind = "{backend_kind}"\nbase_url = "{base_url}"\nauth = "{auth}"\n'
        f'models = ["{model}"]\n\n'
        f'[active]\nbackend = "{backend_id}"\nmodel = "{model}"\n'
    )


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[str]
    url: str
    home: Path
    config_path: Path
    token: str
    env: dict[str, str]
    stderr_lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.stderr_lines[-200:])

    def cli(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``python -m app <args>`` with this gateway's PATCHBAY_HOME and token
        (e.g. ``gw.cli("usage", "--json")``)."""
        return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn_gateway(config_text: str, home: Path, *, token: str = GATEWAY_TOKEN, timeout_s: float = 20.0,
                  extra_args: Sequence[str] = (), extra_env: dict[str, str] | None = None) -> GatewayProcess:
    """Start ``python -m app serve --config … --port 0`` and wait for its listening line.
    ``extra_env``: more environment (e.g. libfaketime's, to run its clock ahead)."""
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "test-config.toml"
    config_path.write_text(config_text)
    env = _base_env() | {"PATCHBAY_HOME": str(home), "PATCHBAY_TOKEN": token, "PYTHONUNBUFFERED": "1"} | \
        (extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--config", str(config_path), "--port", "0", *extra_args],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # keep reading, or a chatty gateway blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not found:
                m = LISTENING_RE.search(line)
                if m:
                    found.append(m.group(1).rstrip("/"))
                    ready.set()
        ready.set()

    threading.Thread(target=drain, name="gateway-stderr", daemon=True).start()
    gw = GatewayProcess(proc, "", home, config_path, token, env, lines)
    if not ready.wait(timeout_s) or not found:
        gw.stop()
        raise AssertionError(
            f"The gateway did not print 'Patchbay gateway listening on …' within {timeout_s:.0f}s "
            f"(exit code {proc.poll()}). Its stderr:\n{''.join(lines)[-6000:]}"
        )
    gw.url = found[0]
    return gw


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(backend_kind: str, upstream_base_url: str, *, model: str = "fake-model",
              token: str = GATEWAY_TOKEN, backend_id: str = "fake", auth: str = "none",
              extra_env: dict[str, str] | None = None) -> GatewayProcess:
        gw = spawn_gateway(gateway_config(backend_kind, upstream_base_url, model, backend_id, auth),
                           tmp_path / "patchbay-home", token=token, extra_env=extra_env)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def priced_upstream() -> Iterator[FakeUpstream]:
    """A fake Anthropic API whose every answer streams "hi there" as the model "priced" (12 in, 3 out)."""
    up = FakeUpstream(lambda req: AnthropicStream(
        anthropic_text_events("hi there", pieces=2, model="priced", usage=(12, 3, 0, 0))),
        wire="anthropic", record=False).start()
    yield up
    up.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty project directory for Claude Code to work in."""
    d = tmp_path / "work"
    d.mkdir()
    return d
