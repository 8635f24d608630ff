"""An instance killed with ``kill -9`` mid-burst (issue 22 item 5): two ``patchbay serve`` processes on
one PostgreSQL; the person's streams on the first are in flight when it is killed. Within a minute
the other instance (its heartbeat sees the first fall silent) charges each of those requests at
what it held, in a row marked ``instance_lost``, and the holds are gone, so the person is not
blocked for the holds' 15 minutes; the answers served before the kill keep their own rows."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import psycopg
import pytest

from tests.e2e.conftest import spawn_gateway
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")]

USER = "killed@corp.example"
BODY = {"model": "priced", "max_tokens": 4096, "messages": [{"role": "user", "content": "Explain budgets. " * 50}]}
STREAMS = 3


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream(lambda req: AnthropicStream(
        anthropic_text_events("budgets are exact " * 40, pieces=40, model="priced", usage=(200, 400)),
        delay_s=0.1), wire="anthropic").start()  # 4 s an answer
    yield up
    up.stop()


def _rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT request_id, status, error_type, interrupted, cost_usd, instance FROM requests "
                            "WHERE user_id = %s ORDER BY started_at", (USER,)).fetchall()


def test_a_killed_instances_requests_are_charged_and_its_holds_released(tmp_path: Path, pg_server: Any,
                                                                       upstream: FakeUpstream) -> None:
    url = pg_server.create_db()
    text = serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra='''
[team]
identity = ["keys"]

[[budgets]]
scope = "each-user"
period = "day"
limit_usd = 5
''')
    victim = spawn_gateway(text, tmp_path / "victim")
    survivor = spawn_gateway(text, tmp_path / "survivor")
    try:
        made = survivor.cli("team", "key", "create", USER, "--config", str(survivor.config_path))
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        client = anthropic.Anthropic(base_url=victim.url, api_key=key, max_retries=0, timeout=30)
        with client.messages.stream(**BODY) as s:  # type: ignore[arg-type]
            s.get_final_message()  # one answer served whole before the kill
        time.sleep(0.5)  # its row is written

        def stream() -> None:
            try:
                with client.messages.stream(**BODY) as s:  # type: ignore[arg-type]
                    s.get_final_message()
            except anthropic.APIError:
                pass  # the instance died under it

        threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
        for t in threads:
            t.start()
        upstream.wait_for_requests(1 + STREAMS, timeout=10)
        time.sleep(1.0)  # the streams are part-way
        with psycopg.connect(url) as conn:
            held = conn.execute("SELECT count(DISTINCT request_id) FROM budget_holds").fetchone()
        assert held == (STREAMS,)
        victim.proc.kill()  # kill -9
        killed_at = time.monotonic()
        for t in threads:
            t.join(30)
        while time.monotonic() - killed_at < 60:
            lost = [r for r in _rows(url) if r[2] == "instance_lost"]
            if len(lost) == STREAMS:
                break
            time.sleep(1.0)
        took = time.monotonic() - killed_at
        rows = _rows(url)
        lost = [r for r in rows if r[2] == "instance_lost"]
        assert len(lost) == STREAMS, f"after {took:.0f} s: {rows}"
        assert took < 60
        # charged at a bounded estimate: more than nothing, at most what a request could hold
        one_whole = (200 * 15 + 400 * 75) / 1e6
        assert all(r[1] == 499 and r[3] == 1 and 0 < r[4] < 10 * one_whole for r in lost), lost
        served = [r for r in rows if r[2] is None]
        assert len(served) == 1 and served[0][4] == pytest.approx(one_whole)  # the answered one kept its row
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM budget_holds").fetchone() == (0,)
            spent = conn.execute("SELECT spent FROM budget_counters WHERE scope = %s", (f"user:{USER}",)).fetchone()
        assert spent is not None and spent[0] == pytest.approx(sum(r[4] for r in rows))  # the counter has them
        again = anthropic.Anthropic(base_url=survivor.url, api_key=key, max_retries=0, timeout=30)
        with again.messages.stream(**BODY) as s:  # type: ignore[arg-type]
            assert s.get_final_message().type == "message"
    finally:
        victim.stop()
        survivor.stop()
