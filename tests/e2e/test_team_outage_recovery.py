"""PostgreSQL comes back: budgets and ``/ready`` work again within a second (issue 22, item 9).

Two ``patchbay serve`` processes on one PostgreSQL, one with ``[ledger] on_unreachable = "closed"``
and one with "open", and a daily budget already spent. The cluster is killed for a few seconds
(long enough for a connection pool's reconnect backoff to grow) and started again. From the moment
the database answers, the test measures on each gateway the time to the first request refused by
the budget (429 ``billing_error``: the budget is checked again; before it, "closed" refused every
request for the outage and "open" served every one over the cap) and to the first ``/ready`` 200.
Both must come within a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import psycopg
import pytest

from tests.e2e.conftest import GatewayProcess, spawn_gateway
from tests.fakes.upstreams import FakeUpstream
from tests.pg import PgServer
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e]

TOKEN = "pb-outage-token"
BODY = {"model": "priced", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
OUTAGE_S = 8.0  # a pool's reconnect backoff is 1, 2, 4, 8 s by then: its next try would come seconds late
PROMPT_S = 1.0  # the goal: budgets and /ready within this long of the database answering


def outcome(gw: GatewayProcess) -> str:
    """"ok", or the error type of the answer ("billing_error": the budget refused it)."""
    client = anthropic.Anthropic(base_url=gw.url, api_key=TOKEN, max_retries=0, timeout=10.0)
    try:
        client.messages.create(**BODY)  # type: ignore[arg-type]
    except anthropic.APIStatusError as exc:
        return str(exc.body["error"]["type"])  # type: ignore[index]
    except anthropic.APIConnectionError:
        return "connection"
    return "ok"


def ready(gw: GatewayProcess) -> bool:
    return httpx.get(gw.url + "/ready", timeout=10.0).status_code == 200


def first_after(t0: float, probe: Callable[[], bool], limit_s: float) -> float | None:
    """Seconds from ``t0`` to the first true ``probe()`` (asked every 50 ms), None after ``limit_s``."""
    while time.monotonic() - t0 < limit_s:
        if probe():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def test_budgets_and_ready_come_back_within_a_second_of_postgres(tmp_path: Path, own_pg: PgServer,
                                                                 priced_upstream: FakeUpstream) -> None:
    url = own_pg.create_db()
    gws = {mode: spawn_gateway(serve_config(priced_upstream.url, port0=False, prices=OPUS_PRICES, budget_usd=0.0001,
                                            ledger_url=url, extra=f'on_unreachable = "{mode}"\n'),
                               tmp_path / f"home-{mode}", token=TOKEN) for mode in ("closed", "open")}
    try:
        for mode, gw in gws.items():  # the budget is spent: the first request passes, then it refuses
            seen = [outcome(gw) for _ in range(3)]
            assert "billing_error" in seen, (mode, seen, gw.log())
            assert ready(gw), gw.log()

        own_pg.stop()
        during: dict[str, set[str]] = {m: set() for m in gws}
        unready: dict[str, bool] = {m: False for m in gws}
        end = time.monotonic() + OUTAGE_S
        while time.monotonic() < end:
            for mode, gw in gws.items():
                during[mode].add(outcome(gw))
                unready[mode] = unready[mode] or not ready(gw)
            time.sleep(0.2)
        assert "ok" not in during["closed"] and "billing_error" not in during["closed"], during
        assert "ok" in during["open"], during  # served over the cap: nothing can count it now
        assert all(unready.values()), unready

        own_pg.restart()  # returns once the server accepts connections
        with psycopg.connect(url, connect_timeout=2):
            pass
        t0 = time.monotonic()
        took: dict[str, float | None] = {}

        def measure(name: str, probe: Callable[[], bool]) -> None:
            took[name] = first_after(t0, probe, 25.0)

        threads = [threading.Thread(target=measure, args=(f"{mode} budget", lambda gw=gw: outcome(gw) == "billing_error"))
                   for mode, gw in gws.items()]
        threads += [threading.Thread(target=measure, args=(f"{mode} /ready", lambda gw=gw: ready(gw)))
                    for mode, gw in gws.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        print("\nseconds from PostgreSQL answering: " + ", ".join(
            f"{k} {'never' if v is None else f'{v:.2f}'}" for k, v in sorted(took.items())))
        late = {k: v for k, v in took.items() if v is None or v > PROMPT_S}
        assert not late, f"later than {PROMPT_S} s after PostgreSQL answered: {took}"
    finally:
        for gw in gws.values():
            gw.stop()
