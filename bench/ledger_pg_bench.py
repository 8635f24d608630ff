"""Team-ledger benchmark on a local PostgreSQL (started here, as the tests do: tests/pg.py).

Run by hand:  .venv/bin/python bench/ledger_pg_bench.py [--rows 1000000] [--days 180] [--admissions 2000]

Prints one table per part:
1. write rate through the real writer (Ledger -> PgStore, batched multi-row INSERT ... ON CONFLICT),
   PostgreSQL against the SQLite file (target >= 20,000 rows/s on PostgreSQL);
2. the dashboard queries (the GUI's and ``patchbay usage``'s) at ``--rows`` rows on PostgreSQL
   (target <= 50 ms each);
3. budget admission with reservations: one transaction per request, p50 / p99 / max, alone and
   with 8 threads at once, on PostgreSQL and SQLite (target p99 <= 3 ms on a local PostgreSQL).
The gateway's CPU per request and one instance against two: ``bench/team_gateway_bench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ledger_bench import CONFIG, cli_queries, dashboard_queries, events  # noqa: E402

from app.budgets.admission import Admission  # noqa: E402
from app.budgets.store import PgBudgets, SqliteBudgets  # noqa: E402
from app.catalog.prices import PriceBook  # noqa: E402
from app.config import BudgetConfig, parse_config  # noqa: E402
from app.ledger.pg import PgLedgerReader, PgStore  # noqa: E402
from app.ledger.spool import Spool  # noqa: E402
from app.ledger.writer import Ledger  # noqa: E402
from app.proxy.routing import Route  # noqa: E402
from tests.pg import PgServer  # noqa: E402


def write(ledger: Ledger, n: int, days: float) -> float:
    ledger.start()
    t0 = time.perf_counter()
    for ev in events(n, days):
        ledger.sink(ev)
        if ledger.queued > 50_000:
            while ledger.queued > 10_000:
                time.sleep(0.002)
    assert ledger.flush(timeout=1800)
    dt = time.perf_counter() - t0
    ledger.close()
    return n / dt


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def admissions(adm: Admission, n: int, threads: int) -> list[float]:
    route = Route("anthropic", "claude-sonnet-5-5", "active", "claude-sonnet-5-5")
    body = {"model": "claude-sonnet-5-5", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi " * 200}]}
    times: list[float] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        mine = []
        for _ in range(k):
            t0 = time.perf_counter()
            adm.reserve_sync(route, "req_" + uuid.uuid4().hex[:24], body)
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            times.extend(mine)

    ts = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--write-rows", type=int, default=200_000, help="rows for the SQLite-vs-PostgreSQL write table")
    ap.add_argument("--days", type=float, default=180.0)
    ap.add_argument("--admissions", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    prices = PriceBook.load(parse_config(CONFIG))
    server = PgServer().start()
    tmp = tempfile.TemporaryDirectory(prefix="ledger-pg-bench-")
    d = Path(tmp.name)
    try:
        # ---------------------------------------------------------------- 1. writes
        print(f"1. Write rate through the writer thread, {args.write_rows:,} rows (batches of up to 5,000)")
        print(f"  {'store':28} {'rows/s':>10}")
        sq = write(Ledger(d / "w.sqlite3", prices=prices), args.write_rows, args.days)
        print(f"  {'SQLite (WAL, synchronous=FULL)':28} {sq:10,.0f}")
        url_w = server.create_db()
        pg = write(Ledger(d / "w", prices=prices, store=PgStore(url_w), spool=Spool(d / "spool-w")),
                   args.write_rows, args.days)
        print(f"  {'PostgreSQL (local)':28} {pg:10,.0f}{'' if pg >= 20_000 else '  BELOW 20,000'}")

        # ---------------------------------------------------------------- 2. dashboard queries
        url = server.create_db()
        print(f"\n2. Dashboard queries on PostgreSQL at {args.rows:,} rows (filling ...)", flush=True)
        rate = write(Ledger(d / "q", prices=prices, store=PgStore(url), spool=Spool(d / "spool-q")),
                     args.rows, args.days)
        print(f"  (filled at {rate:,.0f} rows/s)")
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        reader = PgLedgerReader(url)
        now = time.time()
        queries = dashboard_queries(reader, now) + cli_queries(reader, now)[:2]
        print(f"  {'query':34} {'p50 ms':>8} {'max ms':>8}")
        worst = 0.0
        for name, fn in queries:
            fn()
            ts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1000)
            mx = max(ts)
            worst = max(worst, mx if not name.startswith("CLI") else 0)
            print(f"  {name:34} {statistics.median(ts):8.2f} {mx:8.2f}{'' if mx <= 50 else '  OVER'}")
        reader.close()

        # ---------------------------------------------------------------- 3. admission
        print(f"\n3. Budget admission with reservations, {args.admissions:,} requests (one transaction each)")
        print(f"  {'store':12} {'threads':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        budgets = (BudgetConfig("all", "day", 1e9, 0.8, "block"), BudgetConfig("backend:anthropic", "month", 1e9))
        for name, store in (("PostgreSQL", PgBudgets(url)), ("SQLite", SqliteBudgets(d / "q.sqlite3"))):
            if name == "SQLite":
                Ledger(d / "q.sqlite3", prices=prices).start()  # the file with its schema
            adm = Admission(budgets, prices, store, instance="bench", reserve_output_tokens=4096)
            for threads in (1, 8):
                ts = admissions(adm, args.admissions, threads)
                p99 = pct(ts, 0.99)
                print(f"  {name:12} {threads:7} {statistics.median(ts):8.2f} {p99:8.2f} {max(ts):8.2f}"
                      f"{'  OVER 3 ms' if name == 'PostgreSQL' and threads == 1 and p99 > 3 else ''}")
            adm.close()
        print(f"\nsummary: PostgreSQL writes {pg:,.0f} rows/s; slowest dashboard query {worst:.1f} ms")
    finally:
        server.destroy()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
