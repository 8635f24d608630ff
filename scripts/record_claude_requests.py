"""Record what the real Claude Code CLI sends, per kind of request, as small JSON fixtures.

Runs ``claude -p`` (headless) against a recording fake Anthropic upstream on loopback with
``CLAUDE_CODE_GATEWAY_HINT_HEADERS=1``, scripted so that each kind of request happens: the main
turn, a subagent (the Task/Agent tool), the session title (only the terminal UI asks for one, so
that run uses a pseudo-terminal), and ``/compact``. The auto-mode safety classifier cannot be
recorded this way: against a base URL that is not Anthropic's, 2.1.332 refuses auto mode ("ask
whoever runs 127.0.0.1:PORT to pass Claude Code's server-side safety check through"). For each request it
keeps the headers (secrets scrubbed), model, max_tokens, tool count, thinking and output_config,
and writes them to ``tests/fixtures/claude_code_requests.json`` (the routing tests read it).

    .venv/bin/python scripts/record_claude_requests.py [--claude PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes import (  # noqa: E402
    AnthropicJSON,
    AnthropicStream,
    FakeUpstream,
    ReceivedRequest,
    Response,
    anthropic_message,
    anthropic_text_events,
    anthropic_tool_use_events,
)

SECRET_HEADERS = {"authorization", "x-api-key"}
WORKDIR = Path(tempfile.gettempdir())  # where the scripted Write goes (set to the run's own folder)
KEEP_HEADERS = ("anthropic-beta", "anthropic-version", "user-agent", "x-app")


def shape(req: ReceivedRequest) -> dict[str, Any]:
    body: dict[str, Any] = req.json or {}
    headers = {k: v for k, v in sorted(req.headers.items())
               if k.startswith("x-claude") or k in KEEP_HEADERS}
    for k in SECRET_HEADERS & set(req.headers):
        headers[k] = "<scrubbed>"
    for k in ("x-claude-code-session-id", "x-claude-code-agent-id", "x-claude-code-parent-agent-id",
              "x-claude-code-prompt-id"):
        if k in headers:
            headers[k] = "<id>"
    tools = body.get("tools") or []
    return {
        "path": req.path,
        "headers": headers,
        "model": body.get("model"),
        "max_tokens": body.get("max_tokens"),
        "tools": len(tools),
        "tool_names": sorted(t.get("name", "?") for t in tools if isinstance(t, dict))[:40],
        "thinking": body.get("thinking"),
        "output_config": body.get("output_config"),
        "stream": body.get("stream"),
        "messages": len(body.get("messages") or []),
        "first_user_text": _first_text(body)[:120],
    }


def _first_text(body: dict[str, Any]) -> str:
    for m in body.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            for b in c:
                if isinstance(b, dict) and b.get("type") == "text" and not b.get("text", "").startswith("<"):
                    return b["text"]
    return ""


def responder(req: ReceivedRequest) -> Response | None:
    if not req.path.endswith("/v1/messages"):
        return None
    body: dict[str, Any] = req.json or {}
    names = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    text = json.dumps(body.get("messages") or [])
    has_result = '"tool_result"' in text
    oc = body.get("output_config") or {}
    if isinstance(oc, dict) and oc.get("format"):
        answer = '{"title": "Recorded session"}'
        return AnthropicStream(anthropic_text_events(answer, 2)) if req.is_stream else \
            AnthropicJSON(anthropic_message(answer))
    agent_tool = next((n for n in ("Agent", "Task") if n in names), None)
    if agent_tool and "RUN_SUBAGENT" in text and not has_result:
        return AnthropicStream(anthropic_tool_use_events(
            [(agent_tool, {"description": "look around", "prompt": "Say hi.", "subagent_type": "general-purpose"})],
            ids=["toolu_rec_agent_1"]))
    if "Write" in names and "RUN_WRITE" in text and not has_result:
        return AnthropicStream(anthropic_tool_use_events(
            [("Write", {"file_path": str(WORKDIR / "x.txt"), "content": "x\n"})], ids=["toolu_rec_write_1"]))
    answer = "Done."
    return AnthropicStream(anthropic_text_events(answer, 2)) if req.is_stream else \
        AnthropicJSON(anthropic_message(answer))


def _env(url: str, home: Path, extra: dict[str, str]) -> dict[str, str]:
    return {k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ} | {"TERM": "xterm-256color",
        "HOME": str(home), "ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": "recorder",
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1", "CLAUDE_CODE_MAX_RETRIES": "0", "API_TIMEOUT_MS": "30000",
    } | extra


def run(claude: Path, url: str, home: Path, cwd: Path, args: list[str], extra: dict[str, str]) -> None:
    env = _env(url, home, extra)
    p = subprocess.run([str(claude), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                       stdin=subprocess.DEVNULL)
    print(f"  exit {p.returncode}: {p.stdout.strip()[-300:]} {p.stderr.strip()[-300:]}", file=sys.stderr)


def run_interactive(claude: Path, url: str, home: Path, cwd: Path, prompt: str, seconds: float = 20.0) -> None:
    """The terminal UI on a pseudo-terminal for ``seconds`` (session titles only happen there)."""
    import pty
    import select
    import signal

    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "theme": "dark",
        "projects": {str(cwd): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
        "customApiKeyResponses": {"approved": ["recorder"], "rejected": []}}))
    env = _env(url, home, {"IS_SANDBOX": "1"})
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.chdir(cwd)
        os.execve(str(claude), [str(claude), prompt], env)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:
                break
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def kind(shape: dict[str, Any]) -> str:
    """A name for the kind of request, from Claude Code's hint headers."""
    h = shape["headers"]
    code, first = h.get("x-claude-code-request-class", "none"), h.get("x-claude-1p-request-class", "none")
    if code == "main" and "x-claude-code-prev-tool-durations" in h:
        return "main/main after a tool call"
    return f"{code}/{first}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claude", type=Path, default=REPO / ".cache/claude-code/node_modules/.bin/claude")
    ap.add_argument("--out", type=Path, default=REPO / "tests/fixtures/claude_code_requests.json")
    ap.add_argument("--raw", type=Path, help="also dump every request shape here")
    a = ap.parse_args()
    version = subprocess.run([str(a.claude), "--version"], capture_output=True, text=True).stdout.split()[0]
    recorded: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream(responder, wire="anthropic") as up:
        global WORKDIR
        home, cwd = Path(tmp) / "home", Path(tmp) / "work"
        WORKDIR = cwd
        home.mkdir()
        cwd.mkdir()
        base = ["--output-format", "json"]
        scenarios: list[tuple[str, list[str], dict[str, str]]] = [
            ("main turn with a tool call, interactive-like (titles on)", ["-p", "RUN_WRITE please", *base,
             "--allowedTools", "Write"], {}),
            ("subagent via the Agent tool", ["-p", "RUN_SUBAGENT please", *base, "--allowedTools", "Agent,Task"],
             {}),
            ("/compact of the last session", ["-p", "/compact", "--continue", *base], {}),
        ]
        print("interactive session (the session title)", file=sys.stderr)
        (home / "tui").mkdir()
        run_interactive(a.claude, up.url, home / "tui", cwd, "RUN_WRITE hello there")
        for r in up.requests:
            if r.method == "POST":
                recorded.append({"scenario": "interactive session (the session title)"} | shape(r))
        for label, args, extra in scenarios:
            before = len(up.requests)
            print(f"{label}: claude {' '.join(args)}", file=sys.stderr)
            run(a.claude, up.url, home, cwd, args, extra)
            for r in up.requests[before:]:
                if r.method == "POST":
                    recorded.append({"scenario": label} | shape(r))
    if a.raw:
        a.raw.write_text(json.dumps(recorded, indent=1))
    fixtures: dict[str, Any] = {}
    for r in recorded:
        fixtures.setdefault(kind(r), r)  # the first of each kind
    doc = {"claude_code_version": version, "recorded_with": "scripts/record_claude_requests.py",
           "requests": [{"kind": k} | v for k, v in fixtures.items()]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(fixtures)} kinds of request to {a.out}: {', '.join(fixtures)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
