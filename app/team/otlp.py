"""Claude Code's OTLP/HTTP exports, read into flat rows: one per metric data point, log event or span.

Claude Code 2.1.332 sends ``application/x-protobuf`` by default (``application/json`` with
``OTEL_EXPORTER_OTLP_PROTOCOL=http/json``): both are decoded with the OpenTelemetry project's own
generated classes (``opentelemetry-proto``: the OTLP schema as published, kept current by the
project; ``google.protobuf.json_format`` reads the JSON form of the same messages). What a row keeps:

- ``name``: the metric's name (``claude_code.lines_of_code.count``), the event's
  (``claude_code.tool_decision``, from the log body or its ``event.name``), or the span's;
- ``session_id``: the ``session.id`` attribute Claude Code puts on everything;
- ``value``: a point's value, a span's duration in ms, 1 for an event;
- ``detail``: the attribute summaries group by (``DETAIL_KEYS``: lines ``type``, a ``decision``, an
  error's ``status_code``);
- ``attrs``: the other attributes, without the client's claims about who it is (``user.*``,
  ``organization.id``: the gateway attributes a row to the person it identified), at most 4 KB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MESSAGES: dict[str, Any] = {"metrics": ExportMetricsServiceRequest, "logs": ExportLogsServiceRequest,
            "traces": ExportTraceServiceRequest}
DETAIL_KEYS = ("type", "decision", "status_code")
DROPPED = ("session.id", "organization.id")
MAX_ATTRS = 4096


class NotOTLP(ValueError):
    """The body is not an OTLP export of the signal its path names."""


@dataclass(frozen=True, slots=True)
class Row:
    signal: str
    name: str
    session_id: str | None
    value: float
    detail: str | None
    attrs: str | None  # JSON


def parse(signal: str, content_type: str, body: bytes) -> list[Row]:
    msg = MESSAGES[signal]()
    try:
        if content_type == "application/json":
            json_format.Parse(body.decode("utf-8"), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise NotOTLP(f"not an OTLP {signal} export ({type(exc).__name__})") from None
    if signal == "metrics":
        return list(_metrics(msg))
    if signal == "logs":
        return list(_logs(msg))
    return list(_spans(msg))


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def _row(signal: str, name: str, value: float, attributes: Any) -> Row:
    attrs = {kv.key: _value(kv.value) for kv in attributes}
    session = attrs.get("session.id")
    detail = next((str(attrs[k]) for k in DETAIL_KEYS if k in attrs), None)
    kept = {k: v for k, v in attrs.items() if k not in DROPPED and not k.startswith("user.")}
    text = orjson.dumps(kept).decode() if kept else None
    if text is not None and len(text) > MAX_ATTRS:
        text = orjson.dumps({"truncated": True, "keys": sorted(kept)[:50]}).decode()[:MAX_ATTRS]
    return Row(signal, name, str(session) if session is not None else None, value, detail, text)


def _metrics(msg: Any) -> Iterator[Row]:
    for rm in msg.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind in ("sum", "gauge"):
                    for p in getattr(m, kind).data_points:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        yield _row("metrics", m.name, v, p.attributes)
                elif kind in ("histogram", "exponential_histogram", "summary"):
                    for p in getattr(m, kind).data_points:
                        yield _row("metrics", m.name, float(p.sum), p.attributes)


def _logs(msg: Any) -> Iterator[Row]:
    for rl in msg.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                name = r.event_name or (r.body.string_value if r.body.WhichOneof("value") == "string_value" else "")
                if not name:
                    name = next((kv.value.string_value for kv in r.attributes if kv.key == "event.name"), "log")
                yield _row("logs", name, 1.0, r.attributes)


def _spans(msg: Any) -> Iterator[Row]:
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                ms = max(0, s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
                yield _row("traces", s.name, ms, s.attributes)
