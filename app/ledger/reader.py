"""Reading the usage ledger: ``LedgerReader`` and its queries.

``LedgerReader`` opens its own read-only connection (safe to share between threads: one query at a
time) on a file at this Patchbay's ``SCHEMA_VERSION`` and answers the GUI's graphs and ``patchbay
usage`` with the rows of app/ledger/rows.py. Sums over whole hours come from the hourly rollup, the partial hours at either edge from
the rows, so a dashboard query stays fast at millions of rows. ``PgLedgerReader``
(app/ledger/pg.py) answers the same questions from PostgreSQL.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal

from app.ledger.rows import (
    Bucket,
    RequestDetail,
    RequestRow,
    SeriesPoint,
    SessionSummary,
    SubscriptionTotals,
    TokenRate,
    TotalsRow,
    _decompress,
)
from app.ledger.schema import SCHEMA_VERSION, LedgerError, _not_usable
from app.ledger.store import HOUR

__all__ = ["Bucket", "LedgerReader", "RequestDetail", "RequestRow", "SeriesPoint", "SessionSummary", "TokenRate",
           "TotalsRow"]

_ROW_COLS = ("request_id, started_at, ended_at, session_id, client, route, backend, requested_model, model, stream, "
             "status, error_type, error_message, stop_reason, ttft_ms, duration_ms, input_tokens, output_tokens, "
             "cache_write_tokens, cache_read_tokens, cost_usd, attempts, agent_id, interrupted, plan, api_equiv_usd")
_ORDERABLE = {"started_at", "ended_at", "duration_ms", "ttft_ms", "cost_usd", "input_tokens", "output_tokens",
              "cache_read_tokens", "cache_write_tokens", "status", "backend", "model", "session_id", "requested_model"}
_AGG = ("count(*), sum(status >= 400 OR error_type IS NOT NULL), sum(cost_usd IS NULL), total(cost_usd), "
        "sum(input_tokens), sum(output_tokens), sum(cache_write_tokens), sum(cache_read_tokens)")


def _to_row(r: Sequence[Any]) -> RequestRow:
    return RequestRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11], r[12], r[13],
                      r[14], r[15], r[16], r[17], r[18], r[19], r[20], r[21], r[22], bool(r[23]), r[24], r[25])


class LedgerReader:
    """Read-only queries with their own connection. Thread-safe (one query at a time)."""

    def __init__(self, path: Path, *, tz: tzinfo | None = None) -> None:
        self.path = Path(path)
        self.tz = tz
        if not self.path.exists():
            raise LedgerError(f"No usage has been recorded yet: {self.path} does not exist. Start the gateway "
                              "(patchbay, or patchbay serve) and send Claude Code through it.")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise _not_usable(self.path, exc) from None
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _not_usable(self.path, exc) from None
        if version != SCHEMA_VERSION:
            conn.close()
            if version > SCHEMA_VERSION:
                raise LedgerError(f"The usage ledger {self.path} was written by a newer Patchbay (schema "
                                  f"{version}). Update Patchbay to read it.")
            if version == 0:
                raise _not_usable(self.path, Exception("it has no Patchbay schema"))
            raise LedgerError(f"The usage ledger {self.path} has an older layout (schema {version}). Start "
                              "Patchbay (or patchbay serve) once to upgrade it; a backup is made first.")
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-32000")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA mmap_size=268435456")
        self._conn = conn
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Rows of one SELECT written for SQLite (the PostgreSQL reader respells it): for readers
        of tables of their own, e.g. app/team/telemetry_store.py."""
        return self._q(sql, params)

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                if "malformed" in str(exc) or "not a database" in str(exc):
                    raise _not_usable(self.path, exc) from None
                raise

    # ------------------------------------------------------------------ hour rollups + raw edges

    def _agg(self, since: float | None, until: float | None, bucket: Literal["hour", "day", "month", "all"],
             key: Literal["backend", "model", "none"], backend: str | None = None, *, lean: bool = False
             ) -> dict[tuple[float, str], list[Any]]:
        """Sums for [since, until) per (bucket start, key): whole hours come from the hourly
        rollup (bucketed into local days / months inside SQLite), the partial hours at either
        edge from the rows themselves. Values: [requests, errors, unpriced, cost, in, out, cw, cr],
        or with ``lean`` [cost, tokens, requests, unpriced] (fewer values to fetch, for graphs).
        ``bucket="all"`` puts everything in one bucket starting at ``since`` (0 when None)."""
        kcol = {"backend": "backend", "model": "model", "none": "''"}[key]
        if lean:
            sums = ("total(cost_usd), sum(input_tokens + output_tokens + cache_write_tokens + cache_read_tokens), "
                    "sum(requests), sum(unpriced)")
            raw_sums = ("total(cost_usd), sum(input_tokens + output_tokens + cache_write_tokens + cache_read_tokens), "
                        "count(*), sum(cost_usd IS NULL)")
        else:
            sums = ("sum(requests), sum(errors), sum(unpriced), total(cost_usd), sum(input_tokens), "
                    "sum(output_tokens), sum(cache_write_tokens), sum(cache_read_tokens)")
            raw_sums = _AGG
        bf, bp = (" AND backend = ?", [backend]) if backend is not None else ("", [])
        acc: dict[tuple[float, str], list[Any]] = {}
        all_start = 0.0 if since is None else since

        def add(b: float, k: str, vals: Sequence[Any]) -> None:
            a = acc.get((b, k))
            if a is None:
                acc[(b, k)] = list(vals)
            else:
                for i in range(len(a)):
                    a[i] += vals[i]

        h0 = None if since is None else math.ceil(since / HOUR) * HOUR
        h1 = None if until is None else math.floor(until / HOUR) * HOUR
        edges: list[tuple[float, float]] = []
        if h0 is not None and h1 is not None and h0 >= h1:
            edges.append((since, until))  # type: ignore[arg-type]
        else:
            if since is not None and h0 is not None and since < h0:
                edges.append((since, h0))
            if until is not None and h1 is not None and h1 < until:
                edges.append((h1, until))
            if h0 is None or h1 is None:
                lo_hi = self._q(f"SELECT min(hour_start), max(hour_start) FROM usage_hourly WHERE 1{bf}", bp)[0]
                if lo_hi[0] is None:
                    lo, hi = 0.0, 0.0
                else:
                    lo = float(lo_hi[0]) if h0 is None else float(h0)
                    hi = float(lo_hi[1]) + HOUR if h1 is None else float(h1)
            else:
                lo, hi = float(h0), float(h1)
            if lo < hi:
                if bucket == "all":
                    for r in self._q(f"SELECT {kcol}, {sums} FROM usage_hourly WHERE hour_start >= ? AND "
                                     f"hour_start < ?{bf} GROUP BY 1", [lo, hi, *bp]):
                        add(all_start, r[0], r[1:])
                elif bucket == "hour":
                    for r in self._q(f"SELECT hour_start, {kcol}, {sums} FROM usage_hourly WHERE hour_start >= ? "
                                     f"AND hour_start < ?{bf} GROUP BY 1, 2", [lo, hi, *bp]):
                        acc[(float(r[0]), r[1])] = list(r[2:])  # unique per (hour, key); edges come later
                else:
                    ranges = self._ranges(lo, hi, bucket)
                    for i in range(0, len(ranges), 300):  # stay far below SQLite's bound-parameter limit
                        part = ranges[i:i + 300]
                        values = ",".join("(?,?,?)" for _ in part)
                        flat = [x for rg in part for x in rg]
                        sql = (f"WITH b(s, lo, hi) AS (VALUES {values}) SELECT b.s, {kcol}, {sums} FROM b "
                               f"JOIN usage_hourly ON hour_start >= b.lo AND hour_start < b.hi{bf} GROUP BY 1, 2")
                        for r in self._q(sql, [*flat, *bp]):
                            add(float(r[0]), r[1], r[2:])
        for a, b in edges:
            raw = self._q(f"SELECT CAST(started_at / 3600 AS INTEGER) * 3600, {kcol}, {raw_sums} FROM requests "
                          f"WHERE started_at >= ? AND started_at < ?{bf} GROUP BY 1, 2", [a, b, *bp])
            for r in raw:
                add(all_start if bucket == "all" else self._bucket(float(r[0]), bucket), r[1], r[2:])
        return acc

    def _ranges(self, lo: float, hi: float, bucket: str) -> list[tuple[float, float, float]]:
        """(bucket start, from, to) for each local day or month touching [lo, hi)."""
        out = []
        b = self._bucket(lo, bucket)
        while b < hi:
            nxt = self._bucket(b + (36 * HOUR if bucket == "day" else 32 * 86400), bucket)
            out.append((b, max(b, lo), min(nxt, hi)))
            b = nxt
        return out

    def _bucket(self, ts: float, bucket: str) -> float:
        if bucket == "hour":
            return float(int(ts // HOUR) * HOUR)
        dt = datetime.fromtimestamp(ts, self.tz) if self.tz is not None else datetime.fromtimestamp(ts)
        d = dt.date() if bucket == "day" else dt.date().replace(day=1)
        if self.tz is None:
            return time.mktime((d.year, d.month, d.day, 0, 0, 0, 0, 0, -1))
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()

    def _label(self, ts: float, by: str) -> str:
        dt = datetime.fromtimestamp(ts, self.tz) if self.tz is not None else datetime.fromtimestamp(ts)
        return dt.strftime("%Y-%m-%d %H:00" if by == "hour" else "%Y-%m-%d")

    # ------------------------------------------------------------------ dashboard queries

    def cost_series(self, since: float, until: float, bucket: Bucket, group_by: Literal["backend", "model"]
                    ) -> list[SeriesPoint]:
        """Cost, tokens and requests per time bucket (local time) and backend or model."""
        if bucket not in ("hour", "day", "month"):
            raise ValueError(f"bucket must be hour, day or month, not {bucket!r}")
        if group_by not in ("backend", "model"):
            raise ValueError(f"group_by must be backend or model, not {group_by!r}")
        acc = self._agg(since, until, bucket, group_by, lean=True)
        return [SeriesPoint(b, k, v[0], v[1], v[2], v[3]) for (b, k), v in sorted(acc.items())]

    def tokens_per_minute(self, since: float, until: float) -> list[TokenRate]:
        """Tokens per minute (by request start), every minute of [since, until), zeros included."""
        rows = self._q("SELECT CAST(started_at / 60 AS INTEGER) * 60, sum(input_tokens), sum(output_tokens), "
                       "sum(cache_read_tokens), sum(cache_write_tokens) FROM requests "
                       "WHERE started_at >= ? AND started_at < ? GROUP BY 1", [since, until])
        got = {r[0]: r for r in rows}
        out = []
        m = int(since // 60) * 60
        while m < until:
            r = got.get(m)
            out.append(TokenRate(float(m), r[1], r[2], r[3], r[4]) if r else TokenRate(float(m), 0, 0, 0, 0))
            m += 60
        return out

    def top_sessions(self, since: float, limit: int = 20, order_by: Literal["cost", "recent"] = "cost"
                     ) -> list[SessionSummary]:
        """Claude Code sessions active since ``since``, most expensive (or most recent) first."""
        order = "cost_usd DESC, last_seen DESC" if order_by == "cost" else "last_seen DESC"
        rows = self._q("SELECT session_id, first_seen, last_seen, requests, input_tokens, output_tokens, "
                       "cache_read_tokens, cache_write_tokens, cost_usd, unpriced, backends, client FROM sessions "
                       f"WHERE last_seen >= ? ORDER BY {order} LIMIT ?", [since, int(limit)])
        return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                               tuple(x for x in (r[10] or "").split(",") if x), r[11]) for r in rows]

    def requests(self, *, limit: int = 200, offset: int = 0, since: float | None = None,
                 session_id: str | None = None, backend: str | None = None, model: str | None = None,
                 status: str | None = None, text: str | None = None, order_by: str = "started_at",
                 descending: bool = True) -> list[RequestRow]:
        """A page of requests. ``status``: "ok", "error", "unpriced", or an HTTP code like "429";
        ``text`` matches ids, session, models, backend, client and error text."""
        if order_by not in _ORDERABLE:
            raise ValueError(f"cannot order requests by {order_by!r}; use one of {', '.join(sorted(_ORDERABLE))}")
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("started_at >= ?"); params.append(since)  # noqa: E702
        if session_id is not None:
            where.append("session_id = ?"); params.append(session_id)  # noqa: E702
        if backend is not None:
            where.append("backend = ?"); params.append(backend)  # noqa: E702
        if model is not None:
            where.append("(model = ? OR requested_model = ?)"); params += [model, model]  # noqa: E702
        if status is not None:
            if status == "ok":
                where.append("status < 400 AND error_type IS NULL")
            elif status == "error":
                where.append("(status >= 400 OR error_type IS NOT NULL)")
            elif status == "unpriced":
                where.append("cost_usd IS NULL")
            elif status.isdigit():
                where.append("status = ?"); params.append(int(status))  # noqa: E702
            else:
                raise ValueError(f"status filter {status!r}: use ok, error, unpriced or an HTTP code")
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            cols = ("request_id", "session_id", "model", "requested_model", "backend", "client", "error_message",
                    "error_type")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in cols) + ")")
            params += [like] * len(cols)
        direction = "DESC" if descending else "ASC"
        sql = (f"SELECT {_ROW_COLS} FROM requests" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {order_by} {direction}, id {direction} LIMIT ? OFFSET ?")
        return [_to_row(r) for r in self._q(sql, [*params, int(limit), int(offset)])]

    def request_detail(self, request_id: str) -> RequestDetail | None:
        rows = self._q(f"SELECT {_ROW_COLS} FROM requests WHERE request_id = ?", [request_id])
        if not rows:
            return None
        body = self._q("SELECT encoding, request, response FROM bodies WHERE request_id = ?", [request_id])
        if not body:
            return RequestDetail(_to_row(rows[0]), None, None, False)
        enc, req, resp = body[0]
        return RequestDetail(_to_row(rows[0]), _decompress(req, enc), _decompress(resp, enc), True)

    def totals(self, since: float | None, until: float | None,
               by: Literal["day", "hour", "backend", "model", "session", "user", "group"]) -> list[TotalsRow]:
        """Requests, tokens and cost for [since, until) grouped by time bucket, backend, model,
        session, user or group (team mode; a request of someone in two groups counts in both; "-":
        no user or group recorded). Time groups are chronological; the others most expensive first."""
        if by in ("user", "group"):
            col = "user_id" if by == "user" else "groups"
            rows = self._q(f"SELECT {col}, {_AGG} FROM requests WHERE started_at >= ? AND started_at < ? "
                           f"GROUP BY {col}", [-1e18 if since is None else since, 1e18 if until is None else until])
            sums: dict[str, list[float]] = {}
            for r in rows:
                keys = [r[0] or "-"] if by == "user" else ((r[0] or "").split(",") if r[0] else ["-"])
                for k in keys:
                    a = sums.setdefault(k, [0.0] * 8)
                    for i in range(8):
                        a[i] += float(r[1 + i] or 0)
            who = [TotalsRow(k, int(a[0]), int(a[4]), int(a[5]), int(a[6]), int(a[7]), a[3], int(a[2]), int(a[1]))
                   for k, a in sums.items()]
            return sorted(who, key=lambda t: (-t.cost_usd, -t.requests, t.key))
        if by == "session":
            if since is None and until is None:
                rows = self._q("SELECT session_id, requests, 0, unpriced, cost_usd, input_tokens, output_tokens, "
                               "cache_write_tokens, cache_read_tokens FROM sessions")
            else:
                rows = self._q(f"SELECT session_id, {_AGG} FROM requests WHERE session_id IS NOT NULL "
                               "AND started_at >= ? AND started_at < ? GROUP BY session_id",
                               [-1e18 if since is None else since, 1e18 if until is None else until])
            out = [TotalsRow(r[0], r[1], r[5], r[6], r[7], r[8], r[4], r[3], r[2]) for r in rows]
            return sorted(out, key=lambda t: (-t.cost_usd, -t.requests, t.key))
        if by not in ("day", "hour", "backend", "model"):
            raise ValueError(f"cannot group usage by {by!r}; use day, hour, backend, model or session")
        timed = by in ("day", "hour")
        acc = self._agg(since, until, by if timed else "all", "none" if timed else by)  # type: ignore[arg-type]
        out = []
        for (b, k), a in acc.items():
            out.append(TotalsRow(self._label(b, by) if timed else k, int(a[0]), int(a[4]), int(a[5]), int(a[6]),
                                 int(a[7]), float(a[3]), int(a[2]), int(a[1]), b if timed else None))
        if by in ("day", "hour"):
            return sorted(out, key=lambda t: t.bucket_start or 0.0)
        return sorted(out, key=lambda t: (-t.cost_usd, -t.requests, t.key))

    def subscription_totals(self, since: float | None, until: float | None = None,
                            backend: str | None = None) -> SubscriptionTotals:
        """Requests served under a Claude subscription in ``[since, until)`` (on one backend, or all)
        and their value at API prices: shown apart from spend (their ``cost_usd`` is 0)."""
        where, params = ("AND backend = ?", [backend]) if backend else ("", [])
        rows = self._q("SELECT count(*), total(api_equiv_usd) FROM requests WHERE plan = 'subscription' AND "
                       f"started_at >= ? AND started_at < ? {where}", [since or 0.0, until or 1e18, *params])
        n, value = rows[0] if rows else (0, 0.0)
        return SubscriptionTotals(int(n or 0), float(value or 0.0))

    def spent(self, since: float, backend: str | None = None) -> float:
        """Dollars spent on priced requests started at or after ``since`` (on one backend, or all)."""
        return float(sum(v[3] for v in self._agg(since, None, "all", "none", backend).values()))

    def count(self) -> int:
        return int(self._q("SELECT count(*) FROM requests")[0][0])

    def token_counts(self) -> int:
        """How many count_tokens calls are recorded (they are kept apart from the requests)."""
        return int(self._q("SELECT count(*) FROM token_counts")[0][0])
