"""What the ledger writer needs from a store (SQLite file, PostgreSQL server), and the pieces both
stores share: the rollup sums of a batch, and the budget counters a batch settles.

A batch arrives as ``Prepared`` rows (priced, scrubbed, bodies compressed); ``Store.write`` stores
the rows whose ``request_id`` is new, in one transaction with their rollups, adds their cost to the
budget counters of the periods they fall in and deletes their reservations, and answers the ids it
stored. Run again with the same batch it stores nothing twice. A count_tokens call
(``Prepared.count``) goes to the ``token_counts`` table instead: it is free, so it never reaches
the rollups, the budget counters or the request list.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.config import LedgerSettings

HOUR = 3600

# the columns of a request row, in the order of ``Prepared.row``
ROW_COLUMNS = ("request_id", "started_at", "ended_at", "session_id", "client", "route", "backend", "requested_model",
               "model", "stream", "status", "error_type", "error_message", "stop_reason", "ttft_ms", "duration_ms",
               "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_usd", "attempts",
               "agent_id", "instance", "interrupted", "user_id", "groups", "identity_source", "client_addr", "plan",
               "api_equiv_usd", "usage_counted", "priced_by")
# the columns of a count_tokens row (``Prepared.count``), kept apart from the requests
COUNT_COLUMNS = ("request_id", "started_at", "session_id", "client", "backend", "model", "status", "error_type",
                 "error_message", "duration_ms")
R_ID, R_START, R_END, R_SESSION, R_CLIENT = 0, 1, 2, 3, 4
R_BACKEND, R_MODEL, R_STATUS, R_ERRTYPE = 6, 8, 10, 11
R_IN, R_OUT, R_CW, R_CR, R_COST = 16, 17, 18, 19, 20
R_USER, R_GROUPS = 25, 26
R_EQUIV = 30  # api_equiv_usd: a subscription row's value at API prices
# a budget with include_subscription = true charges the counter "plan+<scope>": the scope's spend plus
# the API-equivalent value of its requests served under a Claude subscription
PLAN_PREFIX = "plan+"


@dataclass(frozen=True, slots=True)
class Prepared:
    row: tuple[Any, ...]  # ROW_COLUMNS, or COUNT_COLUMNS when ``count``
    body: tuple[bytes | None, bytes | None] | None = None  # (request, response), zlib, scrubbed; None: not captured
    count: bool = False  # a count_tokens call: a token_counts row, never spending


class Store(Protocol):
    where: str  # "the usage ledger /path" / "the PostgreSQL ledger at host:port/db", for messages

    def open(self) -> None: ...
    def write(self, batch: Sequence[Prepared]) -> list[str]: ...
    def housekeep(self, settings: LedgerSettings, now: float) -> None: ...
    def close(self) -> None: ...


def default_instance(port: int | None = None) -> str:
    name = socket.gethostname() or "localhost"
    return f"{name}:{port}" if port else f"{name}:{os.getpid()}"


def rollups(rows: Sequence[tuple[Any, ...]]) -> tuple[list[list[Any]], list[list[Any]]]:
    """(usage_hourly rows, sessions rows) summing ``rows``, each sorted by its key (several
    instances upsert the same keys: one order everywhere rules out deadlocks)."""
    hourly: dict[tuple[int, str, str], list[Any]] = {}
    sessions: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        cost = row[R_COST]
        unpriced = 1 if cost is None else 0
        c = cost or 0.0
        failed = 1 if (row[R_STATUS] >= 400 or row[R_ERRTYPE] is not None) else 0
        key = (int(row[R_START] // HOUR) * HOUR, row[R_BACKEND], row[R_MODEL])
        h = hourly.get(key)
        if h is None:
            hourly[key] = [1, failed, unpriced, c, row[R_IN], row[R_OUT], row[R_CW], row[R_CR]]
        else:
            h[0] += 1; h[1] += failed; h[2] += unpriced; h[3] += c  # noqa: E702
            h[4] += row[R_IN]; h[5] += row[R_OUT]; h[6] += row[R_CW]; h[7] += row[R_CR]  # noqa: E702
        sid = row[R_SESSION]
        if sid is not None:  # one row per (session, backend): the upsert appends a backend it has not seen
            skey = (sid, row[R_BACKEND])
            s = sessions.get(skey)
            if s is None:
                sessions[skey] = [sid, row[R_START], row[R_END], 1, row[R_IN], row[R_OUT], row[R_CW], row[R_CR], c,
                                  unpriced, row[R_BACKEND], row[R_CLIENT]]
            else:
                s[1] = min(s[1], row[R_START]); s[2] = max(s[2], row[R_END]); s[3] += 1  # noqa: E702
                s[4] += row[R_IN]; s[5] += row[R_OUT]; s[6] += row[R_CW]; s[7] += row[R_CR]  # noqa: E702
                s[8] += c; s[9] += unpriced  # noqa: E702
                if s[11] is None:
                    s[11] = row[R_CLIENT]
    return ([[k[0], k[1], k[2], *v] for k, v in sorted(hourly.items())],
            [v for _k, v in sorted(sessions.items(), key=lambda kv: kv[0][0])])


def stored_group(name: str) -> str:
    """A group's name as a row's ``groups`` column holds it: the names are joined by commas, so a
    comma inside one is stored as a space (the budget counters look for it the same way)."""
    return name.replace(",", " ")


def row_in_scope(scope: str, row: tuple[Any, ...]) -> bool:
    """Whether a request row counts towards a budget counter of ``scope``: ``all``, ``backend:ID``,
    ``user:ID`` (the row's user_id), ``group:NAME`` (one of the row's comma-joined groups)."""
    scope = scope.removeprefix(PLAN_PREFIX)
    kind, _, value = scope.partition(":")
    if scope == "all":
        return True
    if kind == "backend":
        return bool(row[R_BACKEND] == value)
    if kind == "user":
        return bool(row[R_USER] == value)
    if kind == "group":
        return bool(row[R_GROUPS]) and stored_group(value) in row[R_GROUPS].split(",")
    return False


def counter_increments(counters: Sequence[tuple[str, float, float]], rows: Sequence[tuple[Any, ...]]
                       ) -> list[tuple[float, str, float, float]]:
    """For budget counters ``(scope, period_start, period_end)``: ``(cost, scope, start, end)`` to add,
    from the priced ``rows`` started inside each period on the counter's scope."""
    out = []
    for scope, start, end in counters:
        total = 0.0
        plan = scope.startswith(PLAN_PREFIX)
        for row in rows:
            cost = (row[R_COST] or 0.0) + ((row[R_EQUIV] or 0.0) if plan and len(row) > R_EQUIV else 0.0)
            if cost and start <= row[R_START] < end and row_in_scope(scope, row):
                total += cost
        if total:
            out.append((total, scope, start, end))
    return sorted(out, key=lambda x: (x[1], x[2], x[3]))


WORKER_ENV = "PATCHBAY_WORKER"  # set by `serve --workers N` (app/cli/serve_workers.py) in each worker


def worker_instance(base: str) -> str:
    """The ledger instance name of this process: ``base`` alone, or ``base/w<i>`` in a worker."""
    i = os.environ.get(WORKER_ENV)
    return f"{base}/w{i}" if i else base
