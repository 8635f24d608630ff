"""Team mode's cost: gateway CPU per request with a [team] section against single-user mode.

    .venv/bin/python bench/team_bench.py            # about a minute
    .venv/bin/python bench/team_bench.py --quick

The same processes as bench/gateway_bench.py (a fake Anthropic upstream in its own process, the
gateway as ``python -m app serve`` measured from /proc, this process as a keep-alive client), and
the same requests, in three modes:

- ``single``: the gateway token (single-user mode), and ``single (2)``, a second gateway the same as
  the first, whose ratio shows how much two equal gateways differ on this machine;
- ``team keys``: ``identity = ["keys"]``, a per-user key issued with ``patchbay team key create``,
  two ``[[team.groups]]`` with backend and model patterns and an output cap (policy on every
  route, the identity in every event and ledger row);
- ``team oidc``: ``identity = ["oidc", "keys"]``, one OIDC token signed by the fake IdP (RS256,
  the verified-token cache after its first use, as an apiKeyHelper's token is reused);
- ``single $`` and ``team keys $``: the same with budgets and prices, so that every request
  reserves and settles: ``all`` (single-user), and ``all`` + ``each-user`` + ``group:eng`` (team,
  three counters per request); ``team keys $`` is compared with ``single $``.

Target: team mode ≤ 1.3× single-user CPU per request (issue 17).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gateway_bench import (  # noqa: E402
    LISTENING_RE,
    TOKEN,
    Upstream,
    _run_load,
    anthropic_request,
)

TARGET_RATIO = 1.3
PRICED = """
[[prices]]
model = "claude-sonnet-5-5"
input = 3.0
output = 15.0

[[budgets]]
scope = "all"
period = "month"
limit_usd = 1000000
"""
TEAM_BUDGETS = """
[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 100000

[[budgets]]
scope = "group:eng"
period = "month"
limit_usd = 100000
"""
GROUPS = """
[[team.groups]]
name = "eng"
members = ["*@corp.example"]
backends = ["up"]
models = ["claude-sonnet-*", "claude-haiku-*"]
max_output_tokens = 32000

[[team.groups]]
name = "research"
members = ["group:research"]
backends = ["*"]
models = ["claude-*", "qwen3-*"]
"""


class Served:
    def __init__(self, home: Path, config: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        cfg = home / "bench-config.toml"
        cfg.write_text(config)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        self.env |= {"PATCHBAY_HOME": str(home), "PATCHBAY_TOKEN": TOKEN}
        self.cfg = cfg
        self.proc: subprocess.Popen[str] | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise SystemExit(f"patchbay {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--config", str(self.cfg), "--port", "0", "--quiet"],
            cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        lines: list[str] = []
        found: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                lines.append(line)
                m = LISTENING_RE.search(line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30) or not found:
            self.stop()
            raise SystemExit("The gateway did not start; its stderr:\n" + "".join(lines)[-4000:])
        self.port = int(found[0].rstrip("/").rsplit(":", 1)[1])

    def cpu_s(self) -> float:
        assert self.proc is not None
        total = 0
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            with open(f"/proc/{self.proc.pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        return total / 1e9

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _config(upstream_port: int, team: str) -> str:
    return (f'[gateway]\nport = 0\n\n[[backends]]\nid = "up"\nkind = "anthropic"\n'
            f'base_url = "http://127.0.0.1:{upstream_port}"\nauth = "none"\nmodels = ["claude-sonnet-5-5"]\n\n'
            f'[active]\nbackend = "up"\n{team}')


async def _measure(gw: Served, credential: str, quick: bool) -> dict[str, float]:
    out = {}
    for load, stream, conc, n in (("non-stream c=1", False, 1, 300), ("stream c=10", True, 10, 400)):
        n = n // 3 if quick else n
        data = anthropic_request(gw.port, stream, credential)
        tail = b"message_stop" if stream else b"}"
        s = await _run_load(gw.port, data, n, conc, tail, warmup=30, probe=gw.cpu_s)
        if s.errors:
            raise SystemExit(f"{s.errors} of {n} requests failed ({load}).")
        out[load] = s.cpu_s / n * 1000.0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Gateway CPU per request: team mode against single-user mode.")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="alternate the modes this many times (best kept)")
    args = ap.parse_args(argv)
    from tests.fakes.idp import FakeIdP

    up = Upstream("anthropic")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with TemporaryDirectory() as tmp, FakeIdP() as idp:
            modes: list[tuple[str, Served, str]] = []
            single = Served(Path(tmp) / "single", _config(up.port, ""))
            modes.append(("single", single, TOKEN))
            # a second single-user gateway, the same as the first: how far apart two equal gateways
            # measure on this machine (the noise floor the ratios sit on)
            modes.append(("single (2)", Served(Path(tmp) / "single2", _config(up.port, "")), TOKEN))
            keys = Served(Path(tmp) / "keys", _config(up.port, '\n[team]\nidentity = ["keys"]\n' + GROUPS))
            key = keys.cli("team", "key", "create", "alice@corp.example")
            modes.append(("team keys", keys, key))
            oidc = Served(Path(tmp) / "oidc", _config(up.port, f'\n[team]\nidentity = ["oidc", "keys"]\n'
                                                              f'oidc_issuer = "{idp.oidc_issuer}"\n'
                                                              f'oidc_audience = "patchbay"\n' + GROUPS))
            token = idp.oidc_token("alice@corp.example", aud="patchbay", lifetime_s=3600)
            modes.append(("team oidc", oidc, token))
            modes.append(("single $", Served(Path(tmp) / "single-b", _config(up.port, PRICED)), TOKEN))
            keys_b = Served(Path(tmp) / "keys-b", _config(up.port, '\n[team]\nidentity = ["keys"]\n' + GROUPS
                                                          + PRICED + TEAM_BUDGETS))
            modes.append(("team keys $", keys_b, keys_b.cli("team", "key", "create", "alice@corp.example")))
            for _, gw, _ in modes:
                gw.start()
            try:
                for _ in range(args.rounds):
                    for name, gw, cred in modes:
                        for load, ms in asyncio.run(_measure(gw, cred, args.quick)).items():
                            results.setdefault(name, {}).setdefault(load, []).append(ms)
                        time.sleep(0.2)
            finally:
                for _, gw, _ in modes:
                    gw.stop()
    finally:
        up.stop()
    loads = list(results["single"])
    print(f"{'mode':<12}" + "".join(f"{load + ' ms CPU/req':>26}{'× single':>10}" for load in loads))
    print("(the $ modes have budgets and prices, and are compared with single $)")
    worst = 0.0
    for name, per in results.items():
        row = f"{name:<12}"
        for load in loads:
            best = min(per[load])
            base = "single $" if name.endswith("$") else "single"
            ratio = best / min(results[base][load])
            worst = max(worst, ratio) if name.startswith("team") else worst
            row += f"{best:>26.3f}{ratio:>10.2f}"
        print(row)
    print(f"\nteam mode ≤ {TARGET_RATIO}× single-user: {'yes' if worst <= TARGET_RATIO else 'NO'} "
          f"(worst {worst:.2f}×; best of {args.rounds} alternating rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
