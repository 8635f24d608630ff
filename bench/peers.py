"""Patchbay against its peers, side by side in one run: the rows of issue 24.

    .venv/bin/python bench/peers.py                       # Patchbay, claude-code-router, LiteLLM if installed
    .venv/bin/python bench/peers.py --base /tmp/pb-base   # plus a second Patchbay checkout (e.g. main)
    .venv/bin/python bench/peers.py --rounds 3 --json /tmp/peers.json

Every peer talks to the same fake OpenAI upstream (bench/gateway_bench.Upstream, its own process)
and is driven by the same client (gateway_bench's keep-alive httptools client) at concurrency 1;
each peer is its own process, measured from outside (CPU from /proc/PID/task/*/schedstat, all
threads and children). The peers run one after another inside each round, in a rotating order,
so the machine's noise falls on all of them alike; a row shows the range over the rounds.

Rows: CPU per 50-chunk stream (chunks back to back); CPU per Claude Code-sized request (a 20 KB
system prompt, 20 tools, a tool round trip; not streamed, so the row is the request's own cost);
CPU per paced stream (50 chunks 20 ms apart: one wake-up per chunk); added time to the first body
byte, p50 (through the peer minus straight to the upstream, 50-chunk streams). Ratios are to
claude-code-router's median.

claude-code-router 2.0.0 is installed under .cache/ccr with npm the first time (``--no-ccr`` to
leave it out); LiteLLM joins when ``import litellm`` works in this interpreter. ``--floor`` adds
bench/byte_pipe.py, a proxy that copies the upstream's bytes as they come: what one wake-up, one
read and one write per chunk cost on this machine before any gateway work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import psutil  # noqa: E402
from gateway_bench import (  # noqa: E402
    PACE_S,
    TOKEN,
    Gateway,
    Upstream,
    _request_bytes,
    _run_load,
    anthropic_request,
    openai_request,
    pct,
)

CCR_VERSION = "2.0.0"
CCR_DIR = REPO / ".cache" / "ccr"
CCR_CLI = CCR_DIR / "node_modules" / "@musistudio" / "claude-code-router" / "dist" / "cli.js"
COUNTS = {"stream": (200, 60), "cc": (160, 40), "paced": (12, 4)}  # requests per row and round (full, quick)
ROWS = (("stream", "CPU per 50-chunk stream, ms"), ("cc", "CPU per Claude Code-sized request, ms"),
        ("paced", "CPU per paced stream (50 x 20 ms), ms"), ("ttfb", "added time to first byte p50, ms"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children, all threads (schedstat: nanoseconds)."""
    total = 0
    pids = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    for p in pids:
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/schedstat", "rb") as f:
                    total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _wait_port(port: int, proc: subprocess.Popen[Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:g} s")


class Peer:
    """A gateway process under test: where it listens, how to reach it, what CPU it used."""

    def __init__(self, name: str, port: int, pid: int, headers: dict[str, str], stop: Callable[[], None],
                 openai: bool = False) -> None:
        self.name, self.port, self.pid, self.headers, self._stop = name, port, pid, headers, stop
        self.openai = openai  # sent the upstream's own requests (the byte-copy floor), not Anthropic ones

    def cpu_s(self) -> float:
        return _tree_cpu_s(self.pid)

    def stop(self) -> None:
        self._stop()


def _popen_peer(name: str, argv: list[str], env: dict[str, str], port: int, headers: dict[str, str],
                openai: bool = False) -> Peer:
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_port(port, proc, name)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return Peer(name, port, proc.pid, headers, stop, openai)


def start_floor(upstream_port: int) -> Peer:
    """bench/byte_pipe.py: a byte copy of the upstream's own stream, what a wake-up costs before any work."""
    port = _free_port()
    return _popen_peer("byte copy (floor)", [sys.executable, str(REPO / "bench" / "byte_pipe.py"), str(port),
                                             str(upstream_port)], dict(os.environ), port, {}, openai=True)


def start_patchbay(name: str, repo: Path, upstream_port: int, home: Path) -> Peer:
    gw = Gateway("openai", upstream_port, home / name, repo=repo)
    return Peer(name, gw.port, gw.proc.pid, {"x-api-key": TOKEN}, gw.stop)


def ensure_ccr() -> Path | None:
    if CCR_CLI.exists():
        return CCR_CLI
    if not shutil.which("npm"):
        return None
    CCR_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CCR_DIR),
                    f"@musistudio/claude-code-router@{CCR_VERSION}"], check=True)
    return CCR_CLI if CCR_CLI.exists() else None


def start_ccr(cli: Path, upstream_port: int, home: Path) -> Peer:
    port = _free_port()
    cfg_dir = home / "ccr" / ".claude-code-router"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps({
        "PORT": port, "HOST": "127.0.0.1", "LOG": False, "APIKEY": TOKEN,
        "Providers": [{"name": "fake", "api_base_url": f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
                       "api_key": "sk-bench", "models": ["fake-model"]}],
        "Router": {"default": "fake,fake-model"},
    }))
    env = dict(os.environ, HOME=str(home / "ccr"))
    return _popen_peer(f"ccr {CCR_VERSION}", ["node", str(cli), "start"], env, port, {"x-api-key": TOKEN})


def start_litellm(upstream_port: int, home: Path) -> Peer | None:
    try:
        import litellm  # noqa: F401
    except ImportError:
        return None
    port = _free_port()
    cfg = home / "litellm.yaml"
    cfg.write_text(f"model_list:\n  - model_name: claude-sonnet-5-5\n    litellm_params:\n"
                   f"      model: openai/fake-model\n      api_base: http://127.0.0.1:{upstream_port}/v1\n"
                   f"      api_key: sk-bench\n")
    argv = [sys.executable, "-m", "litellm", "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1"]
    return _popen_peer("litellm", argv, dict(os.environ), port, {"x-api-key": "sk-bench"})


def claude_code_sized(port: int, headers: dict[str, str]) -> bytes:
    """A request shaped like Claude Code's: 20 KB of system prompt, 20 tools, a tool round trip."""
    para = ("You are an interactive CLI tool that helps users with software engineering tasks. Use the "
            "instructions below and the tools available to you to assist the user. ")
    system = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
              {"type": "text", "text": (para * 120)[:20_000], "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": f"Tool{i}", "description": "Reads, edits or runs something in the workspace. " * 6,
              "input_schema": {"type": "object", "additionalProperties": False, "required": ["path"],
                               "properties": {"path": {"type": "string", "description": "absolute path"},
                                              "limit": {"type": "integer", "minimum": 1},
                                              "mode": {"type": "string", "enum": ["read", "write", "run"]}}}}
             for i in range(20)]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Look at app/main.py and tell me what it does."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Reading it."},
                                          {"type": "tool_use", "id": "toolu_01", "name": "Tool0",
                                           "input": {"path": "/repo/app/main.py"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                      "content": "def main():\n    return 0\n" * 40}]},
    ]
    body = {"model": "claude-sonnet-5-5", "max_tokens": 32000, "stream": False, "system": system,
            "tools": tools, "messages": messages, "metadata": {"user_id": "user_bench_session_1"}}
    return _request_bytes(port, "/v1/messages", body, {"anthropic-version": "2023-06-01", **headers})


def _with_headers(data: bytes, headers: dict[str, str]) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    extra = "".join(f"\r\n{k}: {v}" for k, v in headers.items()).encode()
    return head + extra + b"\r\n\r\n" + body


async def one_round(peers: list[Peer], up: Upstream, quick: bool, blocks: int,
                    loads: tuple[str, ...] = ("stream", "paced", "cc")) -> dict[str, dict[str, float]]:
    """Each row for each peer once, {peer: {row: value}}. A row's requests are split into
    ``blocks`` slices and the peers take turns slice by slice, so a burst of load from elsewhere
    on the machine falls on all of them alike."""
    q = 1 if quick else 0
    cpu: dict[str, dict[str, float]] = {p.name: {} for p in peers}
    ttfb: dict[str, list[float]] = {p.name: [] for p in peers}
    direct_ttfb: list[float] = []
    for load in loads:
        up.phase("paced" if load == "paced" else "stream")
        n = max(1, COUNTS[load][q] // blocks)
        warm = 2 if load == "paced" else 10
        for b in range(blocks):
            if load == "stream":
                d = await _run_load(up.port, openai_request(up.port, True), n, 1, b"[DONE]", warm)
                direct_ttfb += d.ttfb
            for p in peers:
                if load == "cc" and p.openai:
                    continue  # the floor has no Claude Code-sized counterpart: it translates nothing
                if p.openai:
                    req, tail = openai_request(p.port, True), b"[DONE]"
                elif load == "cc":
                    req, tail = claude_code_sized(p.port, p.headers), b"}"
                else:
                    req, tail = _with_headers(anthropic_request(p.port, True, None), p.headers), b"message_stop"
                s = await _run_load(p.port, req, n, 1, tail, warm if b == 0 else 1, probe=p.cpu_s)
                if s.errors:
                    print(f"  {p.name}: {s.errors} failed {load} requests", flush=True)
                cpu[p.name][load] = cpu[p.name].get(load, 0.0) + s.cpu_s / (n * blocks) * 1000
                if load == "stream":
                    ttfb[p.name] += s.ttfb
    for p in peers:
        if not direct_ttfb:
            continue
        cpu[p.name]["ttfb"] = (pct(ttfb[p.name], .5) - pct(direct_ttfb, .5)) * 1000
    return cpu


def report(names: list[str], rounds: list[dict[str, dict[str, float]]], ref: str | None) -> None:
    width = max(18, *(len(n) + 4 for n in names))
    print("\n" + f"{'':<40}" + "".join(f"{n:>{width}}" for n in names))
    for key, label in ROWS:
        cells = []
        if not any(key in r[n] for r in rounds for n in names):
            continue
        for n in names:
            vals = [r[n][key] for r in rounds if key in r[n]]
            if not vals:
                cells.append("—")
                continue
            lo, hi, med = min(vals), max(vals), statistics.median(vals)
            cell = f"{lo:.2f}–{hi:.2f}" if len(vals) > 1 else f"{med:.2f}"
            if ref and n != ref and key != "ttfb" and key in rounds[0].get(ref, {}):
                ref_med = statistics.median(r[ref][key] for r in rounds)
                cell += f" ({med / ref_med:.2f}×)"
            cells.append(cell)
        print(f"{label:<40}" + "".join(f"{c:>{width}}" for c in cells))
    if ref:
        print(f"(×: median over the rounds divided by {ref}'s median)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Patchbay against claude-code-router and LiteLLM, one run.")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smaller samples")
    ap.add_argument("--blocks", type=int, default=4, help="slices per row that the peers take turns on")
    ap.add_argument("--base", type=Path, action="append", default=[],
                    help="another Patchbay checkout to run beside this one (repeatable), e.g. /tmp/pb-base")
    ap.add_argument("--no-ccr", action="store_true", help="leave claude-code-router out")
    ap.add_argument("--floor", action="store_true", help="add a byte-copy proxy (bench/byte_pipe.py): the wake-up floor")
    ap.add_argument("--rows", default="stream,paced,cc",
                    help="which loads to run, comma-separated (stream also gives the first-byte row)")
    ap.add_argument("--json", type=Path, help="also write the per-round figures to this JSON file")
    args = ap.parse_args(argv)
    import uvloop

    up = Upstream("openai")
    peers: list[Peer] = []
    with tempfile.TemporaryDirectory(prefix="patchbay-peers-") as tmp:
        home = Path(tmp)
        try:
            peers.append(start_patchbay("patchbay", REPO, up.port, home))
            for b in args.base:
                peers.append(start_patchbay(f"patchbay@{b.name}", b.resolve(), up.port, home))
            cli = None if args.no_ccr else ensure_ccr()
            if cli:
                peers.append(start_ccr(cli, up.port, home))
            if args.floor:
                peers.append(start_floor(up.port))
            lite = start_litellm(up.port, home)
            if lite:
                peers.append(lite)
            print(f"peers: {', '.join(p.name for p in peers)}; {psutil.cpu_count()} CPUs; "
                  f"paced = {PACE_S * 1000:g} ms a chunk; {args.rounds} rounds", flush=True)
            rounds = []
            for i in range(args.rounds):
                order = peers[i % len(peers):] + peers[:i % len(peers)]
                rounds.append(uvloop.run(one_round(order, up, args.quick, args.blocks, tuple(args.rows.split(",")))))
                print(f"round {i + 1}: " + "; ".join(
                    f"{n} " + " ".join(f"{k}={v:.2f}" for k, v in r.items()) for n, r in rounds[-1].items()),
                    flush=True)
        finally:
            for p in peers:
                p.stop()
            up.stop()
    names = [p.name for p in peers]
    report(names, rounds, next((n for n in names if n.startswith("ccr")), None))
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
