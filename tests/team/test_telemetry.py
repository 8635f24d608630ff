"""Claude Code's OTLP export to a team ``patchbay serve`` (real process on loopback, team keys,
SQLite ledger; one case on PostgreSQL), sent with httpx as the OTLP/HTTP exporter sends it:
protobuf (Claude Code's default), JSON and gzip are kept as rows of the person the gateway
identified (not the user the client claims), rows past the retention are deleted, a collector
named by ``forward_to`` gets the request as it came without the caller's credential, and
``collect = false`` keeps nothing and pushes no telemetry env."""

from __future__ import annotations

import gzip
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from app.ledger.pg import PgLedgerReader
from app.team.telemetry_store import summaries
from tests.e2e.conftest import GatewayProcess, spawn_gateway
from tests.fakes.upstreams import FakeUpstream

ALICE, BOB = "alice@corp.example", "bob@corp.example"
PROTOBUF = {"content-type": "application/x-protobuf"}


def _config(up: str, telemetry: str = "", ledger: str = "") -> str:
    return f'''[gateway]
port = 0

[[backends]]
id = "main"
kind = "anthropic"
base_url = "{up}"
auth = "none"
models = ["claude-sonnet-4-6"]

[active]
backend = "main"
{ledger}
[team]
identity = ["keys"]
{telemetry}
[[team.groups]]
name = "eng"
members = ["*@corp.example"]
'''


def _kv(key: str, value: str | int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value))


def metrics(session: str, added: int, removed: int, claimed_user: str = "mallory@elsewhere.example") -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([_kv("service.name", "claude-code"), _kv("user.email", claimed_user)])
    sm = rm.scope_metrics.add()
    common = [_kv("session.id", session), _kv("user.email", claimed_user)]
    sm.metrics.append(Metric(name="claude_code.session.count"))
    sm.metrics[-1].sum.data_points.append(NumberDataPoint(as_double=1.0, attributes=common))
    sm.metrics.append(Metric(name="claude_code.lines_of_code.count"))
    for kind, n in (("added", added), ("removed", removed)):
        sm.metrics[-1].sum.data_points.append(NumberDataPoint(as_double=float(n), attributes=[*common, _kv("type", kind)]))
    return req.SerializeToString()


def events(session: str, *decisions: str, errors: int = 0) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    for d in decisions:
        sl.log_records.append(LogRecord(body=AnyValue(string_value="claude_code.tool_decision"), attributes=[
            _kv("session.id", session), _kv("event.name", "tool_decision"), _kv("decision", d),
            _kv("tool_name", "Edit")]))
    for _ in range(errors):
        sl.log_records.append(LogRecord(body=AnyValue(string_value="claude_code.api_error"), attributes=[
            _kv("session.id", session), _kv("status_code", "529"), _kv("error", "overloaded")]))
    return req


class Collector:
    """A company's OTLP collector: records what it is sent."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        got = self.got

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def _start(tmp_path: Path, up: FakeUpstream, telemetry: str = "", ledger: str = "") -> tuple[GatewayProcess, dict[str, str]]:
    gw = spawn_gateway(_config(up.url, telemetry, ledger), tmp_path / "gw")
    keys = {}
    for who in (ALICE, BOB):
        made = gw.cli("--config", str(gw.config_path), "team", "key", "create", who)
        assert made.returncode == 0, made.stderr
        keys[who] = made.stdout.strip()
    return gw, keys


def _rows(gw: GatewayProcess) -> list[tuple[Any, ...]]:
    with sqlite3.connect(gw.home / "data" / "usage.sqlite3") as db:
        return db.execute("SELECT user_id, signal, name, session_id, value, detail, attrs FROM telemetry "
                          "ORDER BY id").fetchall()


def _post(gw: GatewayProcess, key: str, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + path, content=body, headers={"authorization": f"Bearer {key}", **headers}, timeout=15)


def test_exports_are_kept_under_the_identified_person_and_pruned_after_the_retention(tmp_path: Path) -> None:
    with FakeUpstream(wire="anthropic") as up:
        gw, keys = _start(tmp_path, up)
        try:
            now = time.time()
            with sqlite3.connect(gw.home / "data" / "usage.sqlite3") as db:  # rows from before: 31 and 29 days old
                db.executemany("INSERT INTO telemetry(received_at, user_id, signal, name) VALUES (?, ?, 'logs', ?)",
                               [(now - 31 * 86400, ALICE, "old"), (now - 29 * 86400, ALICE, "recent")])
            r = _post(gw, keys[ALICE], "/v1/metrics", metrics("s-a1", 10, 2), **PROTOBUF)
            assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"", "application/x-protobuf")
            as_json = MessageToJson(events("s-a1", "accept", "reject", "accept", errors=1)).encode()
            r = _post(gw, keys[ALICE], "/v1/logs", as_json, **{"content-type": "application/json"})
            assert (r.status_code, r.json()) == (200, {})
            r = _post(gw, keys[BOB], "/v1/metrics", gzip.compress(metrics("s-b1", 5, 0, claimed_user=ALICE)),
                      **PROTOBUF, **{"content-encoding": "gzip"})
            assert r.status_code == 200
            spans = ExportTraceServiceRequest()
            spans.resource_spans.add().scope_spans.add().spans.append(Span(
                name="claude_code.llm_request", start_time_unix_nano=10**18, end_time_unix_nano=10**18 + 250_000_000,
                attributes=[_kv("session.id", "s-a1")]))
            assert _post(gw, keys[ALICE], "/v1/traces", spans.SerializeToString(), **PROTOBUF).status_code == 200
            rows = _rows(gw)
            assert (ALICE, "traces", "claude_code.llm_request", "s-a1", 250.0) in [r[:5] for r in rows]
            names = [r[2] for r in rows]
            assert "old" not in names and "recent" in names, "31 days old: deleted; 29 days: kept (30 by default)"
            bob = [r for r in rows if r[0] == BOB]
            assert bob and all(r[3] == "s-b1" for r in bob), "Bob's rows are Bob's, whatever his client claims"
            assert {r[3] for r in rows if r[0] == ALICE and r[2] != "recent"} == {"s-a1"}
            assert all("mallory" not in (r[6] or "") and ALICE not in (r[6] or "") for r in rows), \
                "the client's claims about who it is are not kept"
            assert keys[ALICE] not in "".join(map(str, rows)) + gw.log()
        finally:
            gw.stop()
        with sqlite3.connect(gw.home / "data" / "usage.sqlite3") as db:
            by = {s.user: s for s in summaries(_Reader(db), now - 86400)}
        assert (by[ALICE].sessions, by[ALICE].lines_added, by[ALICE].lines_removed) == (1, 10, 2)
        assert (by[ALICE].accepted, by[ALICE].rejected, by[ALICE].errors) == (2, 1, 1)
        assert (by[BOB].sessions, by[BOB].lines_added, by[BOB].errors) == (1, 5, 0)


class _Reader:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        return self.db.execute(sql, tuple(params)).fetchall()


def test_a_body_that_is_not_otlp_is_a_400_in_anthropics_shape(tmp_path: Path) -> None:
    with FakeUpstream(wire="anthropic") as up:
        gw, keys = _start(tmp_path, up)
        try:
            r = _post(gw, keys[ALICE], "/v1/metrics", b"\xff\xff\xff not protobuf", **PROTOBUF)
            assert r.status_code == 400
            assert r.json()["error"]["type"] == "invalid_request_error" and "OTLP" in r.json()["error"]["message"]
            assert httpx.get(gw.url + "/v1/logs", headers={"authorization": f"Bearer {keys[ALICE]}"}).status_code == 405
        finally:
            gw.stop()


def test_forward_to_relays_the_request_as_it_came_without_the_callers_credential(
        tmp_path: Path, collector: Collector) -> None:
    with FakeUpstream(wire="anthropic") as up:
        gw, keys = _start(tmp_path, up, f'\n[team.telemetry]\nforward_to = "{collector.url}"\n')
        try:
            body = gzip.compress(metrics("s-a1", 3, 1))
            assert _post(gw, keys[ALICE], "/v1/metrics", body, **PROTOBUF, **{"content-encoding": "gzip"}).status_code == 200
            deadline = time.monotonic() + 10
            while not collector.got and time.monotonic() < deadline:
                time.sleep(0.05)
            path, headers, got = collector.got[0]
            assert (path, got) == ("/v1/metrics", body)
            assert headers["content-type"] == "application/x-protobuf" and headers["content-encoding"] == "gzip"
            assert headers["x-patchbay-user"] == ALICE
            assert "authorization" not in headers and keys[ALICE] not in str(headers)
            assert len(_rows(gw)) == 3, "forwarding keeps the rows too"
        finally:
            gw.stop()


def test_collect_false_keeps_nothing_and_pushes_no_telemetry_env(tmp_path: Path) -> None:
    with FakeUpstream(wire="anthropic") as up:
        gw, keys = _start(tmp_path, up, "\n[team.telemetry]\ncollect = false\n")
        try:
            assert _post(gw, keys[ALICE], "/v1/metrics", metrics("s", 1, 1), **PROTOBUF).status_code == 200
            assert _rows(gw) == []
            env = httpx.get(gw.url + "/managed/settings", headers={"authorization": f"Bearer {keys[ALICE]}"}).json()
            assert "CLAUDE_CODE_ENABLE_TELEMETRY" not in env["settings"]["env"]
        finally:
            gw.stop()


def test_telemetry_on_the_postgresql_ledger_and_its_summary_through_the_reader(tmp_path: Path, pg_server: Any) -> None:
    url = pg_server.create_db()
    with FakeUpstream(wire="anthropic") as up:
        gw, keys = _start(tmp_path, up, ledger=f'\n[ledger]\nurl = "{url}"\n')
        try:
            env = httpx.get(gw.url + "/managed/settings", headers={"authorization": f"Bearer {keys[ALICE]}"}).json()
            assert env["settings"]["env"]["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
            assert _post(gw, keys[ALICE], "/v1/metrics", metrics("s-pg", 7, 3), **PROTOBUF).status_code == 200
            assert _post(gw, keys[BOB], "/v1/logs", events("s-pg-b", "reject").SerializeToString(),
                         **PROTOBUF).status_code == 200
        finally:
            gw.stop()
    reader = PgLedgerReader(url)
    try:
        by = {s.user: s for s in summaries(reader, time.time() - 3600)}
    finally:
        reader.close()
    assert (by[ALICE].sessions, by[ALICE].lines_added, by[ALICE].lines_removed) == (1, 7, 3)
    assert (by[BOB].rejected, by[BOB].accepted) == (1, 0)
