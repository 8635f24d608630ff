"""The shared ledger on PostgreSQL: several gateways write one set of books.

``PgStore`` is the writer's store (``app/ledger/store.py``): one transaction per batch,
the rows in one multi-row ``INSERT … SELECT FROM unnest(…) ON CONFLICT (request_id) DO NOTHING
RETURNING request_id`` (so a row is stored once whichever instance or retry sends it), the rollups
of exactly the rows that were new, the budget counters they settle and their reservations gone.
``PgLedgerReader`` answers the same queries as the SQLite ``LedgerReader`` (it is one, with the
SQL spelt for PostgreSQL), from a small connection pool.

Schema versions live in ``meta('schema_version')``; ``migrate`` runs under an advisory lock, so
of several instances starting at once one upgrades and the others wait, and an instance that finds
a newer schema than it knows refuses to start with a sentence.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from app.config import LedgerSettings
from app.config.ledger import TeamLedger
from app.ledger.reader import LedgerReader
from app.ledger.schema import LedgerError
from app.ledger.store import COUNT_COLUMNS, ROW_COLUMNS, Prepared, rollups

PG_SCHEMA_VERSION = 7
MIGRATE_LOCK = 0x50617463  # pg_advisory_lock key for migrations ("Patc")
BUDGET_LOCK = 0x68626179  # pg_advisory_xact_lock key around budget counters ("hbay")
DB_NOW = "extract(epoch from clock_timestamp())"  # the time every instance agrees on: the database's

_PG_V1 = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests(
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION NOT NULL,
    session_id TEXT,
    client TEXT,
    route TEXT NOT NULL,
    backend TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT NOT NULL,
    stream SMALLINT NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    stop_reason TEXT,
    ttft_ms DOUBLE PRECISION,
    duration_ms DOUBLE PRECISION NOT NULL,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 1,
    agent_id TEXT,
    instance TEXT,
    user_id TEXT,
    groups TEXT,
    identity_source TEXT,
    client_addr TEXT
);
CREATE INDEX requests_started ON requests(started_at);
CREATE INDEX requests_session ON requests(session_id, started_at);
CREATE INDEX requests_user ON requests(user_id, started_at);
CREATE TABLE bodies(
    request_id TEXT PRIMARY KEY,
    captured_at DOUBLE PRECISION NOT NULL,
    encoding TEXT NOT NULL,
    request BYTEA,
    response BYTEA
);
CREATE INDEX bodies_captured ON bodies(captured_at);
CREATE TABLE usage_hourly(
    hour_start BIGINT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    unpriced BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    PRIMARY KEY(hour_start, backend, model)
);
CREATE TABLE sessions(
    session_id TEXT PRIMARY KEY,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    unpriced BIGINT NOT NULL,
    backends TEXT NOT NULL,
    client TEXT
);
CREATE INDEX sessions_last_seen ON sessions(last_seen);
CREATE TABLE budget_counters(
    scope TEXT NOT NULL,
    period_start DOUBLE PRECISION NOT NULL,
    period_end DOUBLE PRECISION NOT NULL,
    spent DOUBLE PRECISION NOT NULL,
    PRIMARY KEY(scope, period_start, period_end)
);
CREATE TABLE budget_holds(
    request_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    period_start DOUBLE PRECISION NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    instance TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY(request_id, scope, period_start)
);
CREATE INDEX budget_holds_scope ON budget_holds(scope, period_start);
"""

# v2: a flag for answers that stopped part-way (their usage is what was known then), and the
# count_tokens calls, kept apart from the requests so that they never count as spending (as in the
# SQLite ledger's v3)
_PG_V2 = """
ALTER TABLE requests ADD COLUMN interrupted SMALLINT NOT NULL DEFAULT 0;
CREATE TABLE token_counts(
    request_id TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    session_id TEXT,
    client TEXT,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    duration_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX token_counts_started ON token_counts(started_at);
"""

# v3: requests served under a Claude subscription: ``plan`` = 'subscription', ``cost_usd`` 0 and
# their value at API prices in ``api_equiv_usd`` (as in the SQLite ledger's v6)
_PG_V3 = """
ALTER TABLE requests ADD COLUMN plan TEXT;
ALTER TABLE requests ADD COLUMN api_equiv_usd DOUBLE PRECISION;
"""

# v4: how a row's usage was counted and priced (as in the SQLite ledger's v7)
_PG_V4 = """
ALTER TABLE requests ADD COLUMN usage_counted TEXT;
ALTER TABLE requests ADD COLUMN priced_by TEXT;
"""

# v5: as the SQLite ledger's v8: a reservation's worst case (``exposure``), what another instance
# needs to write the row of a request whose instance died (``started_at``, ``detail``), and each
# instance's heartbeat, in the database's own time (app/budgets/hold_reaper.py)
_PG_V5 = """
ALTER TABLE budget_holds ADD COLUMN exposure DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE budget_holds ADD COLUMN started_at DOUBLE PRECISION;
ALTER TABLE budget_holds ADD COLUMN detail TEXT;
CREATE INDEX budget_holds_instance ON budget_holds(instance);
CREATE TABLE instances(instance TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL);
"""

# v6: as the SQLite ledger's v9: spend limits set through the Admin API (app/team/spend_limits.py)
_PG_V6 = """
CREATE TABLE spend_limits(
    id TEXT PRIMARY KEY,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_cents BIGINT,
    action TEXT NOT NULL DEFAULT 'block',
    warn_at DOUBLE PRECISION NOT NULL DEFAULT 0.8,
    blocked_message TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE(scope_type, scope_id, period)
);
"""

# v7: as the SQLite ledger's v10: Claude Code's OTLP telemetry per person (app/team/telemetry.py)
_PG_V7 = """
CREATE TABLE telemetry(
    id BIGSERIAL PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    user_id TEXT NOT NULL,
    groups TEXT,
    signal TEXT NOT NULL,
    name TEXT NOT NULL,
    session_id TEXT,
    value DOUBLE PRECISION,
    detail TEXT,
    attrs TEXT
);
CREATE INDEX telemetry_time ON telemetry(received_at);
CREATE INDEX telemetry_user ON telemetry(user_id, received_at);
"""

PG_MIGRATIONS: tuple[str, ...] = (_PG_V1, _PG_V2, _PG_V3, _PG_V4, _PG_V5, _PG_V6, _PG_V7)  # PG_MIGRATIONS[n] takes the schema from version n to n + 1
assert len(PG_MIGRATIONS) == PG_SCHEMA_VERSION

_PG_TYPES = {"request_id": "text", "started_at": "float8", "ended_at": "float8", "stream": "int2", "status": "int4",
             "ttft_ms": "float8", "duration_ms": "float8", "input_tokens": "int8", "output_tokens": "int8",
             "cache_write_tokens": "int8", "cache_read_tokens": "int8", "cost_usd": "float8", "attempts": "int4",
             "interrupted": "int2", "api_equiv_usd": "float8"}
# a batch goes in by COPY into a session-local table, then one INSERT ... SELECT that skips the
# request ids already stored (by this instance's retry or anyone's) and says which were new
_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS requests_in ("
          + ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in ROW_COLUMNS) + ") ON COMMIT DELETE ROWS")
_COPY = f"COPY requests_in ({', '.join(ROW_COLUMNS)}) FROM STDIN"
_INSERT = (f"INSERT INTO requests({', '.join(ROW_COLUMNS)}) SELECT {', '.join(ROW_COLUMNS)} FROM requests_in "
           "ON CONFLICT (request_id) DO NOTHING RETURNING request_id")
_INSERT_COUNT = (f"INSERT INTO token_counts({', '.join(COUNT_COLUMNS)}) VALUES "
                 f"({','.join('%s' for _ in COUNT_COLUMNS)}) ON CONFLICT (request_id) DO NOTHING RETURNING request_id")
SMALL_BATCH = 16  # up to this many rows: one multi-row INSERT ... VALUES, pipelined with BEGIN


@functools.lru_cache(maxsize=SMALL_BATCH)
def _insert_values(n: int) -> str:
    one = "(" + ",".join("%s" for _ in ROW_COLUMNS) + ")"
    return (f"INSERT INTO requests({', '.join(ROW_COLUMNS)}) VALUES " + ",".join(one for _ in range(n))
            + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id")


# the new rows' cost into every live budget counter whose scope and period they fall in: all rows,
# a backend's, a person's (user_id), a group's (one of the comma-joined groups)
# ("plan+<scope>" counters, of budgets with include_subscription = true, also take the API-equivalent
# value of the rows served under a Claude subscription)
_SETTLE = (
    "UPDATE budget_counters c SET spent = c.spent + x.cost FROM (SELECT k.scope, k.period_start, k.period_end, "
    "sum(coalesce(r.cost_usd, 0.0) + CASE WHEN left(k.scope, 5) = 'plan+' THEN coalesce(r.api_equiv_usd, 0.0) "
    "ELSE 0.0 END) AS cost FROM (SELECT *, regexp_replace(scope, '^plan\\+', '') AS s FROM budget_counters) k "
    "JOIN requests r ON r.request_id = ANY(%s) "
    "AND (r.cost_usd IS NOT NULL OR r.api_equiv_usd IS NOT NULL) "
    "AND r.started_at >= k.period_start AND r.started_at < k.period_end "
    "AND (k.s = 'all' OR k.s = 'backend:' || r.backend OR k.s = 'user:' || r.user_id OR "
    "(left(k.s, 6) = 'group:' AND strpos(',' || r.groups || ',', ',' || substr(k.s, 7) || ',') > 0)) "
    "GROUP BY 1, 2, 3) x "
    "WHERE c.scope = x.scope AND c.period_start = x.period_start AND c.period_end = x.period_end"
)
_UPSERT_HOUR = (
    "INSERT INTO usage_hourly VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT(hour_start, backend, model) "
    "DO UPDATE SET requests = usage_hourly.requests + excluded.requests, errors = usage_hourly.errors + excluded.errors, "
    "unpriced = usage_hourly.unpriced + excluded.unpriced, cost_usd = usage_hourly.cost_usd + excluded.cost_usd, "
    "input_tokens = usage_hourly.input_tokens + excluded.input_tokens, "
    "output_tokens = usage_hourly.output_tokens + excluded.output_tokens, "
    "cache_write_tokens = usage_hourly.cache_write_tokens + excluded.cache_write_tokens, "
    "cache_read_tokens = usage_hourly.cache_read_tokens + excluded.cache_read_tokens"
)
_UPSERT_SESSION = (
    "INSERT INTO sessions VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT(session_id) DO UPDATE SET "
    "first_seen = least(sessions.first_seen, excluded.first_seen), "
    "last_seen = greatest(sessions.last_seen, excluded.last_seen), requests = sessions.requests + excluded.requests, "
    "input_tokens = sessions.input_tokens + excluded.input_tokens, "
    "output_tokens = sessions.output_tokens + excluded.output_tokens, "
    "cache_write_tokens = sessions.cache_write_tokens + excluded.cache_write_tokens, "
    "cache_read_tokens = sessions.cache_read_tokens + excluded.cache_read_tokens, "
    "cost_usd = sessions.cost_usd + excluded.cost_usd, unpriced = sessions.unpriced + excluded.unpriced, "
    "backends = CASE WHEN position(',' || excluded.backends || ',' in ',' || sessions.backends || ',') > 0 "
    "THEN sessions.backends ELSE sessions.backends || ',' || excluded.backends END, client = coalesce(sessions.client, excluded.client)"
)
_INSERT_BODY = ("INSERT INTO bodies VALUES (%s,%s,%s,%s,%s) ON CONFLICT (request_id) DO UPDATE SET "
                "captured_at = excluded.captured_at, encoding = excluded.encoding, request = excluded.request, "
                "response = excluded.response")


def write_rollups(cur: Any, stored: Sequence[tuple[Any, ...]]) -> None:
    """Add newly stored request rows to the hourly and per-session rollups (the writer's batches,
    and the rows hold_reaper.py writes for a dead instance's requests)."""
    hourly, sessions = rollups(stored)
    cur.executemany(_UPSERT_HOUR, hourly)
    if sessions:
        cur.executemany(_UPSERT_SESSION, sessions)


def describe(url: str) -> str:
    """host:port/db of a PostgreSQL URL, never its password."""
    u = urlsplit(url)
    return f"{u.hostname or 'localhost'}:{u.port or 5432}{u.path or ''}"


def resolve_password(team: TeamLedger) -> str | None:
    """The database password from the environment or the keychain; None for "none"."""
    p = team.password
    if p == "none":
        return None
    if p.startswith("env:"):
        value = os.environ.get(p[4:])
        if not value:
            raise LedgerError(f"[ledger] password says {p}, but the environment variable {p[4:]} is not set. Set it "
                              "to the database password, or write password = \"keyring\" and run "
                              "`patchbay key set ledger`.")
        return value
    from app.host import secrets

    try:
        value = secrets.get_api_key("ledger")
    except secrets.NoKeychainError as exc:
        raise LedgerError(f"[ledger] password = \"keyring\", but {exc}") from None
    if not value:
        raise LedgerError("[ledger] password = \"keyring\", but the keychain holds no password for the ledger. Run "
                          "`patchbay key set ledger`, or use password = \"env:NAME\".")
    return value


def connect_kwargs(team: TeamLedger) -> dict[str, Any]:
    kw: dict[str, Any] = {"connect_timeout": 3, "application_name": "patchbay"}
    pw = resolve_password(team)
    if pw is not None:
        kw["password"] = pw
    return kw


def migrate(conn: Any, where: str) -> int:
    """Bring the schema to ``PG_SCHEMA_VERSION`` (one instance at a time). Returns the version
    found. Raises ``LedgerError`` for a newer schema."""
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        has_meta = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
        version = 0
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > PG_SCHEMA_VERSION:
            raise LedgerError(
                f"{where} was set up by a newer Patchbay (schema {version}; this one knows up to "
                f"{PG_SCHEMA_VERSION}). Update this gateway to the version the others run, or point [ledger] url "
                "at another database.")
        for v in range(version, PG_SCHEMA_VERSION):
            with conn.transaction():
                conn.execute(PG_MIGRATIONS[v])
                conn.execute("INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET "
                             "value = excluded.value", (str(v + 1),))
        return version
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))


class LedgerReadOnly(Exception):
    """The ``[ledger]`` user may read the ledger but not write it: an admin's read-only role on the
    team's database. Not a ``LedgerError``: the app starts, and its own rows wait in the spool."""


class PgStore:
    """The writer's store on PostgreSQL. One connection, used by the writer thread only."""

    def __init__(self, url: str, team: TeamLedger = TeamLedger()) -> None:
        self.url = url
        self.team = team
        self.where = f"the PostgreSQL ledger at {describe(url)}"
        self.conn: Any = None
        self._staged = False  # the session's COPY table exists
        # the writer waits this long for more records before it writes a batch: each batch costs a
        # handful of statements whatever its size, and acknowledging 20 ms later costs nothing
        self.linger_s = 0.02
        self.read_only = False  # the last open found that the [ledger] user may not write the rows

    def open(self) -> None:
        import psycopg

        self.close()
        # a row is acknowledged when its commit returns: never with the server's commit delayed
        conn = psycopg.connect(self.url, autocommit=True, options="-c synchronous_commit=on",
                               **connect_kwargs(self.team))
        try:
            migrate(conn, self.where)  # at the current version only reads (no DDL rights needed)
            may = conn.execute("SELECT has_table_privilege('requests', 'INSERT')").fetchone()
            self.read_only = may is not None and not may[0]
            if self.read_only:
                raise LedgerReadOnly(f"The [ledger] user of this Patchbay may only read {self.where}, so the usage "
                                     "of this app's own gateway is not written there (fine for an admin looking at "
                                     "the team ledger: the Team page reads it all).")
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def _connection(self) -> Any:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.open()
        return self.conn

    def write(self, batch: Sequence[Prepared]) -> list[str]:
        """One transaction in two round trips for a small batch (the usual case: a gateway's writer
        wakes per request or few): the INSERT, then everything else pipelined with the COMMIT."""
        conn = self._connection()
        rows = [p.row for p in batch if not p.count]
        counts = [p.row for p in batch if p.count]  # count_tokens calls: their own table, never spending
        if not rows and not counts:
            return []
        new: set[str] = set()
        counted: list[str] = []
        try:
            with conn.cursor() as cur:
                if not rows:
                    conn.execute("BEGIN")
                elif len(rows) <= SMALL_BATCH:
                    with conn.pipeline():
                        conn.execute("BEGIN")
                        cur.execute(_insert_values(len(rows)), [v for r in rows for v in r])
                else:  # COPY does not run in a pipeline
                    conn.execute("BEGIN")
                    if not self._staged:
                        cur.execute(_STAGE)
                        self._staged = True
                    with cur.copy(_COPY) as copy:
                        for r in rows:
                            copy.write_row(r)
                    cur.execute(_INSERT)
                if rows:
                    new = {r[0] for r in cur.fetchall()}
                for c in counts:
                    cur.execute(_INSERT_COUNT, c)
                    if cur.fetchone() is not None:
                        counted.append(c[0])
            stored = [r for r in rows if r[0] in new]
            with conn.pipeline():
                if stored:
                    with conn.cursor() as cur:
                        write_rollups(cur, stored)
                        bodies = [(p.row[0], p.row[2], "zlib", p.body[0], p.body[1]) for p in batch
                                  if p.body is not None and not p.count and p.row[0] in new]
                        if bodies:
                            cur.executemany(_INSERT_BODY, bodies)
                    ids = [r[0] for r in stored]
                    # settle: the same lock admission takes, so a counter seeded meanwhile is not missed
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUDGET_LOCK,))
                    conn.execute(_SETTLE, (ids,))
                    conn.execute("DELETE FROM budget_holds WHERE request_id = ANY(%s)", (ids,))
                conn.execute("COMMIT")
        except BaseException:
            if conn.broken:
                self.close()
            else:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    self.close()
            raise
        return [r[0] for r in rows if r[0] in new] + counted

    def housekeep(self, settings: LedgerSettings, now: float) -> None:
        conn = self._connection()
        # the database's clock, not this instance's: one running ahead would drop the others' live holds
        conn.execute(f"DELETE FROM budget_holds WHERE expires_at < {DB_NOW}")
        conn.execute("DELETE FROM budget_counters WHERE period_end < %s", (now - 40 * 86400,))
        if settings.capture_retention_days is not None:
            conn.execute("DELETE FROM bodies WHERE captured_at < %s", (now - settings.capture_retention_days * 86400,))
        if settings.retention_days is not None:
            cutoff = now - settings.retention_days * 86400
            conn.execute("DELETE FROM bodies WHERE request_id IN (SELECT request_id FROM requests WHERE "
                         "started_at < %s)", (cutoff,))
            conn.execute("DELETE FROM requests WHERE started_at < %s", (cutoff,))
            conn.execute("DELETE FROM token_counts WHERE started_at < %s", (cutoff,))

    def explain(self, exc: BaseException) -> str:
        import psycopg

        if isinstance(exc, LedgerReadOnly):
            return str(exc)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):  # rights taken away since it opened
            return (f"Patchbay may not write to {self.where} ({text}). Give the [ledger] user INSERT and UPDATE on "
                    "the ledger's tables, or use a role that has them.")
        if "password" in text.lower() or "authentication" in text.lower():
            return (f"Patchbay cannot log in to {self.where} ({text}). Check [ledger] password and the database "
                    "user's rights.")
        return f"Patchbay cannot write to {self.where} ({text})."

    def close(self) -> None:
        conn, self.conn = self.conn, None
        self._staged = False  # the COPY table was the old session's: a new connection makes its own
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


# =========================================================================== reading

_TOTAL = re.compile(r"\btotal\(([^()]*)\)")
_BOOLSUM = re.compile(r"\bsum\(([^()]*(?:\bIS\b|>=|<)[^()]*)\)")
_ORDER = re.compile(r"\b(\w+) (DESC|ASC)\b")
_NULLABLE = {"ttft_ms", "cost_usd", "session_id", "client", "error_type", "error_message", "stop_reason", "agent_id"}
_CAST = re.compile(r"CAST\(([\w ]+?) / (\d+) AS INTEGER\)")


def pg_sql(sql: str) -> str:
    """The reader's SQLite SQL spelt for PostgreSQL."""
    sql = _TOTAL.sub(r"coalesce(sum(\1), 0.0)", sql)
    sql = _BOOLSUM.sub(r"sum((\1)::int)", sql)
    sql = _CAST.sub(r"floor(\1 / \2)::bigint", sql)
    sql = sql.replace("WHERE 1 AND", "WHERE true AND").replace("WHERE 1 GROUP", "WHERE true GROUP")
    if sql.endswith("WHERE 1"):
        sql = sql[:-1] + "true"
    sql = sql.replace(" LIKE ?", " ILIKE ?").replace("instr(", "strpos(").replace("?", "%s")
    # SQLite sorts NULL as the smallest value, PostgreSQL as the largest
    # (only for the columns that can be NULL: on the others it would keep the index from serving the order)
    return _ORDER.sub(lambda m: m.group(0) + (" NULLS LAST" if m.group(2) == "DESC" else " NULLS FIRST")
                      if m.group(1) in _NULLABLE else m.group(0), sql)


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, memoryview):
        return bytes(v)
    return v


class PgLedgerReader(LedgerReader):
    """``LedgerReader``'s queries against the PostgreSQL ledger (thread-safe: a small pool)."""

    def __init__(self, url: str, team: TeamLedger = TeamLedger(), *, tz: Any = None, max_size: int = 4) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        self.path = describe(url)  # type: ignore[assignment]  # messages name the server, not a file
        self.where = f"the PostgreSQL ledger at {describe(url)}"
        self.tz = tz
        kwargs = {"autocommit": True, **connect_kwargs(team)}
        self._pool = ConnectionPool(url, min_size=1, max_size=max_size, kwargs=kwargs, open=False, timeout=2.0,
                                    name="patchbay-ledger-reader")
        self._down: tuple[float, str] | None = None  # (until when, why): fail at once, not after a timeout each
        self._pool.open(wait=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.close(timeout=1.0)

    def check(self) -> int:
        """The schema version found (raises ``LedgerError`` when unreachable)."""
        rows = self._q("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        down = self._down
        if down is not None and time.monotonic() < down[0]:
            raise LedgerError(down[1])
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(pg_sql(sql), tuple(params)).fetchall()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = (f"Patchbay cannot reach {self.where} ({why}). Check that the database runs and [ledger] url "
                   "points at it.")
            self._down = (time.monotonic() + 2.0, msg)
            raise LedgerError(msg) from None
        except psycopg.errors.UndefinedTable:
            raise LedgerError(f"No usage has been recorded yet: {self.where} has no Patchbay tables. Start a "
                              "gateway with this [ledger] url once (it sets the schema up) and send Claude Code "
                              "through it.") from None
        self._down = None
        return [tuple(_plain(v) for v in r) for r in rows]
