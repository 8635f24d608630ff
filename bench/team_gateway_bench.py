"""Gateway CPU per request with the PostgreSQL ledger against SQLite, and one instance against
two on one PostgreSQL.

Run by hand:  .venv/bin/python bench/team_gateway_bench.py [--requests 3000] [--concurrency 64]

Starts real ``patchbay serve`` processes (a daily budget configured, so every request goes
through admission with a reservation and the writer settles it), a fake Anthropic upstream
streaming 20 chunks, and an asyncio httpx load generator in this process. For each setup it
prints requests/s and the gateways' CPU seconds per 1,000 requests (user + system, from psutil:
what the gateway itself spends, whatever the load generator costs). Targets: PostgreSQL CPU per
request within 10 % of SQLite; two instances serve more than one (on a machine with the cores).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import GatewayProcess, spawn_gateway  # noqa: E402
from tests.fakes.chunks import anthropic_text_events  # noqa: E402
from tests.fakes.upstreams import AnthropicStream, FakeUpstream  # noqa: E402
from tests.pg import PgServer  # noqa: E402
from tests.serve_config import SONNET_PRICES, serve_config  # noqa: E402

TOKEN = "bench-token"
BODY = orjson.dumps({"model": "priced", "max_tokens": 1024, "stream": True,
                     "messages": [{"role": "user", "content": "hello " * 50}]})


def config(upstream: str, ledger: str) -> str:
    return serve_config(upstream, port0=False, prices=SONNET_PRICES, budget_usd=1000000.0, extra=ledger)

async def load(urls: list[str], n: int, concurrency: int) -> tuple[float, int]:
    done = 0
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def worker(k: int) -> None:
            nonlocal done, errors
            url = urls[k % len(urls)] + "/v1/messages"
            while done + errors < n:
                try:
                    async with client.stream("POST", url, content=BODY, headers={
                            "x-api-key": TOKEN, "content-type": "application/json",
                            "anthropic-version": "2023-06-01"}) as r:
                        async for _ in r.aiter_raw():
                            pass
                        if r.status_code == 200:
                            done += 1
                        else:
                            errors += 1
                except httpx.HTTPError:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return time.perf_counter() - t0, errors


def cpu(gws: list[GatewayProcess]) -> float:
    total = 0.0
    for gw in gws:
        t = psutil.Process(gw.proc.pid).cpu_times()
        total += t.user + t.system
    return total


def run(name: str, gws: list[GatewayProcess], n: int, concurrency: int) -> tuple[str, float, float, int]:
    asyncio.run(load([g.url for g in gws], min(200, n), concurrency))  # warm up
    c0 = cpu(gws)
    dt, errors = asyncio.run(load([g.url for g in gws], n, concurrency))
    used = cpu(gws) - c0
    return name, n / dt, used / n * 1000, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("word " * 20, pieces=20, model="priced",
                                                                        usage=(300, 20, 0, 0))),
                      wire="anthropic", record=False).start()
    pg = PgServer().start()
    rows = []
    with tempfile.TemporaryDirectory(prefix="team-bench-") as tmp:
        d = Path(tmp)
        try:
            gw = spawn_gateway(config(up.url, ""), d / "sqlite", token=TOKEN, extra_args=["--quiet"])
            rows.append(run("1 instance, SQLite ledger", [gw], args.requests, args.concurrency))
            gw.stop()
            url = pg.create_db()
            ledger = f'[ledger]\nurl = "{url}"\n'
            gw = spawn_gateway(config(up.url, ledger), d / "pg1", token=TOKEN, extra_args=["--quiet"])
            rows.append(run("1 instance, PostgreSQL ledger", [gw], args.requests, args.concurrency))
            gw.stop()
            gws = [spawn_gateway(config(up.url, ledger), d / f"pg2-{i}", token=TOKEN, extra_args=["--quiet"])
                   for i in range(2)]
            rows.append(run("2 instances, one PostgreSQL", gws, args.requests, args.concurrency))
            for g in gws:
                g.stop()
        finally:
            pg.destroy()
            up.stop()
    print(f"{args.requests:,} streamed requests, {args.concurrency} concurrent, budget admission on "
          f"({psutil.cpu_count()} CPUs here, load generator and upstream in this process)")
    print(f"  {'setup':32} {'req/s':>8} {'gateway CPU s / 1k req':>24} {'errors':>7}")
    for name, rps, cpu_k, errors in rows:
        print(f"  {name:32} {rps:8.0f} {cpu_k:24.2f} {errors:7}")
    base = rows[0][2]
    print(f"PostgreSQL CPU per request vs SQLite: {rows[1][2] / base - 1:+.1%} (target within 10 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
