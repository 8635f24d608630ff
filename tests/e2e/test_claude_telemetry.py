"""The real Claude Code CLI 2.1.332 exports its OTLP telemetry to a team ``patchbay serve``: two
people, each with their own team key as ``ANTHROPIC_AUTH_TOKEN`` and in
``OTEL_EXPORTER_OTLP_HEADERS``, one on the default protobuf and one on ``http/json``; each
session's rows land in the ledger under the person who sent them, and the Team page's summary
counts one session each."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.team.telemetry_store import summaries
from tests.e2e.conftest import spawn_gateway
from tests.fakes import AnthropicStream, FakeUpstream, anthropic_text_events
from tests.fakes.upstreams import ReceivedRequest, Response

pytestmark = pytest.mark.e2e

ALICE, BOB = "alice@corp.example", "bob@corp.example"


def _config(url: str) -> str:
    return f"""[gateway]
port = 0

[[backends]]
id = "main"
kind = "anthropic"
base_url = "{url}"
auth = "none"
models = ["claude-sonnet-4-6"]

[active]
backend = "main"
model = "claude-sonnet-4-6"

[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
"""


def _responder(req: ReceivedRequest) -> Response | None:
    if not req.path.endswith("/v1/messages"):
        return None
    return AnthropicStream(anthropic_text_events("hi", 1, usage=(20, 2), model="claude-sonnet-4-6"))


class _Reader:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        return self.db.execute(sql, tuple(params)).fetchall()


def test_claude_codes_telemetry_is_kept_under_the_person_who_sent_it(
        tmp_path: Path, run_claude: Callable[..., Any], workdir: Path) -> None:
    with FakeUpstream(_responder, wire="anthropic") as up:
        gw = spawn_gateway(_config(up.url), tmp_path / "gw")
        try:
            keys = {}
            for who in (ALICE, BOB):
                made = gw.cli("team", "key", "create", who)
                assert made.returncode == 0, made.stderr
                keys[who] = made.stdout.strip()
            sessions = {}
            for who, protocol in ((ALICE, "http/protobuf"), (BOB, "http/json")):
                env = {"DISABLE_TELEMETRY": "", "CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_METRICS_EXPORTER": "otlp",
                       "OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": gw.url,
                       "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                       "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {keys[who]}"}
                res = run_claude("say hi", base_url=gw.url, cwd=workdir, token=keys[who], extra_env=env,
                                 home=tmp_path / f"home-{who}")
                assert res.returncode == 0, res.describe()
                sessions[who] = res.json["session_id"]
            db_path = gw.home / "data" / "usage.sqlite3"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with sqlite3.connect(db_path) as db:
                    rows = db.execute("SELECT user_id, signal, name, session_id FROM telemetry").fetchall()
                if {r[0] for r in rows if r[1] == "metrics"} == {ALICE, BOB}:
                    break
                time.sleep(0.2)
        finally:
            gw.stop()
    for who in (ALICE, BOB):
        mine = [r for r in rows if r[0] == who]
        assert {r[1] for r in mine} == {"logs", "metrics"}, (who, rows)
        assert {r[3] for r in mine} == {sessions[who]}, "each row is of the session its sender ran"
        assert ("metrics", "claude_code.session.count") in {(r[1], r[2]) for r in mine}
    with sqlite3.connect(db_path) as db:
        by = {s.user: s for s in summaries(_Reader(db), time.time() - 3600)}
    assert by[ALICE].sessions == by[BOB].sessions == 1
    assert keys[ALICE] not in gw.log() and keys[BOB] not in gw.log()
