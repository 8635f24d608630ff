"""``kill -9`` during a load leaves the ledger readable with every acknowledged row in it.

A real subprocess (``ledger_writer_proc.py``) writes records through the real Ledger at full
speed and prints each request id once the writer has committed it. The test kills it with
SIGKILL mid-load, then reopens the database: ``PRAGMA integrity_check`` says ok, and every
acknowledged id is there. A second writer then opens the same file (recovering the WAL), is
killed the same way, and the file is checked again.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.ledger.reader import LedgerReader
from tests.config_text import ANTHROPIC_CLIENT

HELPER = Path(__file__).with_name("ledger_writer_proc.py")
ACK = re.compile(r"^ACK (\S+) END$")

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")]


def run_and_kill(db: Path, prefix: str, min_acks: int, pg_url: str | None = None) -> set[str]:
    proc = subprocess.Popen([sys.executable, str(HELPER), str(db), prefix, *([pg_url] if pg_url else [])],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    acked: set[str] = set()
    ready = False
    deadline = time.monotonic() + 60
    try:
        while len(acked) < min_acks:
            left = deadline - time.monotonic()
            assert left > 0, f"the writer acknowledged only {len(acked)} records in 60 s"
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the writer exited early: {proc.stderr.read() if proc.stderr else ''}"
            if line.strip() == "READY":
                ready = True
            m = ACK.match(line.rstrip("\n"))
            if m and line.endswith("\n"):
                acked.add(m.group(1))
        assert ready
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: the writer is committing as fast as it can
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    while True:  # acknowledgements already in the pipe when the kill came
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is None:
            continue
        m = ACK.match(line.rstrip("\n"))
        if m and line.endswith("\n"):
            acked.add(m.group(1))
    return acked


def check(db: Path, acked: set[str]) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
        hourly = conn.execute("SELECT sum(requests) FROM usage_hourly").fetchone()[0]
    finally:
        conn.close()
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged records are gone, e.g. {sorted(missing)[:5]}"
    assert hourly == len(stored)  # the rollups were committed with their rows, never apart
    return stored


def test_kill_9_during_load_keeps_every_acknowledged_row(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    first = run_and_kill(db, "a", min_acks=3000)
    stored = check(db, first)
    assert len(stored) >= len(first) >= 3000

    second = run_and_kill(db, "b", min_acks=2000)  # a new writer recovers the file, and is killed too
    stored = check(db, first | second)
    with LedgerReader(db) as reader:
        assert reader.count() == len(stored)
        assert sum(t.requests for t in reader.totals(None, None, "backend")) == len(stored)


def in_postgres(url: str) -> tuple[set[str], int]:
    import psycopg

    with psycopg.connect(url) as conn:
        stored = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
        hourly = conn.execute("SELECT coalesce(sum(requests), 0) FROM usage_hourly").fetchone()[0]  # type: ignore[index]
    return stored, int(hourly)


def in_spool(spool: Path) -> set[str]:
    import orjson

    if not spool.exists():
        return set()
    conn = sqlite3.connect(spool)
    try:
        return {orjson.loads(r[0])[0] for r in conn.execute("SELECT row FROM spool")}
    finally:
        conn.close()


def test_kill_9_with_a_postgres_ledger_keeps_every_acknowledged_row_in_postgres_or_the_spool(
        tmp_path: Path, pg_server: object) -> None:
    from app.catalog.prices import PriceBook
    from app.ledger.pg import PgStore
    from app.ledger.spool import Spool
    from app.ledger.writer import Ledger

    url = pg_server.create_db()  # type: ignore[attr-defined]
    spool = tmp_path / "ledger-spool.sqlite3"
    first = run_and_kill(spool, "a", min_acks=3000, pg_url=url)
    stored, hourly = in_postgres(url)
    waiting = in_spool(spool)
    missing = first - stored - waiting
    assert not missing, f"{len(missing)} acknowledged records are in neither PostgreSQL nor the spool"
    assert hourly == len(stored)  # rollups committed with their rows

    second = run_and_kill(spool, "b", min_acks=2000, pg_url=url)  # the next start drains what waited
    # and a last, orderly run drains whatever the second kill left in the spool
    from app.config import parse_config

    ledger = Ledger(spool, prices=PriceBook.load(parse_config(HELPER_CONFIG)), store=PgStore(url), spool=Spool(spool))
    ledger.start()
    assert ledger.drain(30)
    ledger.close()
    stored, hourly = in_postgres(url)
    missing = (first | second) - stored
    assert not missing, f"{len(missing)} acknowledged records never reached PostgreSQL"
    assert hourly == len(stored) and not in_spool(spool)


HELPER_CONFIG = ANTHROPIC_CLIENT
