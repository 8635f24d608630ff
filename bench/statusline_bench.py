"""Status line benchmark: wall time of a cold ``statusline`` process, as Claude Code runs it.

Run by hand:  .venv/bin/python bench/statusline_bench.py [--rows 100000] [--days 30] [--runs 40]

Fills a temporary ledger with realistic rows through the real writer (the generator of
``bench/ledger_bench.py``), writes a config with a daily budget, then starts each variant
``--runs`` times with Claude Code's JSON on stdin and prints p50 / p95 / max wall milliseconds and
the median CPU time (user + system, which a busy machine disturbs far less than wall time):

- the command ``patchbay connect --statusline`` installs (``python -I -S -c 'import statusline …'``),
- the same module run as a script (compiled on every run),
- ``python -m app statusline`` and the ``patchbay statusline`` console script,
- bare interpreters for scale (what start-up alone costs on this machine).

Also the in-process time of the queries alone. Target: ≤ 50 ms per run for the installed command.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ledger_bench import CONFIG, events  # noqa: E402

from app.catalog.prices import PriceBook  # noqa: E402
from app.claude import statusline  # noqa: E402
from app.config import LedgerSettings, parse_config  # noqa: E402
from app.ledger.writer import Ledger  # noqa: E402


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wall(cmd: list[str], env: dict[str, str], stdin: str, runs: int
         ) -> tuple[float, float, float, float, str]:
    """p50 / p95 / max wall ms, p50 CPU ms (user + system: what a busy machine disturbs least)."""
    subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)  # warm the page cache
    times, cpu = [], []
    out = ""
    for _ in range(runs):
        c0 = _child_cpu()
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((_child_cpu() - c0) * 1000)
        out = p.stdout.strip() or p.stderr.strip()[-200:]
    times.sort()
    return (statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))], times[-1],
            statistics.median(cpu), out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="statusline-bench-") as tmp:
        home = Path(tmp)
        (home / "data").mkdir()
        ledger_path = home / "data" / "usage.sqlite3"
        config = home / "config.toml"
        config.write_text(CONFIG + '\n[active]\nbackend = "anthropic"\n\n[[budgets]]\nscope = "all"\n'
                          'period = "day"\nlimit_usd = 10.0\n')
        ledger = Ledger(ledger_path, prices=PriceBook.load(parse_config(CONFIG)), settings=LedgerSettings())
        ledger.start()
        last = None
        for ev in events(args.rows, args.days):
            ledger.record(ev)
            last = ev
        ledger.close(timeout=600)
        assert last is not None
        payload = json.dumps({"session_id": last.session_id, "model": {"id": "claude-opus-5-5",
                              "display_name": "Opus"}, "cost": {"total_cost_usd": 1.0}})

        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            line = statusline.line(json.loads(payload), ledger_path, config)
            t.append((time.perf_counter() - t0) * 1000)
        t.sort()
        print(f"{args.rows:,} ledger rows over {args.days:g} days; session {last.session_id[:8]}…")
        print(f"line: {line}")
        print(f"in-process line(): p50 {statistics.median(t):.2f} ms, p95 {t[int(len(t) * 0.95)]:.2f} ms\n")

        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {
            "PATCHBAY_HOME": str(home), "PATCHBAY_TOKEN": "bench"}
        # `python -m app statusline` reads PATCHBAY_HOME/config.toml
        (home / "config.toml").write_text(config.read_text())
        py = sys.executable
        from app.claude.connect import statusline_command
        from app.paths import Paths

        installed = shlex.split(statusline_command(Paths(home, home / "data", home / "logs"), config))
        variants = [
            ("installed (python -I -S -c 'import …')", installed),
            ("the same as a script: python -S statusline.py", [py, "-S", str(Path(statusline.__file__).resolve()),
                                                             "--ledger", str(ledger_path), "--config", str(config)]),
            ("python -m app statusline", [py, "-m", "app", "statusline"]),
            ("patchbay statusline (console script)", [str(Path(py).with_name("patchbay")), "statusline"]),
            ("for scale: python -S -c pass", [py, "-S", "-c", "pass"]),
            ("for scale: python -c pass", [py, "-c", "pass"]),
        ]
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"{'cold process (' + str(args.runs) + ' runs)':48} {'wall p50':>9} {'p95':>7} {'max':>7} "
              f"{'CPU p50':>8}   (ms)")
        for name, cmd in variants:
            if not Path(cmd[0]).exists():
                continue
            p50, p95, mx, cpu, out = wall(cmd, env, payload, args.runs)
            print(f"{name:48} {p50:9.1f} {p95:7.1f} {mx:7.1f} {cpu:8.1f}")
            if "pass" not in name and out != line:
                print(f"  !! printed {out!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
