"""PostgreSQL stopped mid-load and started again: nothing acknowledged is lost.

While the team ledger does not answer, rows go to the durable local spool, ``/ready`` answers
503 with the reason (``/health`` stays 200), and once PostgreSQL is back the spool drains in
order: every request is in PostgreSQL exactly once, with rollups that count each once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anthropic
import httpx
import psycopg
import pytest

from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.pg import PgServer
from tests.serve_config import serve_config, start_engine

TOKEN = "pb-spool-token"


def test_postgres_away_mid_load_spools_then_drains_without_duplicates(own_pg: PgServer, patchbay_home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    url = own_pg.create_db()
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("ok", model="m", usage=(100, 10, 0, 0))),
                      wire="anthropic", record=False).start()
    eng = start_engine(patchbay_home, serve_config(up.url, model="m", backend="local", ledger_url=url))
    served: list[str] = []
    stop = threading.Event()

    def load() -> None:
        client = anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0)
        while not stop.is_set():
            with client.messages.stream(model="m", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as s:
                s.get_final_message()
            served.append("ok")

    def wait_served(n: int) -> None:
        deadline = time.monotonic() + 30
        while len(served) < n:
            assert t.is_alive() and time.monotonic() < deadline, f"only {len(served)} requests served"
            time.sleep(0.01)

    t = threading.Thread(target=load, daemon=True)
    try:
        t.start()
        wait_served(50)
        assert httpx.get(eng.url + "/ready").status_code == 200
        own_pg.stop()  # a crash: connections drop, nothing answers
        before = len(served)
        deadline = time.monotonic() + 20
        ready = httpx.get(eng.url + "/ready")
        while ready.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            ready = httpx.get(eng.url + "/ready")
        assert ready.status_code == 503
        err = ready.json()["error"]
        assert err["type"] == "overloaded_error" and "PostgreSQL ledger" in err["message"] and "spool" in err["message"]
        assert httpx.get(eng.url + "/health").status_code == 200  # alive, just not ready
        wait_served(before + 100)  # requests go on while the database is away
        assert eng.ledger.spooled > 0
        own_pg.restart()
        wait_served(before + 200)
        stop.set()
        t.join(10)
        assert eng.ledger.drain(30), f"{eng.ledger.spooled} rows still spooled"
        deadline = time.monotonic() + 10
        while httpx.get(eng.url + "/ready").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(eng.url + "/ready").text
            time.sleep(0.05)
    finally:
        stop.set()
        eng.stop()
        up.stop()
    with psycopg.connect(url) as conn:
        rows, distinct = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM requests").fetchone()  # type: ignore[misc]
        rolled = conn.execute("SELECT sum(requests) FROM usage_hourly").fetchone()[0]  # type: ignore[index]
        instances = conn.execute("SELECT DISTINCT instance FROM requests").fetchall()
    assert rows == distinct == len(served) == rolled
    assert len(instances) == 1 and instances[0][0]


def test_a_store_reconnected_after_a_restart_writes_large_batches_again(own_pg: PgServer) -> None:
    """A batch over SMALL_BATCH rows goes through a session's temporary COPY table. The table
    dies with the session, so a new connection must make its own: before, the store kept
    believing it existed and every large batch after a restart failed, so a spool never drained."""
    from app.events import finished_request
    from app.ledger.pg import SMALL_BATCH, PgStore
    from app.ledger.rows import request_row
    from app.ledger.store import Prepared

    def batch(start: int) -> list[Prepared]:
        return [Prepared(request_row(finished_request(f"r{start + i}", time.time()), 0.01)) for i in range(SMALL_BATCH + 4)]

    url = own_pg.create_db()
    store = PgStore(url)
    store.open()
    try:
        assert len(store.write(batch(0))) == SMALL_BATCH + 4
        own_pg.stop()
        own_pg.restart()
        with pytest.raises(psycopg.Error):  # the old session is gone: this write fails, and the writer reconnects
            store.write(batch(100))
        store.open()
        assert len(store.write(batch(200))) == SMALL_BATCH + 4
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (2 * (SMALL_BATCH + 4),)
