"""The usage ledger: one SQLite row per request the gateway served, and queries over them.

Writing: ``Ledger.sink`` is an EventHub sink. It runs on the gateway thread for every event, and
for a ``RequestFinished`` it only appends to an in-memory queue (O(1), never blocks, never
raises). One writer thread drains the queue in batches, prices each record, and commits the batch
in one transaction (WAL, ``synchronous=FULL``). A record is *acknowledged* once that commit
returned: from then on it survives the app quitting, ``kill -9`` and a power cut. ``flush()``
waits for everything queued so far to be acknowledged; ``close()`` flushes and stops. When the
disk refuses a write (full, read-only), the batch stays queued in memory and is retried; nothing
is dropped, and ``on_error`` gets a sentence saying what to do.

Bodies are captured only when ``[ledger] capture`` says so ("all", or "errors"), zlib-compressed,
with secrets scrubbed (auth headers, ``x-api-key`` / ``authorization`` fields, anything shaped
like ``sk-…`` or ``Bearer …``), and deleted after ``capture_retention_days``. Ordinary rows are
kept for ``retention_days`` (default: for ever). Hourly and per-session rollups are kept for
ever: they are what the graphs read, so a dashboard query stays fast at millions of rows.

Reading: ``LedgerReader`` opens its own connection (safe to share between threads) and answers
the GUI's graphs and ``patchbay usage``.

Schema versions live in ``PRAGMA user_version``; upgrading an existing file first copies it to
``<name>.v<N>-<time>.bak`` next to it.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import math
import os
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from app.config import LedgerSettings
from app.events import RequestFinished
from app.paths import make_private_dir, make_private_file
from app.scrub import REDACTED, scrub, scrub_text  # noqa: F401 - the scrubber lives in scrub.py
from app.services.ledger_store import (
    COUNT_COLUMNS,
    ROW_COLUMNS,
    Prepared,
    Store,
    counter_increments,
    rollups,
)
from app.services.pricing import PriceBook

log = logging.getLogger("patchbay.ledger")

SCHEMA_VERSION = 4
HOUR = 3600
MAX_BATCH = 5000


class LedgerError(Exception):
    """The ledger file cannot be used. ``str()`` is the whole message for the user."""


# =========================================================================== schema

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
# identity), and the budget counters and reservations of admission (app/services/admission.py).
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

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)  # MIGRATIONS[n] takes a file from version n to n + 1
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


def _compress(data: bytes | None) -> bytes | None:
    return None if data is None else zlib.compress(scrub(data), 6)


def _decompress(blob: bytes | None, encoding: str) -> bytes | None:
    if blob is None:
        return None
    if encoding == "zlib":
        return zlib.decompress(blob)
    return bytes(blob)


def should_capture(settings: LedgerSettings, ev: RequestFinished) -> bool:
    if settings.capture == "all":
        return True
    if settings.capture == "errors":
        return ev.status >= 400 or ev.error_type is not None
    return False


# =========================================================================== the writer

_INSERT = (f"INSERT OR IGNORE INTO requests({', '.join(ROW_COLUMNS)}) "
           f"VALUES ({','.join('?' for _ in ROW_COLUMNS)})")
_UPSERT_HOUR = (
    "INSERT INTO usage_hourly VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(hour_start, backend, model) DO UPDATE SET "
    "requests = requests + excluded.requests, errors = errors + excluded.errors, "
    "unpriced = unpriced + excluded.unpriced, cost_usd = cost_usd + excluded.cost_usd, "
    "input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens"
)
_UPSERT_SESSION = (
    "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(session_id) DO UPDATE SET "
    "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen), "
    "requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, "
    "output_tokens = output_tokens + excluded.output_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, "
    "cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced, "
    "backends = CASE WHEN instr(',' || backends || ',', ',' || excluded.backends || ',') > 0 THEN backends "
    "ELSE backends || ',' || excluded.backends END, client = coalesce(client, excluded.client)"
)
_INSERT_BODY = "INSERT OR REPLACE INTO bodies VALUES (?,?,?,?,?)"
_INSERT_COUNT = (f"INSERT OR IGNORE INTO token_counts({', '.join(COUNT_COLUMNS)}) "
                 f"VALUES ({','.join('?' for _ in COUNT_COLUMNS)})")


def _row(ev: RequestFinished, cost: float | None, instance: str | None = None) -> tuple[Any, ...]:
    u = ev.usage
    return (
        str(ev.request_id), float(ev.started_at), float(ev.ended_at), ev.session_id, ev.client, ev.route,
        ev.backend, ev.requested_model, ev.model, 1 if ev.stream else 0, int(ev.status), ev.error_type,
        scrub_text(ev.error_message), ev.stop_reason, ev.ttft_ms, float(ev.duration_ms), int(u.input_tokens),
        int(u.output_tokens), int(u.cache_creation_input_tokens), int(u.cache_read_input_tokens), cost,
        int(ev.attempts), ev.agent_id, instance, 1 if ev.interrupted else 0,
        ev.user, groups_text(ev.groups), ev.identity_source, ev.client_addr,
    )


def groups_text(groups: tuple[str, ...]) -> str | None:
    """A row's ``groups`` column: the names joined by commas (None when there are none)."""
    return ",".join(g.replace(",", " ") for g in groups) if groups else None


def _count_row(ev: RequestFinished) -> tuple[Any, ...]:
    """A count_tokens call as a token_counts row (COUNT_COLUMNS)."""
    return (str(ev.request_id), float(ev.started_at), ev.session_id, ev.client, ev.backend, ev.model,
            int(ev.status), ev.error_type, scrub_text(ev.error_message), float(ev.duration_ms))


class SqliteStore:
    """The embedded store: one SQLite file (WAL, ``synchronous=FULL``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = f"the usage ledger {self.path}"
        self.conn: sqlite3.Connection | None = None
        self.backup_path: Path | None = None

    def open(self) -> None:
        self.conn, self.backup_path = open_db(self.path)

    def write(self, batch: Sequence[Prepared]) -> list[str]:
        conn = self.conn
        assert conn is not None
        ids: list[str] = []
        stored: list[tuple[Any, ...]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for p in batch:
                if p.count:
                    if conn.execute(_INSERT_COUNT, p.row).rowcount == 1:
                        ids.append(p.row[0])
                    continue
                if conn.execute(_INSERT, p.row).rowcount != 1:
                    continue  # this request id is already stored (a retry after a failed commit)
                ids.append(p.row[0])
                stored.append(p.row)
                if p.body is not None:
                    conn.execute(_INSERT_BODY, (p.row[0], p.row[2], "zlib", p.body[0], p.body[1]))
            hourly, sessions = rollups(stored)
            if hourly:
                conn.executemany(_UPSERT_HOUR, hourly)
            if sessions:
                conn.executemany(_UPSERT_SESSION, sessions)
            if stored:
                lo = min(r[1] for r in stored)
                counters = conn.execute("SELECT scope, period_start, period_end FROM budget_counters "
                                        "WHERE period_end > ?", (lo,)).fetchall()
                inc = counter_increments(counters, stored)
                if inc:
                    conn.executemany("UPDATE budget_counters SET spent = spent + ? WHERE scope = ? AND "
                                     "period_start = ? AND period_end = ?", inc)
                conn.executemany("DELETE FROM budget_holds WHERE request_id = ?", [(r[0],) for r in stored])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return ids

    def housekeep(self, settings: LedgerSettings, now: float) -> None:
        assert self.conn is not None
        delete_expired(self.conn, settings, now)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        conn.close()


class Ledger:
    """The one writer of the ledger. See the module docstring for the guarantees.

    ``store`` is where rows go (default: the SQLite file at ``path``). With a ``spool`` (the
    PostgreSQL store has one), a batch the store cannot take is written to the spool instead and
    counts as acknowledged; the spool drains into the store, oldest first, once it answers again."""

    def __init__(self, path: Path, *, prices: PriceBook, settings: LedgerSettings = LedgerSettings(),
                 store: Store | None = None, spool: Any = None, instance: str | None = None) -> None:
        self.path = Path(path)
        self.store: Store = store if store is not None else SqliteStore(self.path)
        self.spool = spool  # app.services.spool.Spool | None
        self.instance = instance
        self._prices = prices
        self._settings = settings
        self.on_error: Callable[[str], None] | None = None
        # Called on the writer thread after each commit with the request ids it made durable.
        self.on_commit: Callable[[Sequence[str]], None] | None = None
        # Called on the writer thread when the store goes away (a reason) or comes back (None).
        self.on_degraded: Callable[[str | None], None] | None = None
        self.backup_path: Path | None = None  # where the pre-upgrade copy went, if an upgrade ran
        self._q: collections.deque[tuple[int, RequestFinished]] = collections.deque()
        self._qlock = threading.Lock()
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._done_seq = 0
        self._cv = threading.Condition()
        self._wake = threading.Event()
        self._urgent = threading.Event()  # flush / drain / close: no lingering
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._opened = False
        self._housekeep_due = True
        self._next_housekeep = 0.0
        self._last_error: tuple[str, float] | None = None
        self._retry_at = 0.0
        self._retry_s = 0.0
        self.degraded: str | None = None  # why rows go to the spool instead of the store; None: they do not
        self.written = 0  # rows committed since start

    @property
    def _conn(self) -> sqlite3.Connection | None:
        return getattr(self.store, "conn", None)

    @property
    def spooled(self) -> int:
        """Rows waiting in the spool for the store."""
        return self.spool.pending if self.spool is not None else 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open (create, upgrade) the store and start the writer. Raises ``LedgerError``. With a
        spool, a store that cannot be reached does not stop the start: rows wait in the spool."""
        if self._thread is not None:
            return
        self._stopping = self._abandon = False
        if self.spool is not None:
            self.spool.open()
        self._opened = False
        try:
            self.store.open()
            self._opened = True
        except LedgerError:
            raise
        except Exception as exc:
            if self.spool is None:
                raise LedgerError(f"Patchbay cannot open {self.store.where} ({exc}).") from None
            self._set_degraded(self._explain(exc))
        self.backup_path = getattr(self.store, "backup_path", None)
        self._thread = threading.Thread(target=self._run, name="patchbay-ledger", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def close(self, timeout: float = 5.0) -> None:
        """Write everything queued, then stop the writer."""
        t = self._thread
        if t is None:
            return
        self._stopping = True
        self._urgent.set()
        self._wake.set()
        t.join(timeout)
        if t.is_alive():
            self._abandon = True
            self._wake.set()
            t.join(1.0)
            left = len(self._q)
            if left:
                self._report(f"Patchbay stopped with {left} usage records it could not write to {self.store.where}; "
                             "they are lost. Free disk space or fix the file's permissions before the next start.")
        self._thread = None
        try:
            atexit.unregister(self._at_exit)
        except Exception:
            pass

    def _at_exit(self) -> None:
        self.close(timeout=5.0)

    # ------------------------------------------------------------------ intake (gateway thread)

    def sink(self, event: object) -> None:
        """EventHub sink: keeps each ``RequestFinished``; ignores every other event. O(1), never
        blocks, never raises."""
        if type(event) is RequestFinished:
            try:
                self._enqueue(event)
            except Exception:
                pass

    def record(self, finished: RequestFinished) -> None:
        self._enqueue(finished)

    def _enqueue(self, ev: RequestFinished) -> None:
        with self._qlock:
            seq = next(self._seq)
            self._q.append((seq, ev))
            self._last_seq = seq
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is acknowledged (in the store, or in the
        spool). False on timeout."""
        target = self._last_seq
        self._urgent.set()
        self._wake.set()
        try:
            with self._cv:
                return self._cv.wait_for(lambda: self._done_seq >= target, timeout)
        finally:
            self._urgent.clear()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the spool is empty too (everything is in the store). False on timeout."""
        deadline = time.monotonic() + timeout
        if not self.flush(timeout):
            return False
        while self.spooled:
            self._retry_at = 0.0
            self._wake.set()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def reconfigure(self, prices: PriceBook, settings: LedgerSettings) -> None:
        """New prices (for records written from now on) and capture/retention settings."""
        self._prices = prices
        self._settings = settings
        self._housekeep_due = True
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._q)

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        backoff = 0.0
        try:
            while True:
                # idle: sleep until woken (a record, flush, close) or housekeeping is due - an app
                # that sits in the menu bar all day should not tick every second
                idle = min(60.0, max(1.0, self._next_housekeep - time.time()))
                if self.spooled:
                    idle = max(0.0, min(idle, self._retry_at - time.monotonic()))
                self._wake.wait(timeout=idle if backoff == 0 else backoff)
                self._wake.clear()
                if self._abandon:
                    return
                linger = getattr(self.store, "linger_s", 0.0)
                if linger and self._q and len(self._q) < MAX_BATCH and not self._stopping:
                    # a networked store pays per statement: let a few more records join this batch
                    # (flush, drain and close cut the wait short)
                    self._urgent.wait(linger)
                while self._q and not self._abandon:
                    n = min(len(self._q), MAX_BATCH)
                    batch = [self._q[i] for i in range(n)]
                    try:
                        ids = self._write(batch)
                    except Exception as exc:  # the disk, the file, or a bug: keep the batch, retry
                        self._report(self._explain(exc))
                        backoff = min(max(backoff * 2, 0.25), 5.0)
                        break
                    for _ in range(n):
                        self._q.popleft()
                    backoff = 0.0
                    self._last_error = None
                    self.written += len(batch)
                    with self._cv:
                        self._done_seq = batch[-1][0]
                        self._cv.notify_all()
                    cb = self.on_commit
                    if cb is not None:
                        try:
                            cb(ids)
                        except Exception:
                            log.exception("ledger on_commit callback failed")
                if self.spool is not None and self.spooled and time.monotonic() >= self._retry_at:
                    self._drain_spool()
                if backoff == 0 and self._opened and not self.degraded and (
                        self._housekeep_due or time.time() >= self._next_housekeep):
                    self._housekeep()
                if self._stopping and not self._q:
                    if self.spool is not None and self.spooled and not self.degraded:
                        self._drain_spool()
                    return
        finally:
            try:
                self.store.close()
            except Exception:
                pass
            if self.spool is not None:
                self.spool.close()

    def _prepare(self, batch: list[tuple[int, RequestFinished]]) -> list[Prepared]:
        prices, settings = self._prices, self._settings
        out: list[Prepared] = []
        for _seq, ev in batch:
            if ev.endpoint == "count_tokens":  # free: kept apart, never in the spending rollups
                try:
                    out.append(Prepared(_count_row(ev), count=True))
                except Exception as exc:
                    self._report(f"A usage record ({getattr(ev, 'request_id', '?')!r}) could not be stored: "
                                 f"{exc}. Please report this as a Patchbay bug.")
                continue
            try:
                cost = prices.cost_of(ev)
            except Exception:
                cost = None
            try:
                row = _row(ev, cost, self.instance)
                body = None
                if (ev.request_body is not None or ev.response_body is not None) and should_capture(settings, ev):
                    body = (_compress(ev.request_body), _compress(ev.response_body))
            except Exception as exc:  # a malformed event must not block every record after it
                self._report(f"A usage record ({getattr(ev, 'request_id', '?')!r}) could not be stored: {exc}. "
                             "Please report this as a Patchbay bug.")
                continue
            out.append(Prepared(row, body))
        return out

    def _write(self, batch: list[tuple[int, RequestFinished]]) -> list[str]:
        prepared = self._prepare(batch)
        if self.spool is None:
            return self.store.write(prepared)
        if not self.spooled and self._opened:
            try:
                return self.store.write(prepared)
            except LedgerError:
                raise
            except Exception as exc:  # unreachable, or it refused the batch: the spool keeps it
                self.spool.append(prepared)
                self._set_degraded(self._explain(exc))  # after the append: the log line counts these rows too
                return [p.row[0] for p in prepared]
        self.spool.append(prepared)  # behind what waits there already: the store gets them in order
        return [p.row[0] for p in prepared]

    def _drain_spool(self) -> None:
        spool = self.spool
        assert spool is not None
        try:
            if not self._opened:
                self.store.open()
                self._opened = True
            while not self._abandon:
                last, prepared = spool.peek(MAX_BATCH)
                if last is None:
                    break
                self.store.write(prepared)  # idempotent: a crash before the delete below repeats nothing
                spool.delete_through(last)
                self.written += len(prepared)
        except LedgerError as exc:  # a newer schema appeared: say so and keep the rows
            self._set_degraded(str(exc))
            self._retry_s = 30.0
            self._retry_at = time.monotonic() + self._retry_s
            return
        except Exception as exc:
            self._set_degraded(self._explain(exc))
            self._retry_s = min(max(self._retry_s * 2, 0.5), 5.0)
            self._retry_at = time.monotonic() + self._retry_s
            return
        self._retry_s = 0.0
        if not spool.pending:
            self._set_degraded(None)

    def _set_degraded(self, reason: str | None) -> None:
        if reason == self.degraded:
            return
        was = self.degraded
        self.degraded = reason
        if reason is None:
            log.info("%s answers again; the spool is drained", self.store.where)
        elif was is None:
            self._retry_at = time.monotonic() + 0.5
            self._retry_s = 0.5
        if reason is not None:  # the rows are kept, so the log says it, not on_error ("not being recorded")
            self._report(f"{reason} Usage rows wait in the local spool ({self.spooled} now) and are written "
                         "once it answers.", tell=False)
        cb = self.on_degraded
        if cb is not None:
            try:
                cb(reason)
            except Exception:
                log.exception("ledger on_degraded callback failed")

    def _housekeep(self) -> None:
        self._housekeep_due = False
        self._next_housekeep = time.time() + HOUR
        try:
            self.store.housekeep(self._settings, time.time())
        except Exception as exc:
            self._report(self._explain(exc))

    # ------------------------------------------------------------------ errors

    def _explain(self, exc: BaseException) -> str:
        explain = getattr(self.store, "explain", None)
        if explain is not None:
            return str(explain(exc))
        text = str(exc).lower()
        n = len(self._q)
        keep = f"Patchbay keeps the {n} newest usage record{'s' if n != 1 else ''} in memory and retries."
        if "full" in text or getattr(exc, "errno", None) == 28:
            return f"The usage ledger cannot be written: the disk holding {self.path} is full. Free some space; {keep}"
        if "readonly" in text or "read-only" in text or "permission" in text:
            return (f"The usage ledger {self.path} is read-only. Make the file and its folder writable; {keep}")
        if "locked" in text or "busy" in text:
            return (f"Another program is holding the usage ledger {self.path} locked. Close it (a database "
                    f"browser, a backup tool); {keep}")
        if "malformed" in text or "not a database" in text:
            return (f"The usage ledger {self.path} is damaged ({exc}). Quit Patchbay and move the file away; "
                    f"{keep}")
        return f"The usage ledger {self.path} could not be written ({exc}). {keep}"

    def _report(self, message: str, *, tell: bool = True) -> None:
        now = time.monotonic()
        last = self._last_error
        if last is not None and last[0] == message.split(";")[0] and now - last[1] < 60:
            return
        self._last_error = (message.split(";")[0], now)
        log.warning("%s", message)
        cb = self.on_error if tell else None
        if cb is not None:
            try:
                cb(message)
            except Exception:
                log.exception("ledger on_error callback failed")


def delete_expired(conn: sqlite3.Connection, settings: LedgerSettings, now: float, chunk: int = 5000) -> int:
    """Apply the retention settings: captured bodies after ``capture_retention_days``, rows after
    ``retention_days`` (None keeps them). Rollups are kept. Deletes in small transactions."""
    deleted = 0
    if settings.capture_retention_days is not None:
        cutoff = now - settings.capture_retention_days * 86400
        deleted += _delete_chunks(conn, "DELETE FROM bodies WHERE rowid IN "
                                  "(SELECT rowid FROM bodies WHERE captured_at < ? LIMIT ?)", cutoff, chunk)
    if settings.retention_days is not None:
        cutoff = now - settings.retention_days * 86400
        deleted += _delete_chunks(conn, "DELETE FROM bodies WHERE request_id IN (SELECT request_id FROM requests "
                                  "WHERE started_at < ? ORDER BY started_at LIMIT ?)", cutoff, chunk)
        deleted += _delete_chunks(conn, "DELETE FROM requests WHERE id IN "
                                  "(SELECT id FROM requests WHERE started_at < ? ORDER BY started_at LIMIT ?)",
                                  cutoff, chunk)
        deleted += _delete_chunks(conn, "DELETE FROM token_counts WHERE rowid IN "
                                  "(SELECT rowid FROM token_counts WHERE started_at < ? LIMIT ?)", cutoff, chunk)
    return deleted


def _delete_chunks(conn: sqlite3.Connection, sql: str, cutoff: float, chunk: int) -> int:
    total = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(sql, (cutoff, chunk)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        total += n
        if n < chunk:
            return total


# =========================================================================== reading


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    bucket_start: float
    key: str
    cost_usd: float  # priced requests only
    tokens: int  # all four kinds
    requests: int
    unpriced_requests: int


@dataclass(frozen=True, slots=True)
class TokenRate:
    minute_start: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    first_seen: float
    last_seen: float
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    unpriced_requests: int
    backends: tuple[str, ...]
    client: str | None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.last_seen - self.first_seen)


@dataclass(frozen=True, slots=True)
class RequestRow:
    request_id: str
    started_at: float
    ended_at: float
    session_id: str | None
    client: str | None
    route: str
    backend: str
    requested_model: str
    model: str
    stream: bool
    status: int
    error_type: str | None
    error_message: str | None
    stop_reason: str | None
    ttft_ms: float | None
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float | None  # None: unpriced
    attempts: int
    agent_id: str | None
    interrupted: bool = False

    @property
    def unpriced(self) -> bool:
        return self.cost_usd is None


@dataclass(frozen=True, slots=True)
class RequestDetail:
    row: RequestRow
    request_body: bytes | None  # decompressed, secrets scrubbed; None when not captured
    response_body: bytes | None
    captured: bool


@dataclass(frozen=True, slots=True)
class TotalsRow:
    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float  # priced requests only
    unpriced_requests: int
    errors: int = 0
    bucket_start: float | None = None  # for by = day / hour


_ROW_COLS = ("request_id, started_at, ended_at, session_id, client, route, backend, requested_model, model, stream, "
             "status, error_type, error_message, stop_reason, ttft_ms, duration_ms, input_tokens, output_tokens, "
             "cache_write_tokens, cache_read_tokens, cost_usd, attempts, agent_id, interrupted")
_ORDERABLE = {"started_at", "ended_at", "duration_ms", "ttft_ms", "cost_usd", "input_tokens", "output_tokens",
              "cache_read_tokens", "cache_write_tokens", "status", "backend", "model", "session_id", "requested_model"}
_AGG = ("count(*), sum(status >= 400 OR error_type IS NOT NULL), sum(cost_usd IS NULL), total(cost_usd), "
        "sum(input_tokens), sum(output_tokens), sum(cache_write_tokens), sum(cache_read_tokens)")
Bucket = Literal["hour", "day", "month"]


def _to_row(r: Sequence[Any]) -> RequestRow:
    return RequestRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11], r[12], r[13],
                      r[14], r[15], r[16], r[17], r[18], r[19], r[20], r[21], r[22], bool(r[23]))


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

    def __enter__(self) -> "LedgerReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def spent(self, since: float, backend: str | None = None) -> float:
        """Dollars spent on priced requests started at or after ``since`` (on one backend, or all)."""
        return float(sum(v[3] for v in self._agg(since, None, "all", "none", backend).values()))

    def unpriced_since(self, since: float, backend: str | None = None) -> int:
        return int(sum(v[2] for v in self._agg(since, None, "all", "none", backend).values()))

    def count(self) -> int:
        return int(self._q("SELECT count(*) FROM requests")[0][0])

    def token_counts(self) -> int:
        """How many count_tokens calls are recorded (they are kept apart from the requests)."""
        return int(self._q("SELECT count(*) FROM token_counts")[0][0])
