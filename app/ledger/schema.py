"""The usage ledger's SQLite file: its schema, the migrations between versions, and opening it.

``open_db`` creates a new file at ``SCHEMA_VERSION`` or upgrades an older one, one migration per
version, each in its own transaction, after copying the file to ``<name>.v<N>-<time>.bak``. A file
it refuses (damaged, another program's, written by a newer Patchbay) is left as it was, and the
``LedgerError`` it raises says what to do in one sentence for the user. ``_diagnose`` tells a
read-only or full disk apart from a damaged file, so nobody is told to throw their history away.

Schema versions live in ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes a file from n to n + 1.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from app.paths import make_private_dir, make_private_file

SCHEMA_VERSION = 10


class LedgerError(Exception):
    """The ledger file cannot be used. ``str()`` is the whole message for the user."""


_V1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests(
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    session_id TEXT,
    client TEXT,
    route TEXT NOT NULL,
    backend TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    ttft_ms REAL,
    duration_ms REAL NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX requests_started ON requests(started_at);
CREATE INDEX requests_session ON requests(session_id, started_at);
CREATE TABLE bodies(
    request_id TEXT PRIMARY KEY,
    captured_at REAL NOT NULL,
    encoding TEXT NOT NULL,
    request BLOB,
    response BLOB
);
CREATE INDEX bodies_captured ON bodies(captured_at);
"""

# v2: stop reason and subagent id per row; hourly and per-session rollups for fast graphs.
_V2 = """
ALTER TABLE requests ADD COLUMN stop_reason TEXT;
ALTER TABLE requests ADD COLUMN agent_id TEXT;
CREATE TABLE usage_hourly(
    hour_start INTEGER NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    PRIMARY KEY(hour_start, backend, model)
) WITHOUT ROWID;
CREATE TABLE sessions(
    session_id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    backends TEXT NOT NULL,
    client TEXT
);
CREATE INDEX sessions_last_seen ON sessions(last_seen);
INSERT INTO usage_hourly
    SELECT CAST(started_at / 3600 AS INTEGER) * 3600, backend, model, count(*),
           sum(status >= 400 OR error_type IS NOT NULL), sum(cost_usd IS NULL), total(cost_usd),
           sum(input_tokens), sum(output_tokens), sum(cache_write_tokens), sum(cache_read_tokens)
    FROM requests GROUP BY 1, 2, 3;
INSERT INTO sessions
    SELECT session_id, min(started_at), max(ended_at), count(*), sum(input_tokens), sum(output_tokens),
           sum(cache_write_tokens), sum(cache_read_tokens), total(cost_usd), sum(cost_usd IS NULL),
           group_concat(DISTINCT backend), max(client)
    FROM requests WHERE session_id IS NOT NULL GROUP BY session_id;
"""

# v3: a flag for answers that stopped part-way (their usage is what was known then), and the
# count_tokens calls, kept apart from the requests so that they never count as spending.
_V3 = """
ALTER TABLE requests ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE token_counts(
    request_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    session_id TEXT,
    client TEXT,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    duration_ms REAL NOT NULL
);
CREATE INDEX token_counts_started ON token_counts(started_at);
"""

# v4: the instance that served each row (a team ledger has several), room for who sent it (filled in by
# identity), and the budget counters and reservations of admission (app/budgets/admission.py).
_V4 = """
ALTER TABLE requests ADD COLUMN instance TEXT;
ALTER TABLE requests ADD COLUMN user_id TEXT;
ALTER TABLE requests ADD COLUMN groups TEXT;
ALTER TABLE requests ADD COLUMN identity_source TEXT;
ALTER TABLE requests ADD COLUMN client_addr TEXT;
CREATE TABLE budget_counters(
    scope TEXT NOT NULL,
    period_start REAL NOT NULL,
    period_end REAL NOT NULL,
    spent REAL NOT NULL,
    PRIMARY KEY(scope, period_start, period_end)
) WITHOUT ROWID;
CREATE TABLE budget_holds(
    request_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    period_start REAL NOT NULL,
    amount REAL NOT NULL,
    instance TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY(request_id, scope, period_start)
) WITHOUT ROWID;
CREATE INDEX budget_holds_scope ON budget_holds(scope, period_start);
"""

# v5: a person's rows by time. A per-person budget's counter, met for the first time in its period,
# is seeded from that person's rows while admission holds the ledger's write lock: without this a
# month of a busy team (300,000 rows) took ~240 ms to scan, stalling every request meanwhile; with it
# ~2 ms. (The PostgreSQL ledger has had the same index since its first schema.)
_V5 = """
CREATE INDEX requests_user ON requests(user_id, started_at);
"""

# v6: requests served under a Claude subscription (the caller's OAuth login forwarded to Anthropic):
# ``plan`` = 'subscription', ``cost_usd`` 0 (no money spent, so no spending total or budget counts
# them) and their value at API prices in ``api_equiv_usd``, shown apart as "API-equivalent"
_V6 = """
ALTER TABLE requests ADD COLUMN plan TEXT;
ALTER TABLE requests ADD COLUMN api_equiv_usd REAL;
"""

# v7: how a row's usage was counted and priced. ``usage_counted``: "streamed", an answer cut short
# before the upstream's final usage, its output counted from what was forwarded; "estimated", a
# whole answer the client left before it came, its prompt estimated; NULL, the upstream's numbers.
# ``priced_by``: the fallback price a model the price table does not know was charged at (NULL:
# the table's own price).
_V7 = """
ALTER TABLE requests ADD COLUMN usage_counted TEXT;
ALTER TABLE requests ADD COLUMN priced_by TEXT;
"""

# v8: a reservation's worst case and what a row of it needs (app/budgets/admission.py, hold_reaper.py):
# ``exposure`` is what a stream may still cost beyond its hold until the upstream says what its prompt
# cost; ``started_at`` and ``detail`` (JSON: who, where, which model) let another instance write the
# row of a request whose instance died; ``instances`` holds each instance's heartbeat.
_V8 = """
ALTER TABLE budget_holds ADD COLUMN exposure REAL NOT NULL DEFAULT 0;
ALTER TABLE budget_holds ADD COLUMN started_at REAL;
ALTER TABLE budget_holds ADD COLUMN detail TEXT;
CREATE TABLE instances(instance TEXT PRIMARY KEY, seen_at REAL NOT NULL);
"""

# v9: spend limits set through the Admin API (app/team/spend_limits.py): one row per scope and period,
# ``amount_cents`` NULL = unlimited; every instance reads them again within a second
_V9 = """
CREATE TABLE spend_limits(
    id TEXT PRIMARY KEY,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_cents INTEGER,
    action TEXT NOT NULL DEFAULT 'block',
    warn_at REAL NOT NULL DEFAULT 0.8,
    blocked_message TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE(scope_type, scope_id, period)
);
"""

# v10: Claude Code's OTLP telemetry in team mode (app/team/telemetry.py): one row per metric point,
# log event or span, attributed to the person the gateway identified (``user_id``, ``groups``
# comma-joined as in ``requests``), pruned after ``[team.telemetry] retention_days``. ``detail`` is
# the one attribute the Team page's summaries group by (lines "added"/"removed", a decision).
_V10 = """
CREATE TABLE telemetry(
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    user_id TEXT NOT NULL,
    groups TEXT,
    signal TEXT NOT NULL,
    name TEXT NOT NULL,
    session_id TEXT,
    value REAL,
    detail TEXT,
    attrs TEXT
);
CREATE INDEX telemetry_time ON telemetry(received_at);
CREATE INDEX telemetry_user ON telemetry(user_id, received_at);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10)  # MIGRATIONS[n] takes a file from version n to n + 1
assert len(MIGRATIONS) == SCHEMA_VERSION


def _not_usable(path: Path, exc: BaseException) -> LedgerError:
    return LedgerError(
        f"The usage ledger {path} cannot be read ({exc}). The file is damaged or is not a Patchbay "
        f"ledger. Move it away (Patchbay then starts a new, empty one), or put back a backup "
        f"({path.name}.v*.bak) if there is one."
    )


def _backup(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.v{version}-{stamp}.bak")
    try:
        out = sqlite3.connect(dest)
        try:
            conn.backup(out)
        finally:
            out.close()
    except (sqlite3.Error, OSError) as exc:
        raise LedgerError(
            f"Patchbay needs to upgrade the usage ledger {path}, but could not first back it up to {dest} "
            f"({exc}). Free some disk space or fix the folder's permissions, then start Patchbay again."
        ) from None
    return dest


def _diagnose(path: Path, exc: BaseException) -> LedgerError:
    """The right sentence for a failure to open or write the ledger: a read-only or full disk is
    not a damaged file, and moving the file away would throw the user's history away."""
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text or "permission" in text or "unable to open" in text:
        return LedgerError(
            f"The usage ledger {path} (or its folder) is read-only ({exc}), so Patchbay could not keep usage "
            "records. Make the file and its folder writable, then start Patchbay again. The file itself is fine: "
            "keep it.")
    if "full" in text or getattr(exc, "errno", None) == 28:
        return LedgerError(
            f"The disk holding the usage ledger {path} is full, so Patchbay could not keep usage records. Free some "
            "space, then start Patchbay again. The file itself is fine: keep it.")
    if "disk i/o" in text:
        return LedgerError(
            f"The usage ledger {path} could not be read or written ({exc}): the disk may be full, failing or "
            "read-only. Check it (free space, mount options), then start Patchbay again; keep the file.")
    if "locked" in text or "busy" in text:
        return LedgerError(
            f"Another program holds the usage ledger {path} locked ({exc}). Close it (another Patchbay, a "
            "database browser, a backup tool), then start Patchbay again.")
    return _not_usable(path, exc)


def _writable(path: Path) -> bool:
    """The file (if it exists) and its folder can be written: WAL adds files beside it."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def make_private(path: Path) -> None:
    """A SQLite file and its -wal / -shm files owner-only: the ledger holds prompts when capture is
    on, the spool holds rows. SQLite gives the side files the main file's mode, but a file made
    before that rule keeps its own."""
    if os.name != "posix":
        return
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if p.exists() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except OSError:
            pass


def open_db(path: Path, *, target: int = SCHEMA_VERSION) -> tuple[sqlite3.Connection, Path | None]:
    """Open (creating or upgrading to ``target``) the ledger file for writing.

    Returns the connection and the backup made before an upgrade, if one was made. Raises
    ``LedgerError`` with a sentence for the user. A file that is refused is left unchanged, and
    a ledger where records cannot be written (read-only, full disk) is refused at the start
    rather than losing records later.
    """
    try:
        make_private_dir(path.parent)
    except OSError as exc:
        raise LedgerError(f"Patchbay cannot create the folder {path.parent} for its usage ledger "
                          f"({exc.strerror}). Check the folder's permissions.") from None
    if not _writable(path):
        raise _diagnose(path, PermissionError("read-only"))
    existed = path.exists()
    try:
        if not existed:
            make_private_file(path)  # SQLite gives -wal and -shm the main file's mode
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    except (sqlite3.Error, OSError) as exc:
        raise _diagnose(path, exc) from None
    backup = None
    try:
        try:  # read only, so that a file we refuse is left as it was
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise _diagnose(path, exc) from None
        if version == 0 and names:
            raise _not_usable(path, Exception("it holds other tables"))
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"The usage ledger {path} was written by a newer Patchbay (schema {version}; this one "
                f"knows up to {SCHEMA_VERSION}). Update Patchbay, or move the file away to start a new one."
            )
        make_private(path)
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA cache_size=-16000")
            conn.execute("PRAGMA temp_store=MEMORY")
            if version:  # one real write: a disk that cannot take records is found now, not at exit
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('opened_at', ?)", (str(time.time()),))
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _diagnose(path, exc) from None
        make_private(path)
        if 0 < version < target:
            backup = _backup(conn, path, version)
        for v in range(version, target):
            try:
                conn.execute("BEGIN IMMEDIATE")
                for stmt in _statements(MIGRATIONS[v]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {v + 1}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise LedgerError(
                    f"Patchbay could not upgrade the usage ledger {path} to schema {v + 1} ({exc}). "
                    f"The file is unchanged{f'; a copy is at {backup}' if backup else ''}. "
                    "Free some disk space and start Patchbay again."
                ) from None
    except BaseException:
        conn.close()
        raise
    return conn, backup


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT on its own; run each statement inside our transaction instead.
    out, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
