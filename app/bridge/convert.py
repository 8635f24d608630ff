"""Typed conversions from the core's types (events, ledger rows, budget and hardware samples)
to the frozen view data of :mod:`app.bridge.data`. Pure functions: no Qt, no I/O."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from app.bridge.data import BudgetView, RequestDetail, RequestRecord, StreamPiece, TopSession
from app.bridge.data_host import GpuView, HardwareView
from app.budgets.limits import BudgetStatus
from app.events import ContentDelta, RequestFinished, RequestStarted
from app.host.hardware import Sample
from app.ledger.rows import RequestDetail as LedgerDetail
from app.ledger.rows import RequestRow, SessionSummary, TokenRate
from app.units import fmt_money


def sentence(exc: BaseException) -> str:
    """An exception as a user sentence: our own errors already are one; others get a prefix."""
    text = str(exc).strip()
    mod = type(exc).__module__ or ""
    if mod.startswith("app.") and text:
        return text
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}." + (f" ({exc.filename})" if exc.filename else "")
    if not text:
        return f"An unexpected {type(exc).__name__} happened; see the log for details."
    return text if text.endswith((".", "!", "?")) else text + "."


def session_label(session_id: str, cwd: str | None, prompt: str | None) -> str:
    """What the dashboard calls a session: its folder, else its first prompt, else its id."""
    if cwd:
        return Path(cwd.rstrip("/\\")).name or cwd
    if prompt:
        p = " ".join(prompt.split())
        return p if len(p) <= 60 else p[:57] + "…"
    return session_id[:8] if session_id else "(no session)"


def started_line(ev: RequestStarted) -> str:
    """The stream's line when a request starts: when, where to, and which rule chose it."""
    how = {"pin": " (pinned)", "explicit": " (chosen by the client)", "active": ""}.get(ev.route, f" (rule: {ev.route})")
    if ev.route.startswith("budget"):
        how = " (budget downgrade)"
    clock = time.strftime("%H:%M:%S", time.localtime(ev.started_at))
    return f"{clock}  → {ev.backend} · {ev.model}{how}"


def finished_line(ev: RequestFinished, cost: float | None, api_equiv: float | None = None) -> str:
    """The stream's line when a request ends: its error, or its time, first token, tokens and cost."""
    if ev.error_type is not None or ev.status >= 400:
        return f"✗ {ev.status or ''} {ev.error_type or ''}: {ev.error_message or 'no details'}".replace("  ", " ")
    u = ev.usage
    parts = [f"✓ {ev.duration_ms / 1000:.1f} s"]
    if ev.ttft_ms is not None:
        parts.append(f"first token {ev.ttft_ms:.0f} ms")
    parts.append(f"{u.input_tokens + u.cache_read_input_tokens} in / {u.output_tokens} out")
    if api_equiv is not None:  # paid by a Claude subscription: its value, not spend
        parts.append(f"{fmt_money(api_equiv)} API-equiv.")
    elif cost is not None:
        parts.append(fmt_money(cost))
    return " · ".join(parts)


def coalesce(deltas: Iterable[ContentDelta]) -> list[StreamPiece]:
    """Merge deltas of the same request, block and kind (in order of first appearance)."""
    merged: dict[tuple[str, int, str], tuple[str, list[str]]] = {}
    for d in deltas:
        key = (d.request_id, d.index, d.kind)
        entry = merged.get(key)
        if entry is None:
            merged[key] = (d.session_id or "", [d.text])
        else:
            entry[1].append(d.text)
    return [StreamPiece(sid, rid, idx, kind, "".join(parts)) for (rid, idx, kind), (sid, parts) in merged.items()]


def record_from_started(ev: RequestStarted) -> RequestRecord:
    """A request in flight, as the request tables show it until it finishes."""
    return RequestRecord(
        request_id=ev.request_id, started_at=ev.started_at, session_id=ev.session_id or "", backend=ev.backend,
        model=ev.model, requested_model=ev.requested_model, route=ev.route, status=0, error_type=None,
        error_message=None, input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
        cost_usd=None, ttft_ms=None, duration_ms=0.0, client=ev.client, stream=ev.stream, in_flight=True,
    )


def record_from_finished(ev: RequestFinished, cost: float | None, api_equiv: float | None = None) -> RequestRecord:
    u = ev.usage
    return RequestRecord(
        request_id=ev.request_id, started_at=ev.started_at, session_id=ev.session_id or "",
        backend=ev.backend, model=ev.model, requested_model=ev.requested_model, route=ev.route,
        status=ev.status, error_type=ev.error_type, error_message=ev.error_message,
        input_tokens=u.input_tokens, output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_input_tokens, cache_write_tokens=u.cache_creation_input_tokens,
        cost_usd=cost, ttft_ms=ev.ttft_ms, duration_ms=ev.duration_ms, stop_reason=ev.stop_reason,
        client=ev.client, stream=ev.stream, api_equiv_usd=api_equiv,
    )


def record_from_row(row: RequestRow) -> RequestRecord:
    """A ledger row as the views' record (``cost_usd`` None: unpriced)."""
    return RequestRecord(
        request_id=row.request_id, started_at=row.started_at, session_id=row.session_id or "",
        backend=row.backend, model=row.model, requested_model=row.requested_model, route=row.route,
        status=row.status, error_type=row.error_type, error_message=row.error_message,
        input_tokens=row.input_tokens, output_tokens=row.output_tokens,
        cache_read_tokens=row.cache_read_tokens, cache_write_tokens=row.cache_write_tokens,
        cost_usd=row.cost_usd, ttft_ms=row.ttft_ms, duration_ms=row.duration_ms, stop_reason=row.stop_reason,
        client=row.client, stream=row.stream, api_equiv_usd=row.api_equiv_usd,
    )


def budget_view(status: BudgetStatus) -> BudgetView:
    b = status.budget
    label = f"{'All backends' if b.scope == 'all' else b.scope.partition(':')[2]} · per {b.period}"
    return BudgetView(label=label, scope=b.scope, period=b.period, spent_usd=status.spent_usd,
                      limit_usd=status.limit_usd, warn_at=b.warn_at, fraction=status.fraction, state=status.state,
                      resets_at=status.resets_at, action=b.action)


def hardware_view(s: Sample) -> HardwareView:
    h = s.host
    return HardwareView(
        s.t, h.cpu_pct, h.ram_used, h.ram_total, h.swap_used, h.swap_total,
        tuple(GpuView(g.name, g.vendor, g.util_pct, g.mem_used, g.mem_total, g.temp_c, g.power_w, g.unified)
              for g in s.gpus), s.gpu_util, s.vram_used, s.vram_total)


def tokens_per_minute(r: TokenRate) -> tuple[float, int, int]:
    """(minute start, input tokens incl. cache, output tokens)."""
    return r.minute_start, r.input_tokens + r.cache_read_tokens + r.cache_write_tokens, r.output_tokens


def top_session(r: SessionSummary, labels: dict[str, str]) -> TopSession:
    sid = r.session_id or ""
    return TopSession(
        session_id=sid, label=labels.get(sid) or session_label(sid, None, None), cost_usd=r.cost_usd,
        tokens=r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens,
        requests=r.requests, last_seen=r.last_seen, backends=", ".join(r.backends),
    )


def start_of_day(now: float | None = None) -> float:
    lt = time.localtime(now or time.time())
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def _body_text(b: bytes | None) -> str | None:
    if b is None:
        return None
    try:
        return json.dumps(json.loads(b), indent=2, ensure_ascii=False)
    except ValueError:
        return b.decode("utf-8", "replace")


def detail(d: LedgerDetail | RequestRecord) -> RequestDetail:
    """The request dialog's fields: from the ledger (with the captured bodies) or from what the
    bridge saw itself (a request not stored yet)."""
    rec = d if isinstance(d, RequestRecord) else record_from_row(d.row)
    fields: list[tuple[str, str]] = [
        ("Request id", rec.request_id),
        ("Started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.started_at))),
        ("Session", rec.session_id or "(none)"),
        ("Client", rec.client or "—"),
        ("Route", rec.route or "—"),
        ("Backend", rec.backend),
        ("Model asked for", rec.requested_model or "—"),
        ("Model served", rec.model),
        ("Status", "in flight" if rec.in_flight else str(rec.status)),
        ("Stop reason", rec.stop_reason or "—"),
        ("Error", f"{rec.error_type}: {rec.error_message}" if rec.error_type else "—"),
        ("Time to first token", f"{rec.ttft_ms:.0f} ms" if rec.ttft_ms is not None else "—"),
        ("Duration", f"{rec.duration_ms:.0f} ms"),
        ("Input tokens", str(rec.input_tokens)),
        ("Cache read / write tokens", f"{rec.cache_read_tokens} / {rec.cache_write_tokens}"),
        ("Output tokens", str(rec.output_tokens)),
        ("Cost", "no price known" if rec.cost_usd is None else f"${rec.cost_usd:.6f}"),
    ]
    if rec.api_equiv_usd is not None:  # paid by a Claude subscription: value, not spend
        fields.append(("API-equivalent (paid by the Claude plan)", f"${rec.api_equiv_usd:.6f}"))
    if isinstance(d, RequestRecord):
        return RequestDetail(rec, tuple(fields), None, None)
    return RequestDetail(rec, tuple(fields), _body_text(d.request_body), _body_text(d.response_body))
