"""``patchbay statusline``: one short line for Claude Code's ``statusLine`` setting.

Claude Code runs the command after each assistant message and passes JSON on stdin
(``session_id``, ``model{id, display_name}``, ``workspace``, ``cost{total_cost_usd}``, …); the first
line printed is shown under the prompt. It runs often, so it must answer in a few milliseconds:
this module imports nothing but the standard library and app/units.py (the money format,
itself stdlib-only; no Qt, no httpx, nothing else of Patchbay), reads the usage ledger through a read-only SQLite connection and the config's
``[active]`` and ``[[budgets]]`` (parsed with ``tomllib`` only when the file changed; the result
is kept next to the ledger), and never talks to the gateway. It needs nothing of Patchbay on
``sys.path`` (it finds app/units.py from its own location): ``patchbay connect --statusline`` installs ``python -I -S -c "… import statusline …"
--ledger F --config F``, which also skips the interpreter's site set-up (see
``claude_code.statusline_command``; ``bench/statusline_bench.py`` times it).

    openrouter · deepseek-chat · $0.42 session · $3.10/$10 today
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import time

try:
    from app.units import fmt_money  # the one money format; app/units.py imports only math
except ImportError:  # imported alone by the installed command (-I -S): app/ is two folders up from here
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from app.units import fmt_money
from app.claude.subscription_windows import LIMITS_NAME, latest, windows_text  # imports only time

# no pathlib, typing, urllib or (usually) tomllib here: each costs milliseconds of import on every run
HOUR = 3600


class _Strict:
    """What CPython's C JSON scanner reads its options from (as it would from a JSONDecoder)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"{name} is not JSON")


def loads(text: str) -> object:
    """``json.loads`` without importing the ``json`` package: that pulls in ``re`` and ``enum``,
    most of this program's start-up. The C scanner behind ``json`` does the parsing."""
    try:
        import _json
    except ImportError:  # not CPython
        import json

        return json.loads(text)
    _Strict.memo = {}
    scan = _json.make_scanner(_Strict())  # type: ignore[arg-type]  # typeshed wants a JSONDecoder; the C scanner reads only these attributes
    ws = " \t\n\r"
    i = len(text) - len(text.lstrip(ws))
    try:
        value, end = scan(text, i)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(ws):
        raise ValueError("extra data after the JSON value")
    return value


def _usd(v: float) -> str:
    return fmt_money(v)  # $0.0021, not "$0.00", for a session that cost a fifth of a cent


def _limit(v: float) -> str:
    return f"${v:g}" if v == int(v) else f"${v:.2f}"


def _parse_config(config_path: str | os.PathLike[str]) -> tuple[float | None, str | None, str | None]:
    """(smallest per-day budget over all backends, active backend, active model) from the config."""
    import tomllib  # costs more than all the rest (it pulls in typing): only when the config changed

    try:
        with open(config_path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError):
        return None, None, None
    limits = [float(b["limit_usd"]) for b in data.get("budgets") or () if isinstance(b, dict)
              and b.get("scope", "all") == "all" and b.get("period") == "day"
              and isinstance(b.get("limit_usd"), (int, float)) and not isinstance(b.get("limit_usd"), bool)]
    raw = data.get("active")
    active = raw if isinstance(raw, dict) else {}
    backend, model = active.get("backend"), active.get("model")
    return (min(limits) if limits else None, backend if isinstance(backend, str) else None,
            model if isinstance(model, str) else None)


def config_facts(config_path: str | os.PathLike[str] | None, cache_dir: str | None
                 ) -> tuple[float | None, str | None, str | None]:
    """:func:`_parse_config`, remembered in ``cache_dir`` until the config file changes (its
    path, size and mtime), so most runs never import tomllib."""
    if config_path is None:
        return None, None, None
    try:
        st = os.stat(config_path)
    except OSError:
        return None, None, None
    stamp = f"1\t{os.fspath(config_path)}\t{st.st_size}\t{st.st_mtime_ns}"
    cache = os.path.join(cache_dir, "statusline-config.cache") if cache_dir else None
    if cache:
        try:
            with open(cache, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
            if lines[0] == stamp and len(lines) >= 4:
                return (float(lines[1]) if lines[1] else None, lines[2] or None, lines[3] or None)
        except (OSError, ValueError):
            pass
    limit, backend, model = _parse_config(config_path)
    if cache and "\n" not in f"{backend}{model}":
        tmp = f"{cache}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(f"{stamp}\n{'' if limit is None else repr(limit)}\n{backend or ''}\n{model or ''}\n")
            os.replace(tmp, cache)
        except OSError:
            pass
    return limit, backend, model


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


def subscription_value(conn: sqlite3.Connection, session_id: str | None) -> float:
    """What the session's requests served under a Claude subscription are worth at API prices
    (they cost no money: the session's cost leaves them out). 0 for any other session, and on a
    ledger without the column (the team status cache)."""
    if not session_id:
        return 0.0
    try:
        row = conn.execute("SELECT total(api_equiv_usd) FROM requests WHERE session_id = ? AND plan = 'subscription'",
                           (session_id,)).fetchone()
    except sqlite3.Error:
        return 0.0
    return float(row[0] or 0.0) if row else 0.0


def subscription_windows(ledger: str | os.PathLike[str], now: float) -> str:
    """"5 h window 63 % · resets 14:20 · week 21 %" from the file the gateway keeps beside the
    ledger; "" when there is none (no subscription traffic: nothing is shown)."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(ledger)), LIMITS_NAME), encoding="utf-8") as fh:
            data = loads(fh.read())
    except (OSError, ValueError):
        return ""
    return windows_text(latest(data.get("backends")) if isinstance(data, dict) else None, now)


def line(payload: dict[str, object], ledger: str | os.PathLike[str], config_path: str | os.PathLike[str] | None,
         now: float | None = None) -> str:
    now = time.time() if now is None else now
    sid = payload.get("session_id")
    session_id = sid if isinstance(sid, str) else None
    backend = model = None
    cost: float | None = None
    today = value = 0.0
    conn = _open(ledger)
    if conn is not None:
        try:
            backend, model, cost, today = ledger_facts(conn, session_id, now)
            value = subscription_value(conn, session_id)
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    limit, active_backend, active_model = config_facts(config_path, os.path.dirname(os.path.abspath(ledger)))
    if backend is None:  # nothing recorded for this session yet: where its next request goes
        backend, model = active_backend, active_model
        m = payload.get("model")
        if model is None and isinstance(m, dict):
            model = m.get("id") or m.get("display_name")
    parts = [backend or "patchbay", model or "?"]
    if value and cost:
        parts.append(f"{_usd(cost)} + {_usd(value)} API-equiv. session")
    elif value:
        parts.append(f"{_usd(value)} API-equiv. session")  # paid by the plan, not spent
    else:
        parts.append(f"{_usd(cost or 0.0)} session")
    parts.append(f"{_usd(today)}/{_limit(limit)} today" if limit else f"{_usd(today)} today")
    windows = subscription_windows(ledger, now)
    if windows:
        parts.append(windows)
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
        payload = loads(sys.stdin.read() or "{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    print(line(payload, ledger, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
