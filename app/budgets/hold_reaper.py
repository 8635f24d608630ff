"""Requests of an instance that died are charged, and their holds released, within a minute.

An instance killed with ``kill -9`` (or a machine that vanished) leaves its in-flight requests'
holds in ``budget_holds`` and never writes their rows: before, they blocked the person for the
holds' 15 minutes and were never charged. Now every instance on a PostgreSQL ledger beats: it
stamps ``instances.seen_at`` with the database's clock every ``BEAT_S``. An instance silent for
``DEAD_AFTER_S`` is dead, and any live instance's ``reap`` (after its beat) settles its holds in
one transaction under the budget lock that admission and the ledger writer take:

- each request they were for gets a row: ``status`` 499, ``error_type`` "instance_lost" (the row
  marker), ``interrupted`` 1, charged at a bounded estimate, its hold (what it was allowed to cost
  by then, plus the exposure of a prompt whose price was not known yet), with the person, groups,
  backend and model its hold recorded (``detail``) and its start;
- the rows go in like the writer's (``ON CONFLICT (request_id) DO NOTHING``: a row the dead instance
  committed stays as it was; its holds went in the same transaction, so there is nothing to reap
  for it), their rollups and budget counters are settled, and the holds are gone.

So an answered request's row is never lost: either the instance wrote it, or its hold is charged.
An instance that restarts under the same name beats again and keeps what it holds since.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from app.ledger.pg import _SETTLE, BUDGET_LOCK, DB_NOW, _insert_values, write_rollups
from app.ledger.store import ROW_COLUMNS, stored_group

log = logging.getLogger("patchbay.admission")

BEAT_S = 5.0  # how often an instance says it is alive
DEAD_AFTER_S = 30.0  # silent this long: dead (a live instance beats six times meanwhile)
MARK = "instance_lost"
MESSAGE = ("The Patchbay instance serving this request stopped before it ended (killed or lost); charged at "
           "what the request held then.")

_BEAT = f"INSERT INTO instances VALUES (%s, {DB_NOW}) ON CONFLICT (instance) DO UPDATE SET seen_at = excluded.seen_at"
_DEAD_HOLDS = (f"DELETE FROM budget_holds h WHERE h.instance IN (SELECT instance FROM instances WHERE seen_at < {DB_NOW} - %s) "
               f"OR (h.instance = %s AND h.expires_at < {DB_NOW} + %s) "
               "RETURNING h.request_id, h.scope, h.amount, h.exposure, h.started_at, h.detail, h.instance")
_FORGET_DEAD = (f"DELETE FROM instances i WHERE i.seen_at < {DB_NOW} - %s AND NOT EXISTS "
                "(SELECT 1 FROM budget_holds h WHERE h.instance = i.instance)")


def lost_rows(holds: Sequence[Sequence[Any]], now: float) -> list[tuple[Any, ...]]:
    """One row (ROW_COLUMNS) per request among ``holds`` (request_id, scope, amount, exposure,
    started_at, detail, instance): charged at its largest hold and exposure."""
    by_id: dict[str, dict[str, Any]] = {}
    for rid, scope, amount, exposure, started, detail, instance in holds:
        r = by_id.setdefault(rid, {"cost": 0.0, "started": started, "detail": detail, "instance": instance,
                                   "user": None})
        r["cost"] = max(r["cost"], float(amount) + float(exposure or 0.0))
        if str(scope).startswith("user:"):
            r["user"] = str(scope)[5:]
    out = []
    for rid, r in sorted(by_id.items()):
        d: dict[str, Any] = {}
        try:
            d = orjson.loads(r["detail"]) if r["detail"] else {}
        except orjson.JSONDecodeError:
            pass
        started = float(r["started"]) if r["started"] is not None else now
        groups = d.get("groups") or []
        values = {
            "request_id": rid, "started_at": started, "ended_at": now, "route": d.get("route") or "",
            "backend": d.get("backend") or "", "requested_model": d.get("requested_model") or d.get("model") or "",
            "model": d.get("model") or "", "stream": 1 if d.get("stream") else 0, "status": 499,
            "error_type": MARK, "error_message": MESSAGE, "duration_ms": max(0.0, (now - started) * 1000.0),
            "input_tokens": 0, "output_tokens": 0, "cache_write_tokens": 0, "cache_read_tokens": 0,
            "cost_usd": r["cost"], "attempts": 1, "instance": r["instance"], "interrupted": 1,
            "user_id": d.get("user_id") or r["user"], "groups": ",".join(stored_group(g) for g in groups) or None,
        }
        out.append(tuple(values.get(c) for c in ROW_COLUMNS))
    return out


def reap(conn: Any, dead_after_s: float = DEAD_AFTER_S, own: tuple[str, float] = ("", 0.0)) -> list[str]:
    """Settle the holds of every instance silent for ``dead_after_s`` into rows (one transaction),
    and ``own``'s (instance, a hold's ttl less a margin): the holds this instance's previous run
    left (it restarted under the same name, so it never looked dead). Returns the ids written."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUDGET_LOCK,))
        holds = conn.execute(_DEAD_HOLDS, (dead_after_s, own[0], own[1])).fetchall()
        conn.execute(_FORGET_DEAD, (dead_after_s,))
        if not holds:
            return []
        now = float(conn.execute(f"SELECT {DB_NOW}").fetchone()[0])
        rows = lost_rows(holds, now)
        new: set[str] = set()
        for n in range(0, len(rows), 16):
            chunk = rows[n:n + 16]
            new |= {r[0] for r in conn.execute(_insert_values(len(chunk)), [v for r in chunk for v in r]).fetchall()}
        stored = [r for r in rows if r[0] in new]
        if stored:
            with conn.cursor() as cur:
                write_rollups(cur, stored)
            conn.execute(_SETTLE, ([r[0] for r in stored],))
    if stored:
        log.warning("charged %d requests of a Patchbay instance that stopped (%s) at what they held",
                    len(stored), ", ".join(sorted({str(r[ROW_COLUMNS.index("instance")]) for r in stored})))
    return [r[0] for r in stored]


class Heartbeat:
    """This instance's beat, and its reaping of dead ones, on a thread and a connection of its own
    (never queued behind requests: a live instance must not look dead)."""

    def __init__(self, connect: Callable[[], Any], instance: str, ttl_s: float, *, beat_s: float = BEAT_S,
                 dead_after_s: float = DEAD_AFTER_S) -> None:
        self._connect = connect
        self._conn: Any = None
        self.instance = instance
        self.ttl_s = ttl_s
        self.beat_s = beat_s
        self.dead_after_s = dead_after_s
        self._first = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="patchbay-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def once(self) -> list[str]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        self._conn.execute(_BEAT, (self.instance,))
        # the first time: what this instance's previous run held (made before this start; a hold
        # made since expires later than a ttl from now less a margin)
        own = (self.instance, self.ttl_s - 5.0) if self._first else ("", 0.0)
        ids = reap(self._conn, self.dead_after_s, own)
        self._first = False
        return ids

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.once()
            except Exception as exc:  # the database is away: admission says so; beat again later
                log.debug("heartbeat: %s", exc)
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except Exception:
                        pass
                    self._conn = None
            self._stop.wait(self.beat_s)
        if self._conn is not None:
            self._conn.close()
