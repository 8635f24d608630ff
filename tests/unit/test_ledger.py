from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import random
import sqlite3
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.catalog.prices import PriceBook
from app.cli import usage as usage_cli
from app.config import LedgerSettings, parse_config
from app.events import BudgetAlert, ContentDelta, RequestFinished, Usage, finished_request
from app.ledger.reader import LedgerReader
from app.ledger.schema import SCHEMA_VERSION, LedgerError, open_db
from app.ledger.writer import Ledger
from app.logs.scrub import scrub
from app.paths import Paths
from tests.books import Books
from tests.config_text import ANTHROPIC_CLIENT, OLLAMA, OPENROUTER

UTC = ZoneInfo("UTC")
CONFIG = ANTHROPIC_CLIENT + OPENROUTER + OLLAMA
PRICES = PriceBook.load(parse_config(CONFIG))
RECENT = time.time() - 86400  # inside the capture retention (14 days)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def ev(rid: str, t: float, backend: str = "anthropic", model: str = "claude-sonnet-4-5", *,
       usage: Usage = Usage(1000, 100), session: str | None = "S1", route: str = "active",
       requested_model: str | None = None, ttft_ms: float | None = 120.5, **kw: Any) -> RequestFinished:
    return finished_request(rid, t, backend=backend, model=model, usage=usage, duration_ms=2500.0, session_id=session,
                            route=route, requested_model=requested_model, ttft_ms=ttft_ms, **kw)


def write(path: Path | Books, events: list[RequestFinished], settings: LedgerSettings = LedgerSettings()) -> Ledger:
    ledger = (path.ledger(PRICES, settings) if isinstance(path, Books)
              else Ledger(path, prices=PRICES, settings=settings))
    ledger.start()
    for e in events:
        ledger.sink(e)
    ledger.close()
    return ledger


def raw_rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# =========================================================================== writing


@pytest.fixture(params=["sqlite", "pg"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Books:
    """The ledger on each store: the same tests run against SQLite and PostgreSQL."""
    return Books(request.param, tmp_path, request.getfixturevalue("pg_server") if request.param == "pg" else None)


def test_every_column_is_written(books: Books) -> None:
    e = ev("req_1", at(2026, 1, 5, 10), usage=Usage(1000, 200, 300, 4000), route="budget:all / day $20",
           requested_model="claude-opus-5-5", stop_reason="tool_use", attempts=2, agent_id="agent-7")
    write(books, [e])
    with books.reader() as r:
        [row] = r.requests()
    assert row.request_id == "req_1" and row.started_at == e.started_at and row.ended_at == e.ended_at
    assert row.session_id == "S1" and row.client == "claude-cli/2.1.332 (external, sdk-cli)"
    assert row.route == "budget:all / day $20" and row.backend == "anthropic"
    assert row.requested_model == "claude-opus-5-5" and row.model == "claude-sonnet-4-5"
    assert row.stream is True and row.status == 200 and row.error_type is None and row.error_message is None
    assert row.stop_reason == "tool_use" and row.ttft_ms == 120.5 and row.duration_ms == 2500.0
    assert (row.input_tokens, row.output_tokens, row.cache_write_tokens, row.cache_read_tokens) == (1000, 200, 300, 4000)
    assert row.cost_usd == pytest.approx((1000 * 3 + 200 * 15 + 300 * 3.75 + 4000 * 0.3) / 1e6)
    assert row.attempts == 2 and row.agent_id == "agent-7"


def test_interrupted_rows_and_token_counts_are_kept_apart_on_either_store(books: Books) -> None:
    """A stream cut short keeps its usage and says so; a count_tokens call goes to token_counts and
    never into the requests, their rollups or the spending (the same on SQLite and PostgreSQL)."""
    t = at(2026, 1, 5, 10)
    cut = dataclasses.replace(ev("cut", t, status=499, error_type="client_closed"), interrupted=True)
    count = dataclasses.replace(ev("count", t + 1, usage=Usage(), stream=False), endpoint="count_tokens")
    write(books, [cut, count])
    write(books, [count])  # sent again (a retry after a failed commit): stored once
    with books.reader() as r:
        assert [(x.request_id, x.interrupted, x.input_tokens) for x in r.requests()] == [("cut", True, 1000)]
        assert r.token_counts() == 1
        [total] = r.totals(None, None, "day")
        assert total.requests == 1
    assert books.raw("SELECT request_id, backend, status FROM token_counts") == [("count", "anthropic", 200)]
    assert books.raw("SELECT sum(requests) FROM usage_hourly") == [(1,)]


def test_a_count_tokens_row_keeps_its_table_through_the_spool(tmp_path: Path) -> None:
    """The spool (PostgreSQL away) hands a count_tokens row back as one, and is owner-only."""
    from app.ledger.spool import Spool
    from app.ledger.store import Prepared

    spool = Spool(tmp_path / "data" / "ledger-spool.sqlite3")
    spool.open()
    try:
        spool.append([Prepared(("r1",) * 3), Prepared(("c1",) * 3, count=True)])
        last, got = spool.peek(10)
        assert last is not None and [(p.row[0], p.count) for p in got] == [("r1", False), ("c1", True)]
    finally:
        spool.close()
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data" / "ledger-spool.sqlite3").stat().st_mode & 0o777 == 0o600


def test_an_unpriced_request_is_stored_unpriced_not_zero(books: Books) -> None:
    write(books, [ev("a", at(2026, 1, 5, 10)), ev("b", at(2026, 1, 5, 10, 5), "openrouter", "someone/new-model")])
    assert books.raw("SELECT cost_usd IS NULL FROM requests WHERE request_id = 'b'") == [(1,)]
    with books.reader() as r:
        [b] = r.requests(status="unpriced")
        assert b.request_id == "b" and b.unpriced and b.input_tokens == 1000
        [total] = r.totals(None, None, "day")
        assert total.requests == 2 and total.unpriced_requests == 1
        assert total.cost_usd == pytest.approx(0.0045)


def test_capture_off_stores_no_bodies(books: Books) -> None:
    write(books, [ev("a", RECENT, request_body=b'{"model":"x"}', response_body=b"event: ...")],
          LedgerSettings(capture="off"))
    assert books.raw("SELECT count(*) FROM bodies") == [(0,)]
    with books.reader() as r:
        d = r.request_detail("a")
        assert d is not None and not d.captured and d.request_body is None


def test_capture_errors_stores_only_failed_requests(books: Books) -> None:
    body = b'{"model":"claude-sonnet-4-5","messages":[]}'
    write(books, [
        ev("ok", RECENT, request_body=body, response_body=b"fine"),
        ev("failed", RECENT + 3600, status=529, error_type="overloaded_error", error_message="Overloaded",
           request_body=body, response_body=b'{"type":"error"}'),
        ev("stream-error", RECENT + 7200, status=200, error_type="api_error", request_body=body),
    ], LedgerSettings(capture="errors"))
    assert sorted(books.raw("SELECT request_id FROM bodies")) == [("failed",), ("stream-error",)]
    with books.reader() as r:
        d = r.request_detail("failed")
        assert d is not None and d.captured and d.request_body == body and d.response_body == b'{"type":"error"}'


def test_capture_all_is_stored_compressed(books: Books) -> None:
    body = b'{"model":"claude-sonnet-4-5","messages":[' + b'{"role":"user","content":"hello there"},' * 500 + b"{}]}"
    write(books, [ev("a", RECENT, request_body=body, response_body=b"data: x\n\n" * 100)],
          LedgerSettings(capture="all"))
    [(enc, blob)] = books.raw("SELECT encoding, request FROM bodies")
    assert enc == "zlib" and len(blob) < len(body) / 10 and zlib.decompress(blob) == body
    with books.reader() as r:
        d = r.request_detail("a")
        assert d is not None and d.request_body == body and d.response_body == b"data: x\n\n" * 100


SECRETS = [
    b"sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    b"sk-or-v1-0123456789abcdef0123456789abcdef",
    b"sk-proj-ZZZZZZZZZZZZZZZZZZZZYYYYYYYY",
    b"tok-client-very-secret-1234",  # a non sk- token only found behind Bearer / x-api-key
    b"AKIAABCDEFGHIJKLMNOP",
    b"hunter2-password-value",
]


def test_nothing_secret_lands_in_the_database_or_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "usage.sqlite3"
    request = (b'{"headers":{"x-api-key":"' + SECRETS[0] + b'","Authorization":"Bearer ' + SECRETS[3] + b'"},'
               b'"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"my key is ' + SECRETS[1]
               + b' and AWS ' + SECRETS[4] + b'"}],"metadata":{"password":"' + SECRETS[5] + b'"}}')
    response = (b"HTTP/1.1 401\r\nAuthorization: Bearer " + SECRETS[3] + b"\r\nx-api-key: " + SECRETS[2]
                + b"\r\n\r\n{\"error\":\"Incorrect API key provided: " + SECRETS[2] + b"\"}")
    events = [
        ev("a", RECENT, request_body=request, response_body=response, status=401,
           error_type="authentication_error", error_message="Incorrect API key provided: " + SECRETS[2].decode()),
        ev("b", RECENT + 3600, request_body=request, response_body=b"ok"),
    ]
    ledger = Ledger(path, prices=PRICES, settings=LedgerSettings(capture="all"))
    ledger.start()
    for e in events:
        ledger.sink(e)
    assert ledger.flush()
    # the file as it is on disk, WAL included, before any checkpoint
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("usage.sqlite3"))
    ledger.close()
    with LedgerReader(path) as r:
        stored = []
        for rid in ("a", "b"):
            d = r.request_detail(rid)
            assert d is not None and d.captured
            stored += [d.request_body or b"", d.response_body or b"", (d.row.error_message or "").encode()]
    everything = on_disk + b"".join(stored) + caplog.text.encode()
    for secret in SECRETS:
        assert secret not in everything, secret
    # what is left is still useful
    assert b'"model":"claude-sonnet-4-5"' in stored[0] and b"[redacted]" in stored[0]
    assert stored[2].startswith(b"Incorrect API key provided:")


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = b'{"max_tokens":1000,"input_tokens":12,"content":"run disk-usage-report-1234567890abcdef and ask-me"}'
    assert scrub(text) == text


def test_retention_deletes_old_rows_and_bodies_but_keeps_the_rollups(books: Books) -> None:
    now = time.time()
    body = b'{"model":"m"}'
    events = [ev("old", now - 40 * 86400, request_body=body), ev("mid", now - 20 * 86400, request_body=body),
              ev("new", now - 3600, request_body=body)]
    write(books, events, LedgerSettings(capture="all", capture_retention_days=14, retention_days=None))
    # the next start applies retention: bodies older than 14 days go, rows stay
    write(books, [], LedgerSettings(capture="all", capture_retention_days=14, retention_days=None))
    assert books.raw("SELECT request_id FROM bodies") == [("new",)]
    assert books.raw("SELECT count(*) FROM requests") == [(3,)]
    write(books, [], LedgerSettings(capture="off", capture_retention_days=14, retention_days=30))
    assert sorted(books.raw("SELECT request_id FROM requests")) == [("mid",), ("new",)]
    with books.reader() as r:
        [t] = r.totals(None, None, "backend")
        assert t.requests == 3  # the graphs keep their history


def test_reconfigure_applies_new_capture_settings(books: Books) -> None:
    ledger = books.ledger(PRICES)
    ledger.start()
    ledger.record(ev("a", RECENT, request_body=b"{}"))
    assert ledger.flush()
    ledger.reconfigure(PRICES, LedgerSettings(capture="all"))
    ledger.record(ev("b", RECENT + 1, request_body=b"{}"))
    ledger.close()
    assert books.raw("SELECT request_id FROM bodies") == [("b",)]


def test_sink_records_finished_requests_only_and_never_raises(books: Books) -> None:
    ledger = books.ledger(PRICES)
    ledger.start()
    ledger.sink(ContentDelta("a", None, 0, "text", "hi"))
    ledger.sink(BudgetAlert("all / day", "warn", 1.0, 2.0, 0.0, "block"))
    ledger.sink(None)  # type: ignore[arg-type]
    ledger.sink(ev("a", at(2026, 1, 5)))
    ledger.close()
    assert books.raw("SELECT request_id FROM requests") == [("a",)]


def test_close_writes_everything_queued_and_reports_each_commit(books: Books) -> None:
    ledger = books.ledger(PRICES)
    committed: list[str] = []
    ledger.on_commit = committed.extend
    ledger.start()
    for i in range(3000):
        ledger.sink(ev(f"r{i}", at(2026, 1, 5) + i))
    ledger.close()
    assert books.raw("SELECT count(*) FROM requests") == [(3000,)]
    assert sorted(committed) == sorted(f"r{i}" for i in range(3000))


def test_a_malformed_record_is_reported_and_does_not_block_the_rest(books: Books) -> None:
    errors: list[str] = []
    ledger = books.ledger(PRICES)
    ledger.on_error = errors.append
    ledger.start()
    ledger.record(dataclasses.replace(ev("broken", at(2026, 1, 5)), started_at=None))
    ledger.record(ev("fine", at(2026, 1, 5)))
    ledger.close()
    ledger.start()  # the same ledger can be started again
    ledger.record(ev("later", at(2026, 1, 6)))
    ledger.close()
    assert sorted(books.raw("SELECT request_id FROM requests")) == [("fine",), ("later",)]
    assert len(errors) == 1 and "'broken'" in errors[0] and "bug" in errors[0]


def test_a_full_disk_keeps_records_queued_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    errors: list[str] = []
    ledger = Ledger(path, prices=PRICES)
    ledger.on_error = errors.append
    ledger.start()
    ledger.record(ev("first", at(2026, 1, 5)))
    assert ledger.flush()
    # Cap the file at its current size: SQLite then answers SQLITE_FULL, as on a full disk.
    conn = ledger._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    for i in range(100):
        ledger.record(ev(f"r{i}", at(2026, 1, 5, 1) + i, error_message="x" * 2000, status=500, error_type="api_error"))
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.02)
    assert errors, "on_error was not called"
    assert "is full" in errors[0] and "Free some space" in errors[0] and str(path) in errors[0]
    assert not ledger.flush(timeout=0.3)
    assert ledger.queued == 100  # nothing dropped
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert ledger.flush(timeout=15)
    ledger.close()
    assert raw_rows(path, "SELECT count(*) FROM requests") == [(101,)]


# =========================================================================== schema


def test_migration_from_v1_takes_a_backup_first(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    conn, backup = open_db(path, target=1)
    assert backup is None
    conn.execute(
        "INSERT INTO requests(request_id, started_at, ended_at, session_id, client, route, backend, requested_model, "
        "model, stream, status, duration_ms, input_tokens, output_tokens, cost_usd) "
        "VALUES ('old-1', ?, ?, 'S-old', 'claude-cli/2.1.197', 'active', 'anthropic', 'claude-sonnet-4-5', "
        "'claude-sonnet-4-5', 1, 200, 900.0, 1000, 100, 0.0045)", (at(2026, 1, 1, 9), at(2026, 1, 1, 9, 0, 1)))
    conn.close()

    ledger = Ledger(path, prices=PRICES)
    ledger.start()
    ledger.record(ev("new-1", at(2026, 1, 2, 9), session="S-old"))
    ledger.close()

    bak = ledger.backup_path
    assert bak is not None and bak.exists() and bak.name.startswith("usage.sqlite3.v1-")
    assert raw_rows(bak, "PRAGMA user_version") == [(1,)]
    assert raw_rows(bak, "SELECT request_id FROM requests") == [("old-1",)]
    assert raw_rows(bak, "SELECT name FROM sqlite_master WHERE name = 'usage_hourly'") == []

    assert raw_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    with LedgerReader(path, tz=UTC) as r:
        days = r.totals(None, None, "day")
        assert [(d.key, d.requests) for d in days] == [("2026-01-01", 1), ("2026-01-02", 1)]
        [s] = r.top_sessions(0)
        assert s.session_id == "S-old" and s.requests == 2 and s.cost_usd == pytest.approx(0.009)
        assert s.client == "claude-cli/2.1.197"


def test_a_ledger_from_a_newer_patchbay_is_refused_in_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    conn, _ = open_db(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer Patchbay.*Update Patchbay"):
        Ledger(path, prices=PRICES).start()
    with pytest.raises(LedgerError, match="newer Patchbay"):
        LedgerReader(path)


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_file_gives_a_clear_sentence(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "usage.sqlite3"
    path.write_bytes(content)
    with pytest.raises(LedgerError) as exc:
        Ledger(path, prices=PRICES).start()
    msg = str(exc.value)
    assert str(path) in msg and "Move it away" in msg and "Traceback" not in msg
    with pytest.raises(LedgerError, match="Move it away"):
        LedgerReader(path)


def test_reading_before_anything_was_recorded_says_so(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="No usage has been recorded yet"):
        LedgerReader(tmp_path / "usage.sqlite3")


# =========================================================================== queries

T = at(2026, 1, 5, 10)  # a Monday, 10:00 UTC
KNOWN = [
    ev("a1", T + 10, usage=Usage(1000, 100)),  # $0.0045
    ev("a2", T + 70, model="claude-opus-4-8", usage=Usage(2000, 200, 1000, 5000)),  # $0.02375
    ev("a3", T + 3605, "openrouter", "someone/unpriced", usage=Usage(500, 50), session="S2"),
    ev("a4", T + 86400, "ollama", "qwen3-coder:30b", usage=Usage(100, 10), session="S2"),
    ev("a5", T + 31 * 86400, usage=Usage(0, 0), session=None, status=529, error_type="overloaded_error",
       error_message="Overloaded"),
]


@pytest.fixture(scope="module", params=["sqlite", "pg"])
def known(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LedgerReader:
    b = Books(request.param, tmp_path_factory.mktemp("known"),
              request.getfixturevalue("pg_server") if request.param == "pg" else None)
    write(b, KNOWN)
    return b.reader(tz=UTC)


def test_cost_series_by_day_and_backend(known: LedgerReader) -> None:
    pts = known.cost_series(T - 3600, T + 40 * 86400, "day", "backend")
    got = [(p.bucket_start, p.key, round(p.cost_usd, 6), p.tokens, p.requests, p.unpriced_requests) for p in pts]
    assert got == [
        (at(2026, 1, 5), "anthropic", 0.02825, 1100 + 8200, 2, 0),
        (at(2026, 1, 5), "openrouter", 0.0, 550, 1, 1),
        (at(2026, 1, 6), "ollama", 0.0, 110, 1, 0),
        (at(2026, 2, 5), "anthropic", 0.0, 0, 1, 0),
    ]


def test_cost_series_by_hour_and_model_and_by_month(known: LedgerReader) -> None:
    pts = known.cost_series(T, T + 2 * 3600, "hour", "model")
    assert [(p.bucket_start, p.key, p.requests) for p in pts] == [
        (T, "claude-opus-4-8", 1), (T, "claude-sonnet-4-5", 1), (T + 3600, "someone/unpriced", 1)]
    months = known.cost_series(at(2026, 1, 1), at(2026, 3, 1), "month", "backend")
    assert [(p.bucket_start, p.key, p.requests) for p in months] == [
        (at(2026, 1, 1), "anthropic", 2), (at(2026, 1, 1), "ollama", 1), (at(2026, 1, 1), "openrouter", 1),
        (at(2026, 2, 1), "anthropic", 1)]
    # a window inside one hour reads the rows themselves
    inside = known.cost_series(T + 60, T + 120, "hour", "model")
    assert [(p.key, p.requests) for p in inside] == [("claude-opus-4-8", 1)]


def test_tokens_per_minute_fills_quiet_minutes_with_zeros(known: LedgerReader) -> None:
    rates = known.tokens_per_minute(T, T + 180)
    assert [(r.minute_start, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens)
            for r in rates] == [(T, 1000, 100, 0, 0), (T + 60, 2000, 200, 5000, 1000), (T + 120, 0, 0, 0, 0)]


def test_top_sessions(known: LedgerReader) -> None:
    s1, s2 = known.top_sessions(0)
    assert s1.session_id == "S1" and s1.cost_usd == pytest.approx(0.02825) and s1.requests == 2
    assert s1.backends == ("anthropic",) and s1.first_seen == T + 10 and s1.last_seen == T + 72.5
    assert s1.duration_s == pytest.approx(62.5) and s1.client and s1.client.startswith("claude-cli")
    assert s2.session_id == "S2" and s2.unpriced_requests == 1 and s2.backends == ("openrouter", "ollama")
    assert [s.session_id for s in known.top_sessions(0, order_by="recent")] == ["S2", "S1"]
    assert [s.session_id for s in known.top_sessions(T + 3600)] == ["S2"]
    assert len(known.top_sessions(0, limit=1)) == 1


def test_request_pages_and_filters(known: LedgerReader) -> None:
    ids = lambda rows: [r.request_id for r in rows]  # noqa: E731
    assert ids(known.requests()) == ["a5", "a4", "a3", "a2", "a1"]
    assert ids(known.requests(limit=2, offset=1)) == ["a4", "a3"]
    assert ids(known.requests(descending=False, limit=2)) == ["a1", "a2"]
    assert ids(known.requests(session_id="S1")) == ["a2", "a1"]
    assert ids(known.requests(backend="ollama")) == ["a4"]
    assert ids(known.requests(model="claude-opus-4-8")) == ["a2"]
    assert ids(known.requests(status="error")) == ["a5"]
    assert ids(known.requests(status="529")) == ["a5"]
    assert ids(known.requests(status="ok")) == ["a4", "a3", "a2", "a1"]
    assert ids(known.requests(status="unpriced")) == ["a3"]
    assert ids(known.requests(since=T + 3600)) == ["a5", "a4", "a3"]
    assert ids(known.requests(text="overloaded")) == ["a5"]
    assert ids(known.requests(text="100%")) == []
    assert ids(known.requests(order_by="cost_usd", descending=True))[0] == "a2"
    with pytest.raises(ValueError, match="cannot order requests by"):
        known.requests(order_by="cost_usd; DROP TABLE requests")


def test_totals_by_every_grouping(known: LedgerReader) -> None:
    by_backend = {t.key: t for t in known.totals(None, None, "backend")}
    assert by_backend["anthropic"].requests == 3 and by_backend["anthropic"].errors == 1
    assert by_backend["anthropic"].cost_usd == pytest.approx(0.02825)
    assert by_backend["openrouter"].unpriced_requests == 1
    assert by_backend["anthropic"].cache_read_tokens == 5000 and by_backend["anthropic"].cache_write_tokens == 1000
    assert [t.key for t in known.totals(T, T + 2 * 86400, "day")] == ["2026-01-05", "2026-01-06"]
    assert [t.key for t in known.totals(T, T + 2 * 3600, "hour")] == ["2026-01-05 10:00", "2026-01-05 11:00"]
    assert [t.key for t in known.totals(None, None, "model")][0] == "claude-opus-4-8"
    sessions = known.totals(None, None, "session")
    assert [(t.key, t.requests) for t in sessions] == [("S1", 2), ("S2", 2)]
    assert [(t.key, t.requests) for t in known.totals(T + 3600, None, "session")] == [("S2", 2)]


def test_spent(known: LedgerReader) -> None:
    assert known.spent(T - 10) == pytest.approx(0.02825)
    assert known.spent(T + 30) == pytest.approx(0.02375)  # not on an hour boundary
    assert known.spent(T, "openrouter") == 0.0
    assert known.spent(T + 86400) == 0.0


# ---------------------------------------------------------------- rollups agree with the rows

_rnd = random.Random(3)
_BASE = at(2026, 3, 1)
RANDOM = [
    ev(f"x{i}", _BASE + _rnd.uniform(0, 3 * 86400), _rnd.choice(["anthropic", "openrouter", "ollama"]),
       _rnd.choice(["claude-sonnet-4-5", "claude-opus-4-8", "someone/unpriced"]),
       usage=Usage(_rnd.randint(0, 5000), _rnd.randint(0, 900), _rnd.randint(0, 3000), _rnd.randint(0, 20000)),
       session=_rnd.choice(["A", "B", "C", None]))
    for i in range(400)
]


@pytest.fixture(scope="module", params=["sqlite", "pg"])
def randomized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LedgerReader:
    b = Books(request.param, tmp_path_factory.mktemp("random"),
              request.getfixturevalue("pg_server") if request.param == "pg" else None)
    write(b, RANDOM)
    return b.reader(tz=UTC)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.floats(-3600, 4 * 86400), length=st.floats(1, 4 * 86400))
def test_any_window_matches_the_rows_it_covers(randomized: LedgerReader, a: float, length: float) -> None:
    since, until = _BASE + a, _BASE + a + length
    inside = [e for e in RANDOM if since <= e.started_at < until]
    costs = [PRICES.cost(e.backend, e.model, e.usage) for e in inside]
    totals = randomized.totals(since, until, "backend")
    assert sum(t.requests for t in totals) == len(inside)
    assert sum(t.unpriced_requests for t in totals) == sum(c is None for c in costs)
    assert math.isclose(sum(t.cost_usd for t in totals), sum(c or 0 for c in costs), rel_tol=1e-9, abs_tol=1e-12)
    assert sum(t.cache_read_tokens for t in totals) == sum(e.usage.cache_read_input_tokens for e in inside)
    for bucket in ("hour", "day", "month"):
        series = randomized.cost_series(since, until, bucket, "model")  # type: ignore[arg-type]
        assert sum(p.requests for p in series) == len(inside)
        assert math.isclose(sum(p.cost_usd for p in series), sum(c or 0 for c in costs), rel_tol=1e-9, abs_tol=1e-12)
        assert all(randomized._bucket(p.bucket_start, bucket) == p.bucket_start for p in series)
    days = randomized.totals(since, until, "day")
    assert sum(t.requests for t in days) == len(inside)
    after = [c or 0 for e, c in ((e, PRICES.cost(e.backend, e.model, e.usage)) for e in RANDOM) if e.started_at >= since]
    assert math.isclose(randomized.spent(since), sum(after), rel_tol=1e-9, abs_tol=1e-12)


# =========================================================================== patchbay usage


def cli(paths: Paths, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="patchbay usage")
    usage_cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = usage_cli.run(args, paths, out=out, err=err, now=T + 40 * 86400, tz=UTC)
    return code, out.getvalue(), err.getvalue()


_BOOKS: dict[Path, Books] = {}


@pytest.fixture(params=["sqlite", "pg"])
def paths(request: pytest.FixtureRequest, tmp_path: Path) -> Paths:
    """Patchbay's folders; with "pg" the config's [ledger] url names a PostgreSQL ledger, and
    ``books_of(paths)`` writes there."""
    p = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "logs")
    books = Books(request.param, tmp_path / "data", request.getfixturevalue("pg_server") if request.param == "pg"
                  else None)
    _BOOKS[p.ledger_file] = books
    if books.url is not None:
        p.config_dir.mkdir(parents=True)
        p.config_file.write_text(CONFIG + f'[ledger]\nurl = "{books.url}"\n')
    return p


def books_of(paths: Paths) -> Books:
    return _BOOKS[paths.ledger_file]


def test_usage_says_so_when_nothing_was_recorded(paths: Paths) -> None:
    code, out, err = cli(paths)
    assert code == 1 and out == "" and "No usage has been recorded yet" in err and "Traceback" not in err


def test_usage_prints_an_aligned_table_with_totals_and_unpriced(paths: Paths) -> None:
    write(books_of(paths), KNOWN)
    code, out, err = cli(paths, "--since", "2026-01-01", "--by", "backend")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Usage from 2026-01-01 00:00 to 2026-02-14")
    table = lines[2:lines.index("", 2)]
    header = table[0]
    assert header.split() == ["backend", "requests", "input", "output", "cache", "write", "cache", "read", "cost"]
    rows = {ln.split()[0]: ln for ln in table[1:]}
    assert rows["anthropic"].rstrip().endswith("$0.028")  # $0.02825: two significant digits under a dollar
    assert rows["openrouter"].rstrip().endswith("unpriced") and "$0" not in rows["openrouter"]
    assert rows["total"].rstrip().endswith("$0.028 +1 unpriced")
    assert "3,000" in rows["anthropic"]  # input tokens, with separators
    # numbers are right-aligned under their headers
    col_end = header.index("requests") + len("requests")
    assert all(ln[:col_end].rstrip()[-1].isdigit() for ln in table[1:] if not ln.startswith("-"))
    assert "1 request used a model with no price" in out


def test_usage_shows_the_state_of_configured_budgets(paths: Paths) -> None:
    write(books_of(paths), KNOWN + [ev("today", T + 40 * 86400 - 60, model="claude-opus-4-8",
                                         usage=Usage(1_000_000))])  # $5 spent today
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    url = books_of(paths).url
    paths.config_file.write_text(CONFIG + '[[budgets]]\nscope = "all"\nperiod = "day"\nlimit_usd = 10.0\n'
                                 + (f'[ledger]\nurl = "{url}"\n' if url else ""))
    code, out, _ = cli(paths, "--since", "1d")
    assert code == 0
    assert "Budgets:" in out and "all / day $10: $5.00 spent (50%), ok, resets at 00:00 tomorrow" in out


def test_usage_json_and_csv(paths: Paths) -> None:
    write(books_of(paths), KNOWN)
    code, out, _ = cli(paths, "--since", "2026-01-05", "--until", "2026-01-06", "--by", "day", "--json")
    data = json.loads(out)
    assert code == 0 and data["by"] == "day"
    assert [(r["key"], r["requests"]) for r in data["rows"]] == [("2026-01-05", 3), ("2026-01-06", 1)]
    assert data["total"]["cost_usd"] == pytest.approx(0.02825) and data["total"]["unpriced_requests"] == 1
    code, out, _ = cli(paths, "--since", "2026-01-01", "--by", "model", "--csv")
    rows = out.strip().splitlines()
    assert rows[0].startswith("model,requests,input_tokens,output_tokens,cache_write_tokens,cache_read_tokens,cost_usd")
    unpriced = next(r for r in rows if r.startswith("someone/unpriced"))
    assert unpriced.split(",")[6] == ""  # unpriced, not 0
    assert rows[-1].startswith("total,5,")


def test_usage_sessions(paths: Paths) -> None:
    write(books_of(paths), KNOWN)
    code, out, _ = cli(paths, "--sessions", "--since", "2026-01-01")
    assert code == 0
    lines = out.splitlines()
    assert lines[2].split()[:2] == ["session", "client"]
    assert lines[3].startswith("S2") and "openrouter,ollama" in lines[3] and "$0.00 +1 unpriced" in lines[3]
    assert lines[4].startswith("S1") and "1m 02s" in lines[4] and "$0.028" in lines[4]
    code, out, _ = cli(paths, "--sessions", "--since", "2026-01-01", "--json")
    assert [s["session_id"] for s in json.loads(out)["sessions"]] == ["S2", "S1"]


def test_usage_rejects_a_bad_date_in_a_sentence(paths: Paths) -> None:
    write(books_of(paths), KNOWN)
    code, _out, err = cli(paths, "--since", "last tuesday")
    assert code == 2 and "--since 'last tuesday' is not a date" in err and "7d" in err
    code, _out, err = cli(paths, "--since", "2026-02-30")
    assert code == 2 and "not a real date" in err
    code, _out, err = cli(paths, "--since", "1d", "--until", "2d")
    assert code == 2 and "is not after --since" in err


def test_dates_parse_relative_and_absolute() -> None:
    now = at(2026, 1, 10, 15, 30)
    assert usage_cli.parse_when("7d", now) == now - 7 * 86400
    assert usage_cli.parse_when("24h", now) == now - 86400
    assert usage_cli.parse_when("30m", now) == now - 1800
    assert usage_cli.parse_when("2w", now) == now - 14 * 86400
    assert usage_cli.parse_when("2026-01-05", now, tz=UTC) == at(2026, 1, 5)
    assert usage_cli.parse_when("2026-01-05", now, end=True, tz=UTC) == at(2026, 1, 6)
    assert usage_cli.parse_when("today", now, tz=UTC) == at(2026, 1, 10)
    assert usage_cli.parse_when("yesterday", now, tz=UTC) == at(2026, 1, 9)
    assert usage_cli.cost_cell(0.0, 3, 3) == "unpriced"
    assert usage_cli.cost_cell(1.5, 3, 1) == "$1.50 +1 unpriced"
    assert usage_cli.cost_cell(0.004, 3, 0) == "$0.004"
    assert usage_cli.cost_cell(0.0021, 3, 0) == "$0.0021"
