"""CSV exports of the Spend and Requests pages: exact numbers (dollars unrounded, tokens whole), times
in ISO 8601 local time with the offset, one header row. Spreadsheets open them as they are."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

from app.bridge.data import RequestRecord, SpendData

REQUEST_COLUMNS = ("started_at", "request_id", "session_id", "backend", "model", "requested_model", "route",
                   "status", "error_type", "input_tokens", "output_tokens", "cache_read_tokens",
                   "cache_write_tokens", "cost_usd", "ttft_ms", "duration_ms", "stop_reason", "client")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _num(v: float | int | None) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def requests_csv(records: Iterable[RequestRecord]) -> str:
    """The request log; an unpriced request has an empty cost (not 0)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(REQUEST_COLUMNS)
    for r in records:
        if r.in_flight:
            continue
        w.writerow([_when(r.started_at), r.request_id, r.session_id, r.backend, r.model, r.requested_model, r.route,
                    r.status, r.error_type or "", r.input_tokens, r.output_tokens, r.cache_read_tokens,
                    r.cache_write_tokens, _num(r.cost_usd), _num(r.ttft_ms), _num(r.duration_ms),
                    r.stop_reason or "", r.client or ""])
    return out.getvalue()


def spend_csv(data: SpendData) -> str:
    """The Spend page's series: one row per bucket and backend (or model)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("bucket_start", data.group_by, "cost_usd", "tokens", "requests"))
    for p in sorted(data.series, key=lambda p: (p.bucket_start, p.key)):
        w.writerow([_when(p.bucket_start), p.key, _num(p.cost_usd), p.tokens, p.requests])
    return out.getvalue()


def save(path: str, text: str) -> None:
    """Write one export to ``path`` (raises OSError; the page says what went wrong)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
