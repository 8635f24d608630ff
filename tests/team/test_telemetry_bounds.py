"""One export keeps at most ``MAX_ROWS_PER_EXPORT`` rows: an identified client sending 8 MB of
tiny points cannot make the gateway write hundreds of thousands of rows (the intake and its store,
on a real SQLite ledger at the current schema)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint

from app.config.managed import TelemetryConfig
from app.ledger.schema import open_db
from app.team.identity import Identity
from app.team.telemetry import MAX_ROWS_PER_EXPORT, TelemetryIntake
from app.team.telemetry_store import TelemetryStore


def test_one_export_keeps_at_most_the_bound(tmp_path: Path) -> None:
    ledger = tmp_path / "usage.sqlite3"
    conn, _ = open_db(ledger)
    conn.close()
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics
    m.append(Metric(name="claude_code.token.usage"))
    m[-1].sum.data_points.extend(NumberDataPoint(as_double=float(i)) for i in range(3 * MAX_ROWS_PER_EXPORT))
    intake = TelemetryIntake(TelemetryConfig(), TelemetryStore(path=ledger))
    asyncio.run(intake.accept("metrics", "application/x-protobuf", req.SerializeToString(), b"", None,
                              Identity("alice@corp.example"), ("eng",)))
    asyncio.run(intake.aclose())
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT count(*) FROM telemetry").fetchone()[0] == MAX_ROWS_PER_EXPORT
