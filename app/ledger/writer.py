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

This file is the writer. The rest of the ledger, one part a file:

- app/ledger/schema.py: the SQLite schema, its migrations, ``open_db``, ``LedgerError``;
- app/ledger/sqlite.py: ``SqliteStore`` (one batch, one transaction) and retention;
- app/ledger/rows.py: a row both ways: built from a ``RequestFinished``, read back typed;
- app/ledger/reader.py: ``LedgerReader`` and its queries;
- app/ledger/store.py: the ``Store`` protocol and the rollups every store shares
  (pg.py is the PostgreSQL store).
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.catalog.prices import PriceBook
from app.config import LedgerSettings
from app.events import RequestFinished
from app.ledger.rows import (
    compressed_body,
    count_row,
    request_row,
    should_capture,
)
from app.ledger.schema import LedgerError
from app.ledger.sqlite import SqliteStore
from app.ledger.store import HOUR, Prepared, Store

log = logging.getLogger("patchbay.ledger")

MAX_BATCH = 5000


class Ledger:
    """The one writer of the ledger. See the module docstring for the guarantees.

    ``store`` is where rows go (default: the SQLite file at ``path``). With a ``spool`` (the
    PostgreSQL store has one), a batch the store cannot take is written to the spool instead and
    counts as acknowledged; the spool drains into the store, oldest first, once it answers again."""

    def __init__(self, path: Path, *, prices: PriceBook, settings: LedgerSettings = LedgerSettings(),
                 store: Store | None = None, spool: Any = None, instance: str | None = None) -> None:
        self.path = Path(path)
        self.store: Store = store if store is not None else SqliteStore(self.path)
        self.spool = spool  # app.ledger.spool.Spool | None
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

    def retry_now(self) -> None:
        """The store answers again (``pg_revive``'s probe): drain the spool now, not after the backoff."""
        self._retry_at = 0.0
        self._wake.set()

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
                    out.append(Prepared(count_row(ev), count=True))
                except Exception as exc:
                    self._report(f"A usage record ({getattr(ev, 'request_id', '?')!r}) could not be stored: "
                                 f"{exc}. Please report this as a Patchbay bug.")
                continue
            try:
                cost = prices.cost_of(ev)
                api_equiv = prices.api_equivalent(ev)
                priced_by = prices.priced_by(ev.backend, ev.model) if cost is not None or api_equiv is not None else None
            except Exception:
                cost = api_equiv = priced_by = None
            try:
                row = request_row(ev, cost, self.instance, api_equiv, priced_by)
                body = None
                if (ev.request_body is not None or ev.response_body is not None) and should_capture(settings, ev):
                    body = (compressed_body(ev.request_body), compressed_body(ev.response_body))
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
