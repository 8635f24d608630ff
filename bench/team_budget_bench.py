"""Does a person's budget hold when they burst? Two ``patchbay serve`` instances on one PostgreSQL,
team keys issued with the real CLI, an ``each-user`` block budget; one person at a time opens N
concurrent streams spread over both instances and keeps streaming until refused.

    .venv/bin/python bench/team_budget_bench.py [--limit 3] [--concurrency 10,30,60]

Prints, per concurrency: the requests served, what the person spent against the limit (the
overrun factor is spent / limit: 1.00 means the cap held exactly; Anthropic's `claude gateway`
measured 2.9–5.6× with 30 concurrent requests, docs/team.md), the refusals, and each instance's
resident memory at the end. Each burst is a different person, so each starts from $0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.burst import priced_burst, stream_until_refused  # noqa: E402
from tests.e2e.conftest import spawn_gateway  # noqa: E402
from tests.pg import PgServer  # noqa: E402
from tests.serve_config import OPUS_PRICES, serve_config  # noqa: E402

BURST = priced_burst("Explain what this function does and how to test it. ", 500)
BODY, COST = BURST.body, BURST.cost  # one request's real cost (Opus-like prices)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=3.0, help="the each-user limit in dollars (default 3)")
    ap.add_argument("--concurrency", default="10,30,60", help="comma-separated stream counts")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    up = BURST.upstream()
    pg = PgServer().start()
    results = []
    try:
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
                    user = f"burst{n}@corp.example"
                    key = subprocess.run([sys.executable, "-m", "app", "team", "key", "create", user, "--config",
                                          str(gws[0].config_path)], cwd=ROOT, env=gws[0].env, capture_output=True,
                                         text=True, check=True).stdout.strip()
                    t0 = time.monotonic()
                    served, refusals = stream_until_refused([gw.url for gw in gws], n, key, BODY, sessions=True)
                    took = time.monotonic() - t0
                    time.sleep(1.5)  # the last rows settle
                    with psycopg.connect(url) as conn:
                        row = conn.execute("SELECT count(*), coalesce(sum(cost_usd), 0) FROM requests "
                                           "WHERE user_id = %s AND status = 200", (user,)).fetchone()
                    assert row is not None
                    rss = [psutil.Process(gw.proc.pid).memory_info().rss / 2**20 for gw in gws]
                    results.append((n, sum(served), float(row[1]), len(refusals), took, rss))
            finally:
                for gw in gws:
                    gw.stop()
    finally:
        pg.destroy()
        up.stop()
    print(f"each-user budget ${args.limit:.2f}/day, one request ≈ ${COST:.3f}; two instances on one PostgreSQL\n")
    print("| concurrent streams | requests served | spent | spent / limit | refused (429) | burst s | "
          "RSS per instance MB |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for n, ok, spent, refused, took, rss in results:
        print(f"| {n} | {ok} | ${spent:.2f} | {spent / args.limit:.2f}× | {refused} | {took:.1f} | "
              f"{', '.join(f'{r:.0f}' for r in rss)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
