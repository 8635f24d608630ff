"""Does a person's budget hold, in both directions, when they burst? Two ``patchbay serve`` instances
on one PostgreSQL, team keys issued with the real CLI, an ``each-user`` $0.50/day block budget; one
person at a time opens N concurrent streams spread over both instances on a 1 s upstream and keeps
streaming until refused (``tests/budget_cases.py``):

- realistic: Claude Code main turns (~16k tokens, mostly cache reads, ~400 output tokens);
- tiny: a one-line prompt answered with 1,000 output tokens (~100× what its prompt would say);
- shrink: 200 one-token requests first (the history an output estimate learns from), then the tiny burst.

    .venv/bin/python bench/team_budget_bench.py [--limit 0.5] [--concurrency 10,30,100] [--cases realistic,tiny,shrink]

Prints, per case and concurrency: spent / limit (1.00: the cap held exactly; the goal is 0.90–1.05),
the answers served whole and stopped at the cap, the refusals, and the false ones (a 429 while what was
spent and what was really in flight, every row started by then at its real cost, was below 0.9 of the
cap). Each burst is a different person, so each starts from $0. Fresh gateways per case.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import budget_cases as cases  # noqa: E402
from tests.e2e.conftest import GatewayProcess, spawn_gateway  # noqa: E402
from tests.pg import PgServer  # noqa: E402
from tests.serve_config import OPUS_PRICES, serve_config  # noqa: E402

Result = tuple[str, int, float, int, int, int, int, float, int]


def _burst(url: str, gws: list[GatewayProcess], case: str, n: int, limit: float) -> Result:
    user = f"{case}{n}@corp.example"
    key = subprocess.run([sys.executable, "-m", "app", "team", "key", "create", user, "--config",
                          str(gws[0].config_path)], cwd=ROOT, env=gws[0].env, capture_output=True, text=True,
                         check=True).stdout.strip()
    urls = [gw.url for gw in gws]
    if case == "shrink":
        cases.push(urls, 10, key, cases.one_token_body(), times=20)
    t0 = time.monotonic()
    pushed = cases.push(urls, n, key, cases.realistic_body() if case == "realistic" else cases.tiny_body())
    took = time.monotonic() - t0
    time.sleep(1.5)  # the last rows settle
    with psycopg.connect(url) as conn:
        rows = [(float(s), float(c or 0.0)) for s, c in conn.execute(
            "SELECT started_at, cost_usd FROM requests WHERE user_id = %s AND cost_usd > 0", (user,)).fetchall()]
    spent = sum(c for _s, c in rows)
    return (case, n, spent / limit, pushed.served, pushed.stopped, len(pushed.refusals),
            cases.false_refusals(pushed.refusals, rows, limit), took, len(pushed.other))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=0.5, help="the each-user limit in dollars (default 0.5)")
    ap.add_argument("--concurrency", default="10,30,100", help="comma-separated stream counts")
    ap.add_argument("--cases", default="realistic,tiny,shrink")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    up = cases.upstream()
    pg = PgServer().start()
    results: list[Result] = []
    try:
        for case in args.cases.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                url = pg.create_db()
                text = serve_config(up.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=f'''
[team]
identity = ["keys"]

[[budgets]]
scope = "each-user"
period = "day"
limit_usd = {args.limit}
''')
                gws = [spawn_gateway(text, Path(tmp) / f"home-{i}") for i in range(2)]
                try:
                    for n in levels:
                        results.append(_burst(url, gws, case, n, args.limit))
                finally:
                    for gw in gws:
                        gw.stop()
    finally:
        pg.destroy()
        up.stop()
    print(f"each-user budget ${args.limit:.2f}/day (Opus-like prices), two instances on one PostgreSQL, 1 s upstream\n")
    print("| case | streams | spent / cap | served whole | stopped at the cap | refused (429) | false refusals | "
          "burst s | other errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, n, ratio, served, stopped, refused, false, took, other in results:
        print(f"| {case} | {n} | {ratio:.2f}× | {served} | {stopped} | {refused} | {false} | {took:.1f} | {other} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
