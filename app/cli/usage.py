"""``patchbay usage``: what Claude Code cost, read back from the ledger.

    patchbay usage [--since DATE] [--until DATE] [--by day|hour|backend|model|session|user|group] [--json|--csv]
    patchbay usage --sessions [--since DATE] [--limit N]

DATE is ``YYYY-MM-DD`` (local time; ``--until`` includes that whole day), ``today``,
``yesterday``, or a span back from now such as ``7d``, ``24h``, ``2w`` or ``30m``.
Requests whose model has no price are shown as *unpriced*, never as $0.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from app.budgets.limits import format_reset
from app.claude.subscription_usage import subscription_lines, subscription_part
from app.cli.common import render_table
from app.ledger.opener import open_reader
from app.ledger.reader import LedgerReader
from app.ledger.rows import SessionSummary, TotalsRow
from app.ledger.schema import LedgerError
from app.paths import Paths
from app.units import fmt_money

if TYPE_CHECKING:
    from app.config import LedgerSettings

BY_CHOICES = ("day", "hour", "backend", "model", "session", "user", "group")
DEFAULT_SINCE = "30d"
_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$", re.I)
_UNIT = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="DATE",
                        help=f"start: YYYY-MM-DD, today, yesterday, or back from now: 7d, 24h, 30m (default {DEFAULT_SINCE})")
    parser.add_argument("--until", metavar="DATE",
                        help="end: YYYY-MM-DD (that whole day included), or back from now (default: now)")
    parser.add_argument("--by", choices=BY_CHOICES, default="day", help="group rows by (default: day)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    parser.add_argument("--sessions", action="store_true",
                        help="list recent Claude Code sessions with their cost and duration")
    parser.add_argument("--limit", type=int, default=20, help="how many sessions --sessions lists (default 20)")


# --------------------------------------------------------------------------- dates


def _midnight(y: int, m: int, d: int, tz: tzinfo | None) -> float:
    if tz is None:
        return time.mktime((y, m, d, 0, 0, 0, 0, 0, -1))
    return datetime(y, m, d, tzinfo=tz).timestamp()


def parse_when(text: str, now: float, *, end: bool = False, tz: tzinfo | None = None, flag: str = "--since") -> float:
    """A DATE argument as epoch seconds. ``end``: a bare date means the end of that day."""
    t = text.strip().lower()
    today = (datetime.fromtimestamp(now, tz) if tz is not None else datetime.fromtimestamp(now)).date()
    if t == "now":
        return now
    if t in ("today", "yesterday"):
        d = today if t == "today" else today - timedelta(days=1)
        if end:
            d += timedelta(days=1)
        return _midnight(d.year, d.month, d.day, tz)
    m = _REL.match(t)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2).lower()]
    if re.match(r"^\d{4}-\d{2}-\d{2}$", t):
        try:
            d = datetime.strptime(t, "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(f"{flag} {text!r} is not a real date. Write it as YYYY-MM-DD, e.g. 2026-11-01.") from None
        if end:
            d += timedelta(days=1)
        return _midnight(d.year, d.month, d.day, tz)
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not a date. Write YYYY-MM-DD, today, or a span back from now "
                         "such as 7d, 24h or 30m.") from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=tz).timestamp() if tz is not None else time.mktime(dt.timetuple())
    return dt.timestamp()


def _fmt_time(ts: float, tz: tzinfo | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return (datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts)).strftime(fmt)


def _iso(ts: float | None, tz: tzinfo | None) -> str | None:
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()
    return dt.isoformat(timespec="seconds")


# --------------------------------------------------------------------------- formatting


def money(cost: float) -> str:
    return fmt_money(cost)


def cost_cell(cost: float, requests: int, unpriced: int) -> str:
    """"$1.23", "unpriced" (nothing priced), or "$1.23 +2 unpriced"."""
    if unpriced and unpriced >= requests:
        return "unpriced"
    if unpriced:
        return f"{money(cost)} +{unpriced} unpriced"
    return money(cost)


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def _sum(rows: Sequence[TotalsRow]) -> TotalsRow:
    return TotalsRow("total", sum(r.requests for r in rows), sum(r.input_tokens for r in rows),
                     sum(r.output_tokens for r in rows), sum(r.cache_write_tokens for r in rows),
                     sum(r.cache_read_tokens for r in rows), sum(r.cost_usd for r in rows),
                     sum(r.unpriced_requests for r in rows), sum(r.errors for r in rows))


def _row_dict(r: TotalsRow) -> dict[str, Any]:
    all_unpriced = r.unpriced_requests and r.unpriced_requests >= r.requests
    return {"key": r.key, "requests": r.requests, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cache_write_tokens": r.cache_write_tokens, "cache_read_tokens": r.cache_read_tokens,
            "cost_usd": None if all_unpriced else round(r.cost_usd, 6), "unpriced_requests": r.unpriced_requests,
            "errors": r.errors}


def _session_dict(s: SessionSummary, tz: tzinfo | None) -> dict[str, Any]:
    all_unpriced = s.unpriced_requests and s.unpriced_requests >= s.requests
    return {"session_id": s.session_id, "client": s.client, "first_seen": _iso(s.first_seen, tz),
            "last_seen": _iso(s.last_seen, tz), "duration_s": round(s.duration_s, 1), "requests": s.requests,
            "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
            "cache_write_tokens": s.cache_write_tokens, "cache_read_tokens": s.cache_read_tokens,
            "cost_usd": None if all_unpriced else round(s.cost_usd, 6), "unpriced_requests": s.unpriced_requests,
            "backends": list(s.backends)}


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace, paths: Paths, *, out: TextIO | None = None, err: TextIO | None = None,
        now: float | None = None, tz: tzinfo | None = None, config_path: Path | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    now = time.time() if now is None else now
    since_txt = getattr(args, "since", None)
    until_txt = getattr(args, "until", None)
    by = getattr(args, "by", "day") or "day"
    as_json = bool(getattr(args, "json", False))
    as_csv = bool(getattr(args, "csv", False))
    try:
        since = parse_when(since_txt or DEFAULT_SINCE, now, tz=tz, flag="--since")
        until = parse_when(until_txt, now, end=True, tz=tz, flag="--until") if until_txt else now
    except ValueError as exc:
        print(exc, file=err)
        return 2
    if until <= since:
        print(f"--until ({_fmt_time(until, tz)}) is not after --since ({_fmt_time(since, tz)}). "
              "Swap them, or widen the range.", file=err)
        return 2
    path = paths.ledger_file
    team = _team_settings(config_path or paths.config_file)
    if team is None and not path.exists():
        print(f"No usage has been recorded yet: {path} does not exist. Start the gateway (patchbay, or "
              "patchbay serve), point Claude Code at it, and run this again.", file=err)
        return 1
    try:
        reader = LedgerReader(path, tz=tz) if team is None else open_reader(team, paths, tz)
    except LedgerError as exc:
        print(exc, file=err)
        return 1
    try:
        if getattr(args, "sessions", False):
            return _sessions(reader, since, int(getattr(args, "limit", 20) or 20), as_json, as_csv, out, tz)
        return _totals(reader, paths, since, until, by, as_json, as_csv, out, err, now, tz,
                       config_path or paths.config_file)
    except LedgerError as exc:
        print(exc, file=err)
        return 1
    finally:
        reader.close()


_GROUPS: dict[str, Literal["day", "hour", "backend", "model", "session", "user", "group"]] = {
    "day": "day", "hour": "hour", "backend": "backend", "model": "model", "session": "session", "user": "user",
    "group": "group"}


def _team_settings(config_path: Path) -> LedgerSettings | None:
    """The [ledger] settings when they name a team (PostgreSQL) ledger; None: the local file."""
    from app.config import ConfigError
    from app.config.disk import load_config

    if not config_path.exists():
        return None
    try:
        ledger = load_config(config_path).ledger
    except ConfigError:
        return None
    return ledger if ledger.team.url else None


def _totals(reader: LedgerReader, paths: Paths, since: float, until: float, by: str, as_json: bool, as_csv: bool,
            out: TextIO, err: TextIO, now: float, tz: tzinfo | None, config_path: Path) -> int:
    group = _GROUPS.get(by)
    if group is None:
        print(f"Cannot group usage by {by!r}; use --by day, hour, backend, model, session, user or group.", file=err)
        return 2
    rows = reader.totals(since, until, group)
    total = _sum(rows)
    sub = subscription_part(reader, paths.ledger_file.parent, since, until, now)
    if as_json:
        doc: dict[str, Any] = {"since": _iso(since, tz), "until": _iso(until, tz), "by": by,
                               "rows": [_row_dict(r) for r in rows], "total": _row_dict(total)}
        if sub is not None:  # requests paid by a Claude subscription: value, not spend
            doc["subscription"] = sub
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    if as_csv:
        w = csv.writer(out, lineterminator="\n")
        keys = list(_row_dict(total))
        w.writerow([by if k == "key" else k for k in keys])
        for r in [*rows, total]:
            d = _row_dict(r)
            w.writerow(["" if d[k] is None else d[k] for k in keys])
        return 0
    span = f"{_fmt_time(since, tz)} to {_fmt_time(until, tz)} (local time)"
    if not rows:
        print(f"No requests from {span}.", file=out)
        return 0
    headers = [by, "requests", "input", "output", "cache write", "cache read", "cost"]
    right = [False, True, True, True, True, True, False]

    def cells(r: TotalsRow) -> list[str]:
        key = r.key if by != "session" else r.key
        return [key, f"{r.requests:,}", f"{r.input_tokens:,}", f"{r.output_tokens:,}", f"{r.cache_write_tokens:,}",
                f"{r.cache_read_tokens:,}", cost_cell(r.cost_usd, r.requests, r.unpriced_requests)]

    print(f"Usage from {span}, by {by}\n", file=out)
    print(render_table(headers, [cells(r) for r in rows], right, cells(total)), file=out)
    if total.unpriced_requests:
        n = total.unpriced_requests
        print(f"\n{n:,} request{'s' if n != 1 else ''} used a model with no price and {'are' if n != 1 else 'is'} "
              "not in the cost. Add a [[prices]] entry for that model in Patchbay's settings.", file=out)
    if sub is not None:
        print("\n" + "\n".join(subscription_lines(sub)), file=out)
    _budgets(reader, config_path, out, now, tz)
    return 0


def _budgets(reader: LedgerReader, cfg_path: Path, out: TextIO, now: float, tz: tzinfo | None) -> None:
    if not cfg_path.exists():
        return
    try:
        from app.config import ConfigError
        from app.config.disk import load_config

        try:
            cfg = load_config(cfg_path)
        except ConfigError:
            return  # the config's own command reports its errors
        if not cfg.budgets:
            return
        from app.budgets.team_usage import budget_rows

        lines = []
        # a person's or group's budget against their own rows, one line each (not the whole
        # ledger's spend against one person's limit); the org-wide ones against every row
        for r in budget_rows(reader, cfg.budgets, now=now, tz=tz):
            who = "" if r.kind in ("all", "backend") else f" {r.subject}"
            lines.append(f"  {r.budget.label}{who}: {money(r.spent_usd)} spent ({r.fraction:.0%}), "
                         f"{r.state}, resets {format_reset(r.resets_at, now, tz)}; action {r.budget.action}")
        print("\nBudgets:\n" + "\n".join(lines), file=out)
    except LedgerError:
        return


def _sessions(reader: LedgerReader, since: float, limit: int, as_json: bool, as_csv: bool, out: TextIO,
              tz: tzinfo | None) -> int:
    sessions = reader.top_sessions(since, limit, order_by="recent")
    if as_json:
        json.dump({"since": _iso(since, tz), "sessions": [_session_dict(s, tz) for s in sessions]}, out, indent=2)
        out.write("\n")
        return 0
    if as_csv:
        w = csv.writer(out, lineterminator="\n")
        keys = ["session_id", "client", "first_seen", "last_seen", "duration_s", "requests", "input_tokens",
                "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_usd", "unpriced_requests", "backends"]
        w.writerow(keys)
        for s in sessions:
            d = _session_dict(s, tz)
            d["backends"] = " ".join(d["backends"])
            w.writerow(["" if d[k] is None else d[k] for k in keys])
        return 0
    if not sessions:
        print(f"No Claude Code sessions since {_fmt_time(since, tz)} (local time).", file=out)
        return 0
    headers = ["session", "client", "started", "duration", "requests", "tokens", "cost", "backends"]
    right = [False, False, False, True, True, True, False, False]
    rows = []
    for s in sessions:
        tokens = s.input_tokens + s.output_tokens + s.cache_write_tokens + s.cache_read_tokens
        client = (s.client or "").split(" ")[0]
        rows.append([s.session_id[:8], client, _fmt_time(s.first_seen, tz), duration(s.duration_s), f"{s.requests:,}",
                     f"{tokens:,}", cost_cell(s.cost_usd, s.requests, s.unpriced_requests), ",".join(s.backends)])
    print(f"Claude Code sessions active since {_fmt_time(since, tz)} (local time), most recent first\n", file=out)
    print(render_table(headers, rows, right), file=out)
    return 0
