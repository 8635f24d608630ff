"""Scale of one instance: many concurrent paced streams, straight to the upstream and through Patchbay.

    .venv/bin/python bench/scale_bench.py                       # 300 and 600 concurrent streams
    .venv/bin/python bench/scale_bench.py --concurrency 300 --rounds 2
    .venv/bin/python bench/scale_bench.py --cap 200             # add a row with the old 200-connection cap
    .venv/bin/python bench/scale_bench.py --workers 2 --concurrency 600,1200   # serve --workers 2 (PostgreSQL)

Each of ``c`` keep-alive connections sends ``rounds`` streamed ``POST /v1/messages`` one after
another; the fake upstream (tests/fakes, its own process) answers each with 50 SSE events, 20 ms
apart (about 1 s a stream, like a real model), so ``c`` streams are open at once. The connections
start 20 ms / c apart so their chunks do not all tick in the same instant. The same load runs once
straight to the upstream and once through ``patchbay serve`` (its own process, an ``anthropic``
passthrough backend, the default ``max_connections``). Columns: requests/s over the measured part
(one warm-up round excluded), time to the first body byte p50 / p99, total p50, errors, the
gateway process's CPU (% of one core; its event loop runs on one), and Patchbay's requests/s as a
share of the direct call's (target: within 10 % at 600).

``--workers N`` adds two rows on a throwaway PostgreSQL ledger (tests/pg.py; ``--workers`` refuses
SQLite): one process, and ``patchbay serve --workers N``; the CPU column is then the supervisor and
all its workers together (% of one core, so it may pass 100).

The client, the fake upstream and the gateway share this machine's cores: on a small box the
client and the upstream are limited as much as the gateway is, so read the ratio, not the
absolute rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from gateway_bench import (  # noqa: E402
    PACE_S,
    TOKEN,
    Gateway,
    Sample,
    Upstream,
    _run_load,
    anthropic_request,
    pct,
)

TARGET_SHARE = 0.90


@dataclass
class Row:
    setup: str
    c: int
    n: int
    rps: float
    ttfb_p50: float
    ttfb_p99: float
    total_p50: float
    errors: int
    cpu_pct: float | None  # the gateway process's CPU over the measured part, % of one core


def row(setup: str, c: int, s: Sample, gateway: bool = False) -> Row:
    n = len(s.total)
    return Row(setup, c, n, n / s.wall if s.wall else 0.0, pct(s.ttfb, .5) * 1e3, pct(s.ttfb, .99) * 1e3,
               pct(s.total, .5) * 1e3, s.errors, s.cpu_s / s.wall * 100 if gateway and s.wall else None)


HEADER = (f"{'setup':<32}{'c':>5}{'n':>6}{'req/s':>8}{'TTFB p50':>10}{'TTFB p99':>10}{'total p50':>11}{'err':>5}"
          f"{'gw CPU':>8}  share")


def show(r: Row, direct: Row | None) -> None:
    share = ""
    if direct is not None and direct.rps:
        v = r.rps / direct.rps
        share = f"{v * 100:5.1f} %" + (f"  {'ok' if v >= TARGET_SHARE else 'MISS'} (≥ {TARGET_SHARE * 100:g} %)"
                                       if r.c >= 600 else "")
    cpu = f"{r.cpu_pct:6.0f} %" if r.cpu_pct is not None else ""
    print(f"{r.setup:<32}{r.c:>5}{r.n:>6}{r.rps:>8.1f}{r.ttfb_p50:>10.1f}{r.ttfb_p99:>10.1f}{r.total_p50:>11.1f}"
          f"{r.errors:>5}{cpu:>8}  {share}", flush=True)


async def run(concurrency: list[int], rounds: int, cap: int | None, home: Path, workers: int = 0,
              ledger_url: str | None = None) -> list[Row]:
    up = Upstream("anthropic")
    rows: list[Row] = []
    try:
        up.phase("paced")
        gateways = [("patchbay (default cap)", Gateway("anthropic", up.port, home / "default"))]
        if cap is not None:
            gateways.append((f"patchbay (max_connections {cap})",
                             Gateway("anthropic", up.port, home / f"cap{cap}", f"max_connections = {cap}")))
        if workers and ledger_url:  # the [ledger] table follows the backend's keys (its own table)
            ledger = f'\n[ledger]\nurl = "{ledger_url}"\n'
            gateways.append(("patchbay, PostgreSQL ledger", Gateway("anthropic", up.port, home / "pg1", ledger)))
            gateways.append((f"patchbay --workers {workers}, PostgreSQL",
                             Gateway("anthropic", up.port, home / "pgw", ledger, extra_args=["--workers", str(workers)])))
        try:
            for c in concurrency:
                n = c * rounds
                d = row("direct", c, await _run_load(up.port, anthropic_request(up.port, True, None), n, c,
                                                     b"message_stop", c, stagger_s=PACE_S))
                show(d, None)
                rows.append(d)
                for name, gw in gateways:
                    g = row(name, c, await _run_load(gw.port, anthropic_request(gw.port, True, TOKEN), n, c,
                                                     b"message_stop", c, probe=gw.cpu_s, stagger_s=PACE_S), True)
                    show(g, d)
                    rows.append(g)
        finally:
            for _, gw in gateways:
                gw.stop()
    finally:
        up.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Many concurrent paced streams: direct vs through Patchbay.")
    ap.add_argument("--concurrency", default="300,600", help="comma-separated stream counts (default 300,600)")
    ap.add_argument("--rounds", type=int, default=3, help="measured requests per connection (default 3)")
    ap.add_argument("--cap", type=int, help="also run a gateway whose backend sets this max_connections")
    ap.add_argument("--workers", type=int, default=0, help="also run `serve --workers N` (and one process) on a "
                    "throwaway PostgreSQL ledger")
    args = ap.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.run
    cs = [int(x) for x in args.concurrency.split(",") if x.strip()]
    print(f"Patchbay scale bench: paced streams (50 chunks, {PACE_S * 1000:g} ms apart), {args.rounds} measured "
          f"per connection after one warm-up each; {psutil.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in psutil.getloadavg())}. Times in ms.")
    print(HEADER)
    t0 = time.perf_counter()
    pg = None
    if args.workers:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.pg import PgServer

        pg = PgServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="patchbay-scale-") as tmp:
            runner(run(cs, args.rounds, args.cap, Path(tmp), args.workers, pg.create_db() if pg else None))
    finally:
        if pg is not None:
            pg.destroy()
    print(f"\nbench took {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
