"""Team mode against Anthropic's ``claude gateway``: same fake upstream, same client, same PostgreSQL.

    .venv/bin/python bench/claude_gateway_bench.py                 # about a minute
    .venv/bin/python bench/claude_gateway_bench.py --requests 1000 --rounds 3

Processes: a fake Anthropic upstream (its own process, 50-event streams back to back,
bench/gateway_bench.py), one throwaway PostgreSQL cluster (tests/pg.py), and this process as a
keep-alive client on 10 connections. Each gateway gets its own database on that cluster and the
same per-person cap, so each does its budget work on every request:

- **patchbay**: ``patchbay serve`` in team mode (``identity = ["keys"]``, a key made with the real
  CLI), the PostgreSQL ledger, an ``each-user`` daily block budget far above what the run spends;
  ``--workers N`` runs it with that many processes.
- **claude gateway**: the ``claude gateway`` inside the Claude Code CLI
  (``.cache/claude-code/node_modules/.bin/claude``), ``store.postgres_url``, OIDC configured (a
  fake issuer: it is only contacted at sign-in, which the bench skips), an ``admin`` key, and a
  daily user spend limit set through its Admin API (``POST /v1/organizations/spend_limits``). The
  client sends a session token as the gateway itself mints them (HS256 over ``session.jwt_secret``,
  ``kid`` = the first 8 bytes of its SHA-256, audience ``claude-gateway``): what a signed-in Claude
  Code sends after ``/login``. ``CLAUDE_GATEWAY_ALLOW_LOOPBACK=1`` lets it use a loopback upstream.

Printed per gateway (medians over ``--rounds`` alternating rounds): requests/s at 10 concurrent
streams, added time to the first byte and to the end (p50, over the same load straight to the
upstream), gateway CPU ms per request (the process and its children, from psutil), PostgreSQL CPU
ms per request (every server process of the cluster alive at both ends of the measured part) and
the gateway's resident memory after the run, with Patchbay / claude gateway ratios. When the
binary is missing or ``claude gateway`` does not start, it says why and prints Patchbay's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

import httpx  # noqa: E402
import jwt  # noqa: E402
import psutil  # noqa: E402
from gateway_bench import Sample, Upstream, _request_bytes, _run_load, pct  # noqa: E402

from tests.e2e.conftest import GatewayProcess, spawn_gateway  # noqa: E402
from tests.pg import PgServer, free_port  # noqa: E402
from tests.serve_config import SONNET_PRICES  # noqa: E402

CLAUDE = REPO / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
MODEL = "claude-sonnet-4-5"  # a model both gateways know (the reference refuses names it cannot route)
USER = "alice@corp.example"
CONCURRENCY = 10
JWT_SECRET = "patchbay-bench-" + "0123456789abcdef" * 3
ADMIN_KEY = "patchbay-bench-admin-key-0123456789abcdef"


@dataclass
class Row:
    name: str
    rps: list[float]
    ttfb: list[float]
    total: list[float]
    cpu_ms: list[float]
    pg_ms: list[float]
    rss_mb: float = 0.0
    errors: int = 0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in (root, *root.children(recursive=True))) / 1e6
    except psutil.NoSuchProcess:
        return 0.0


class PgCpu:
    """The cluster's server processes' CPU: a snapshot per pid, so that what each spent between two
    snapshots is counted (a backend that exits in between loses its share; the gateways pool
    their connections, so their backends live through the run)."""

    def __init__(self, pg: PgServer) -> None:
        self.postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])

    def snapshot(self) -> dict[int, float]:
        out: dict[int, float] = {}
        root = psutil.Process(self.postmaster)
        for p in (root, *root.children(recursive=True)):
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return out

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(v - before.get(pid, 0.0) for pid, v in after.items())


# --------------------------------------------------------------------------- the two gateways


def patchbay_config(upstream_port: int, ledger_url: str, budget: bool = True) -> str:
    i, o, cw, cr = SONNET_PRICES
    return f'''
[[backends]]
id = "up"
kind = "anthropic"
base_url = "http://127.0.0.1:{upstream_port}"
auth = "none"
models = ["{MODEL}"]

[active]
backend = "up"

[[prices]]
model = "{MODEL}"
input = {i}
output = {o}
cache_write = {cw}
cache_read = {cr}

[ledger]
url = "{ledger_url}"

[team]
identity = ["keys"]

''' + ('''
[[budgets]]
scope = "each-user"
period = "day"
limit_usd = 100000
action = "block"
''' if budget else "")


def start_patchbay(home: Path, upstream_port: int, ledger_url: str, workers: int,
                   budget: bool = True) -> tuple[GatewayProcess, str]:
    args = ["--quiet"] + (["--workers", str(workers)] if workers > 1 else [])
    gw = spawn_gateway(patchbay_config(upstream_port, ledger_url, budget), home, extra_args=args)
    key = gw.cli("team", "key", "create", USER, "--config", str(gw.config_path))
    if key.returncode != 0:
        gw.stop()
        raise SystemExit(f"patchbay team key create failed: {key.stderr}")
    return gw, key.stdout.strip()


class ClaudeGateway:
    """``claude gateway --config`` on a free port, with a daily spend limit for the bench's user."""

    def __init__(self, home: Path, upstream_port: int, ledger_url: str, issuer: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cfg = home / "gateway.yaml"
        cfg.write_text(json.dumps({  # YAML is a superset of JSON
            "listen": {"host": "127.0.0.1", "port": self.port, "public_url": f"http://127.0.0.1:{self.port}"},
            "upstreams": [{"name": "up", "provider": "anthropic", "base_url": f"http://127.0.0.1:{upstream_port}",
                           "auth": {"api_key": "sk-ant-bench"}}],
            "session": {"jwt_secret": JWT_SECRET},
            "store": {"postgres_url": ledger_url},
            "oidc": {"issuer": issuer, "client_id": "bench", "client_secret": "bench-secret"},
            "admin": {"write_keys": [{"id": "bench", "key": ADMIN_KEY}]},
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
        env |= {"CLAUDE_GATEWAY_ALLOW_LOOPBACK": "1", "HOME": str(home)}
        self.log = home / "gateway.log"
        self.proc = subprocess.Popen([str(CLAUDE), "gateway", "--config", str(cfg)], env=env, cwd=home,
                                     stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            self.stop()
        if self.proc.poll() is not None:
            raise RuntimeError(f"claude gateway exited with {self.proc.returncode}: "
                               f"{self.log.read_text(errors='replace')[-1500:]}")
        r = httpx.post(f"http://127.0.0.1:{self.port}/v1/organizations/spend_limits",
                       headers={"x-api-key": ADMIN_KEY}, timeout=10,
                       json={"scope": {"type": "user", "user_id": USER}, "amount": "10000000", "period": "daily"})
        if r.status_code != 200:
            self.stop()
            raise RuntimeError(f"claude gateway's Admin API refused the spend limit: {r.status_code} {r.text[:300]}")
        now = int(time.time())
        kid = hashlib.sha256(JWT_SECRET.encode()).digest()[:8].hex()
        self.token = jwt.encode({"sub": USER, "email": USER, "name": "Alice", "groups": ["eng"],
                                 "aud": "claude-gateway", "iat": now, "exp": now + 3600,
                                 "iss": f"http://127.0.0.1:{self.port}"}, JWT_SECRET, algorithm="HS256",
                                headers={"kid": kid})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def why_no_claude_gateway() -> str | None:
    if not CLAUDE.exists():
        return f"the Claude Code CLI is not installed at {CLAUDE.relative_to(REPO)}"
    done = subprocess.run([str(CLAUDE), "gateway", "--help"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or "--config" not in done.stdout:
        return f"`claude gateway --help` failed: {(done.stderr or done.stdout).strip()[:300]}"
    return None


# --------------------------------------------------------------------------- measuring


def body(port: int, headers: dict[str, str]) -> bytes:
    return _request_bytes(port, "/v1/messages", {
        "model": MODEL, "max_tokens": 1024, "stream": True,
        "messages": [{"role": "user", "content": "Say something about benchmarks."}]},
        {"anthropic-version": "2023-06-01", **headers})


def measure(port: int, data: bytes, n: int, cpu: Callable[[], float] | None, pg: PgCpu) -> tuple[Sample, float]:
    before: dict[int, float] = {}

    def probe() -> float:  # read right before and after the measured part
        nonlocal before
        if not before:
            before = pg.snapshot()
        return cpu() if cpu else 0.0

    sample = asyncio.run(_run_load(port, data, n, CONCURRENCY, b"message_stop", warmup=50, probe=probe))
    return sample, PgCpu.spent(before, pg.snapshot())


def record(row: Row, s: Sample, pg_s: float, n: int) -> None:
    row.rps.append(len(s.total) / s.wall if s.wall else 0.0)
    row.ttfb.append(pct(s.ttfb, .5) * 1e3)
    row.total.append(pct(s.total, .5) * 1e3)
    row.cpu_ms.append(s.cpu_s / n * 1e3)
    row.pg_ms.append(pg_s / n * 1e3)
    row.errors += s.errors


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def show(rows: list[Row], direct: Row) -> None:
    cols = ("req/s @ c=10", "added TTFB p50 ms", "added total p50 ms", "gateway CPU ms/req", "PostgreSQL CPU ms/req",
            "RSS MB")

    def values(r: Row) -> list[float]:
        return [med(r.rps), med(r.ttfb) - med(direct.ttfb), med(r.total) - med(direct.total), med(r.cpu_ms),
                med(r.pg_ms), r.rss_mb]

    print(f"\n| gateway | {' | '.join(cols)} | errors |")
    print("|---|" + "---:|" * (len(cols) + 1))
    print(f"| direct to the upstream | {med(direct.rps):.0f} | — | — | — | — | — | {direct.errors} |")
    for r in rows:
        print(f"| {r.name} | " + " | ".join(f"{v:.2f}" if i else f"{v:.0f}" for i, v in enumerate(values(r)))
              + f" | {r.errors} |")
    ref = next((r for r in rows if r.name == "claude gateway"), None)
    if ref is None:
        return
    for r in rows:
        if r is ref:
            continue
        ratios = [a / b if b else float("nan") for a, b in zip(values(r), values(ref), strict=False)]
        print(f"| {r.name} / claude gateway | " + " | ".join(f"{x:.2f}×" for x in ratios) + " | |")


def profile(pid: int, port: int, data: bytes, n: int, raw: Path) -> str:
    """py-spy's view of one load through Patchbay: the top functions by self and total share
    (py-spy's collapsed stacks are left in ``raw``)."""
    import shutil

    from profile_gateway import summarise

    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spy = subprocess.Popen([spy_bin, "record", "--pid", str(pid), "--format", "raw", "-r", "500", "-o", str(raw),
                            "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    asyncio.run(_run_load(port, data, n, CONCURRENCY, b"message_stop", warmup=10))
    spy.send_signal(2)
    spy.wait(30)
    return summarise(raw, 40)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Team mode against claude gateway (same upstream, client, PostgreSQL).")
    ap.add_argument("--requests", type=int, default=600, help="measured streams per gateway and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="also run `patchbay serve --workers N` (N > 1)")
    ap.add_argument("--profile", type=Path, help="after the rounds, py-spy Patchbay (one process, every thread, "
                    "idle ones left out) during one more load and write the top functions to this file (the "
                    "raw stacks beside it, .stacks.txt)")
    ap.add_argument("--no-budget", action="store_true", help="Patchbay without its budget (what admission costs)")
    args = ap.parse_args(argv)
    why = why_no_claude_gateway()
    up = Upstream("anthropic")
    pg = PgServer().start()
    from tests.fakes.idp import FakeIdP

    rows: dict[str, Row] = {}
    direct = Row("direct", [], [], [], [], [])
    try:
        with tempfile.TemporaryDirectory(prefix="claude-gw-bench-") as tmp, FakeIdP() as idp:
            home = Path(tmp)
            pgcpu = PgCpu(pg)
            subjects: list[tuple[str, int, int, Any, bytes]] = []  # (name, pid, port, stopper, request bytes)
            pb, key = start_patchbay(home / "patchbay", up.port, pg.create_db(), 1, not args.no_budget)
            pb_port = int(pb.url.rsplit(":", 1)[1])
            subjects.append(("patchbay", pb.proc.pid, pb_port, pb, body(pb_port, {"x-api-key": key})))
            if args.workers > 1:
                pbw, keyw = start_patchbay(home / "patchbay-w", up.port, pg.create_db(), args.workers, not args.no_budget)
                port_w = int(pbw.url.rsplit(":", 1)[1])
                subjects.append((f"patchbay --workers {args.workers}", pbw.proc.pid, port_w, pbw,
                                 body(port_w, {"x-api-key": keyw})))
            if why is None:
                try:
                    cg = ClaudeGateway(home / "claude", up.port, pg.create_db(), idp.oidc_issuer)
                    subjects.append(("claude gateway", cg.proc.pid, cg.port, cg,
                                     body(cg.port, {"authorization": f"Bearer {cg.token}"})))
                except RuntimeError as exc:
                    why = str(exc)
            try:
                for _ in range(args.rounds):
                    s, pg_s = measure(up.port, body(up.port, {}), args.requests, None, pgcpu)
                    record(direct, s, pg_s, args.requests)
                    for name, pid, port, _stopper, data in subjects:
                        row = rows.setdefault(name, Row(name, [], [], [], [], []))
                        s, pg_s = measure(port, data, args.requests, lambda pid=pid: tree_cpu(pid), pgcpu)
                        record(row, s, pg_s, args.requests)
                        row.rss_mb = tree_rss_mb(pid)
                if args.profile is not None:
                    _name, pid, port, _gw, data = subjects[0]
                    args.profile.write_text(profile(pid, port, data, args.requests,
                                                    args.profile.with_suffix(".stacks.txt")))
            finally:
                for _name, _pid, _port, stopper, _data in subjects:
                    stopper.stop()
    finally:
        pg.destroy()
        up.stop()
    print(f"{args.requests} streamed requests (50 events each, back to back) per gateway and round, {CONCURRENCY} "
          f"concurrent, medians of {args.rounds} alternating rounds; {psutil.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}. Every request passes a per-person daily cap checked in PostgreSQL.")
    if why is not None:
        print(f"claude gateway: not run ({why}).")
    show(list(rows.values()), direct)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
