"""Ledger benchmark: write throughput through the real writer, and dashboard query times.

Run by hand:  .venv/bin/python bench/ledger_bench.py [--rows 1000000] [--days 180] [--keep DIR]

1. Fills a temporary database with realistic rows (Claude Code sessions of 20-400 requests over
   several backends and models, cache-heavy token counts) through ``Ledger.record`` and the one
   writer thread, and reports records/s (from the first record to ``flush()`` returning) and the
   cost of ``Ledger.sink`` on the caller's thread.
2. Times every dashboard query the GUI makes (and the CLI's totals) against that file and prints
   p50 / max milliseconds. Targets: ≥ 5,000 records/s; ≤ 50 ms per dashboard query at 1M rows.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.budgets.limits import period_bounds  # noqa: E402
from app.catalog.prices import PriceBook  # noqa: E402
from app.config import LedgerSettings, parse_config  # noqa: E402
from app.events import RequestFinished, Usage, finished_request  # noqa: E402
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger

CONFIG = """
[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "client"

[[backends]]
id = "openrouter"
kind = "openai"
base_url = "https://openrouter.ai/api/v1"
auth = "env:OPENROUTER_API_KEY"

[[backends]]
id = "deepseek"
kind = "openai"
base_url = "https://api.deepseek.com"
auth = "env:DEEPSEEK_API_KEY"

[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "http://localhost:11434"
auth = "none"
"""

MIX = [  # backend, served model, weight
    ("anthropic", "claude-opus-5-5", 30),
    ("anthropic", "claude-sonnet-5-5", 25),
    ("anthropic", "claude-haiku-4-5-20251001", 15),
    ("openrouter", "anthropic/claude-sonnet-4.5", 6),
    ("openrouter", "qwen/qwen3-coder", 4),
    ("openrouter", "some/unpriced-model", 2),
    ("deepseek", "deepseek-v4-pro", 8),
    ("deepseek", "deepseek-flash", 5),
    ("ollama", "qwen3-coder:30b", 5),
]


def events(n: int, days: float, seed: int = 7) -> Iterator[RequestFinished]:
    rnd = random.Random(seed)
    now = time.time()
    step = days * 86400 / n
    backends = [m for m in MIX for _ in range(m[2])]
    left = 0
    sid = ""
    backend, model = MIX[0][0], MIX[0][1]
    for i in range(n):
        if left == 0:
            left = rnd.randint(20, 400)
            sid = str(uuid.UUID(int=rnd.getrandbits(128)))
            backend, model, _w = rnd.choice(backends)
        left -= 1
        t = now - days * 86400 + (i + rnd.random()) * step  # spread evenly, never in the future
        if rnd.random() < 0.2:  # subagent / background request on haiku
            b, m = "anthropic", "claude-haiku-4-5-20251001"
        else:
            b, m = backend, model
        err = rnd.random() < 0.02
        dur = rnd.uniform(400, 30000)
        usage = Usage(rnd.randint(1, 4000), rnd.randint(20, 3000) if not err else 0,
                      rnd.choice((0, 0, 0, rnd.randint(500, 20000))), rnd.randint(0, 120000))
        yield finished_request(
            f"req_{i:08d}_{rnd.getrandbits(32):08x}", t, session_id=sid, backend=b, requested_model="claude-opus-5-5",
            model=m, status=529 if err else 200, error_type="overloaded_error" if err else None,
            error_message="Overloaded" if err else None, ttft_ms=None if err else rnd.uniform(200, 3000),
            duration_ms=dur, usage=usage, stop_reason=None if err else "tool_use", attempts=1 + int(err),
        )


def dashboard_queries(reader: Any, now: float) -> list[tuple[str, Callable[[], object]]]:
    """The queries the dashboard runs, on a ``LedgerReader`` or a ``PgLedgerReader`` (same methods)."""
    d30 = now - 30 * 86400
    day0, _ = period_bounds("day", now)
    week0, _ = period_bounds("week", now)
    month0, _ = period_bounds("month", now)
    sessions = reader.top_sessions(now - 7 * 86400, 1)
    sid = sessions[0].session_id if sessions else "none"
    queries: list[tuple[str, Callable[[], object]]] = [
        (f"cost_series {b:5} x {g:7} 30 d", (lambda b=b, g=g: reader.cost_series(d30, now, b, g)))
        for b in ("hour", "day", "month") for g in ("backend", "model")
    ]
    return queries + [
        ("tokens_per_minute last 3 h", lambda: reader.tokens_per_minute(now - 3 * 3600, now)),
        ("top_sessions 7 d, 20", lambda: reader.top_sessions(now - 7 * 86400, 20)),
        ("top_sessions 30 d, 20", lambda: reader.top_sessions(d30, 20)),
        ("requests page 1 (200)", lambda: reader.requests(limit=200)),
        ("requests page 50 (offset 10k)", lambda: reader.requests(limit=200, offset=10_000)),
        ("requests backend=deepseek", lambda: reader.requests(limit=200, backend="deepseek")),
        ("requests status=error", lambda: reader.requests(limit=200, status="error")),
        ("requests one session", lambda: reader.requests(limit=200, session_id=sid)),
        ("spent today (all)", lambda: reader.spent(day0)),
        ("spent this week (anthropic)", lambda: reader.spent(week0, "anthropic")),
        ("spent this month (all)", lambda: reader.spent(month0)),
        ("spent last 24 h (unaligned)", lambda: reader.spent(now - 86400)),
    ]


def cli_queries(reader: Any, now: float) -> list[tuple[str, Callable[[], object]]]:
    """What ``patchbay usage`` asks (no latency target)."""
    return [
        ("CLI totals by day, 30 d", lambda: reader.totals(now - 30 * 86400, now, "day")),
        ("CLI totals by model, all time", lambda: reader.totals(None, None, "model")),
        ("CLI totals by session, 7 d", lambda: reader.totals(now - 7 * 86400, now, "session")),
    ]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=float, default=180.0)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--keep", type=Path, help="write the database here and keep it")
    ap.add_argument("--capture", choices=("off", "errors", "all"), default="off")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        path = args.keep / "usage.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ledger-bench-")
        path = Path(tmp.name) / "usage.sqlite3"

    prices = PriceBook.load(parse_config(CONFIG))
    ledger = Ledger(path, prices=prices, settings=LedgerSettings(capture=args.capture))
    ledger.start()
    print(f"Writing {args.rows:,} records over {args.days:g} days through Ledger.record -> writer thread ...")
    sink_ns = 0
    sink_calls = 0
    t0 = time.perf_counter()
    for ev in events(args.rows, args.days):
        if sink_calls % 64 == 0:
            s = time.perf_counter_ns()
            ledger.sink(ev)
            sink_ns += time.perf_counter_ns() - s
        else:
            ledger.sink(ev)
        sink_calls += 1
        if ledger.queued > 50_000:  # keep memory bounded: the writer is the measured side
            while ledger.queued > 10_000:
                time.sleep(0.002)
    ok = ledger.flush(timeout=600)
    t1 = time.perf_counter()
    ledger.close()
    rate = args.rows / (t1 - t0)
    size = sum(Path(str(path) + s).stat().st_size for s in ("", "-wal") if Path(str(path) + s).exists())
    print(f"  flushed: {ok}; {t1 - t0:.1f} s -> {rate:,.0f} records/s "
          f"(target >= 5,000); sink() on the caller's thread: {sink_ns / max(1, sink_calls // 64) / 1000:.2f} µs; "
          f"file {size / 1e6:.0f} MB")

    reader = LedgerReader(path)
    now = time.time()
    queries = dashboard_queries(reader, now)
    cli = cli_queries(reader, now)
    rows = reader.count()
    print(f"\nDashboard queries on {rows:,} rows (p50 / max of {args.repeat} runs, target <= 50 ms):")
    print(f"  {'query':34} {'p50 ms':>8} {'max ms':>8}")
    worst = 0.0
    for name, fn in queries:
        p50, mx = timed(fn, args.repeat)
        worst = max(worst, mx)
        print(f"  {name:34} {p50:8.2f} {mx:8.2f}{'' if mx <= 50 else '  OVER'}")
    print("\nCommand-line queries (no target):")
    for name, fn in cli:
        p50, mx = timed(fn, max(3, args.repeat // 5))
        print(f"  {name:34} {p50:8.2f} {mx:8.2f}")
    reader.close()
    print(f"\nwrite: {rate:,.0f} records/s {'OK' if rate >= 5000 else 'BELOW TARGET'}; "
          f"slowest dashboard query: {worst:.1f} ms {'OK' if worst <= 50 else 'OVER TARGET'}")
    if tmp:
        tmp.cleanup()
    return 0 if rate >= 5000 and worst <= 50 else 1


if __name__ == "__main__":
    raise SystemExit(main())
