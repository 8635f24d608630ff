"""``patchbay statusline``: one short line for Claude Code's ``statusLine`` setting.

Claude Code runs the command after each assistant message and passes JSON on stdin
(``session_id``, ``model{id, display_name}``, ``workspace``, ``cost{total_cost_usd}``, …); the first
line printed is shown under the prompt. It runs often, so it must answer in a few milliseconds:
this module imports nothing but the standard library (no Qt, no httpx, not even the rest of
Patchbay), reads the usage ledger through a read-only SQLite connection and the config's
``[[budgets]]`` with ``tomllib``, and never talks to the gateway. It can run as a plain script
(``python -S app/services/statusline.py --ledger F --config F``), which is what
``patchbay connect --statusline`` installs: that skips the interpreter's site set-up too.

    openrouter · deepseek-chat · $0.42 session · $3.10/$10 today
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time

# no pathlib, typing or urllib here: each costs milliseconds of import on every run
HOUR = 3600


def _usd(v: float) -> str:
    return f"${v:,.2f}"


def _limit(v: float) -> str:
    return f"${v:g}" if v == int(v) else f"${v:.2f}"


def daily_limit(config_path: str | os.PathLike[str] | None) -> float | None:
    """The smallest per-day budget that covers every backend, from the config's [[budgets]]."""
    if config_path is None:
        return None
    import tomllib

    try:
        with open(config_path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError):
        return None
    limits = [float(b["limit_usd"]) for b in data.get("budgets") or () if isinstance(b, dict)
              and b.get("scope", "all") == "all" and b.get("period") == "day"
              and isinstance(b.get("limit_usd"), (int, float))]
    return min(limits) if limits else None


def active_route(config_path: str | os.PathLike[str] | None) -> tuple[str | None, str | None]:
    if config_path is None:
        return None, None
    import tomllib

    try:
        with open(config_path, "rb") as fh:
            active = tomllib.load(fh).get("active") or {}
    except (OSError, ValueError):
        return None, None
    return active.get("backend"), active.get("model")


def local_midnight(now: float) -> float:
    lt = time.localtime(now)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def _uri(path: str | os.PathLike[str]) -> str:
    p = os.path.abspath(os.fspath(path)).replace(os.sep, "/")
    for c, q in (("%", "%25"), ("?", "%3f"), ("#", "%23")):
        p = p.replace(c, q)
    return "file:" + (p if p.startswith("/") else "/" + p) + "?mode=ro"


def _open(ledger: str | os.PathLike[str]) -> sqlite3.Connection | None:
    if not os.path.exists(ledger):
        return None
    try:
        conn = sqlite3.connect(_uri(ledger), uri=True, timeout=0.2)
        conn.execute("PRAGMA query_only=1")
        return conn
    except sqlite3.Error:
        return None


def ledger_facts(conn: sqlite3.Connection, session_id: str | None, now: float
                 ) -> tuple[str | None, str | None, float | None, float]:
    """(backend, model) of the session's last request, its cost, and today's spend (priced requests)."""
    backend = model = None
    cost = None
    if session_id:
        row = conn.execute("SELECT backend, model FROM requests WHERE session_id = ? ORDER BY started_at DESC "
                           "LIMIT 1", (session_id,)).fetchone()
        if row:
            backend, model = row
        row = conn.execute("SELECT cost_usd FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row:
            cost = float(row[0] or 0.0)
    since = local_midnight(now)
    h0 = math.ceil(since / HOUR) * HOUR  # whole hours from the rollup, the partial first hour from the rows
    today = conn.execute("SELECT total(cost_usd) FROM usage_hourly WHERE hour_start >= ?", (h0,)).fetchone()[0]
    if since < h0:
        today += conn.execute("SELECT total(cost_usd) FROM requests WHERE started_at >= ? AND started_at < ?",
                              (since, h0)).fetchone()[0]
    return backend, model, cost, float(today or 0.0)


def line(payload: dict[str, object], ledger: str | os.PathLike[str], config_path: str | os.PathLike[str] | None,
         now: float | None = None) -> str:
    now = time.time() if now is None else now
    session_id = payload.get("session_id") if isinstance(payload.get("session_id"), str) else None
    backend = model = None
    cost: float | None = None
    today = 0.0
    conn = _open(ledger)
    if conn is not None:
        try:
            backend, model, cost, today = ledger_facts(conn, session_id, now)
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    if backend is None:  # nothing recorded for this session yet: where its next request goes
        backend, model = active_route(config_path)
        m = payload.get("model")
        if model is None and isinstance(m, dict):
            model = m.get("id") or m.get("display_name")
    parts = [backend or "patchbay", model or "?"]
    parts.append(f"{_usd(cost or 0.0)} session")
    limit = daily_limit(config_path)
    parts.append(f"{_usd(today)}/{_limit(limit)} today" if limit else f"{_usd(today)} today")
    return " · ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ledger = config = None
    for i, a in enumerate(args):
        if a == "--ledger" and i + 1 < len(args):
            ledger = args[i + 1]
        elif a == "--config" and i + 1 < len(args):
            config = args[i + 1]
    if ledger is None:
        print("usage: statusline.py --ledger FILE [--config FILE] < claude-code-status.json", file=sys.stderr)
        return 2
    return run(ledger, config)


def run(ledger: str | os.PathLike[str], config: str | os.PathLike[str] | None) -> int:
    try:
        payload = json.loads(sys.stdin.read() or "{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    print(line(payload, ledger, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
