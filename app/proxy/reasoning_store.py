"""The reasoning each tool call came with, kept so it can be sent back where a provider demands it.

DeepSeek's thinking models and Kimi refuse an assistant tool-call message without
``reasoning_content``; OpenRouter's Gemini 3 refuses one without the ``reasoning_details``
(encrypted thought signatures) it came with (``app.config.providers``). Within one Claude Code
process the thinking blocks come back in the history, but ``claude --continue`` / ``--resume``
and ``/model`` drop them, and ``reasoning_details`` never reach the client at all. So every
answer of an ``openai`` backend that made tool calls and reasoned is noted here, under each
call's ``toolu_`` id (ids are unique per session, and across sessions: 128 random bits), with
the backend that produced it.

Bounded: the last :data:`KEEP` tool calls; reasoning text cut to :data:`MAX_REASONING` characters
(any string will do for DeepSeek, the head keeps the gist); ``reasoning_details`` over
:data:`MAX_DETAILS` bytes are not kept (a signature cannot be cut). At most about 50 MB on disk,
usually far less. It survives a gateway restart: the engine attaches a small SQLite file in the
data folder (owner-only, like the ledger); without one (tests, probes) it lives in memory. It holds
model output only, never a credential. A failure of the file never fails a request: the note or
the look-up is skipped (the empty string goes instead) and the log says so once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("patchbay.reasoning")

FILE_NAME = "reasoning.sqlite3"
KEEP = 1000
MAX_REASONING = 16_000
MAX_DETAILS = 32_000
_SCHEMA = ("CREATE TABLE IF NOT EXISTS echo (seq INTEGER PRIMARY KEY AUTOINCREMENT, tool_id TEXT NOT NULL UNIQUE, "
           "backend TEXT NOT NULL, reasoning TEXT NOT NULL, details BLOB)")
_JOINED = ("text", "summary", "data", "signature")  # reasoning_details fields that stream in pieces


@dataclass(frozen=True)
class Recalled:
    backend: str  # the backend whose answer it was
    reasoning: str
    details: list[Any] | None  # OpenRouter's reasoning_details, merged


def merge_details(items: Iterable[Any]) -> list[Any]:
    """Streamed ``reasoning_details`` pieces → the list to send back: pieces of one item (same
    ``type`` and ``index``) joined, their text fields concatenated, other fields from the first."""
    out: list[dict[str, Any]] = []
    where: dict[tuple[Any, Any], dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        key = (item.get("type"), item.get("index"))
        have = where.get(key) if item.get("index") is not None else None
        if have is None:
            have = dict(item)
            out.append(have)
            where[key] = have
            continue
        for field, value in item.items():
            before = have.get(field)
            if field in _JOINED and isinstance(value, str) and isinstance(before, str):
                have[field] = before + value
            elif before is None:
                have[field] = value
    return out


class ReasoningStore:
    """Thread-safe; one per process (:data:`STORE`)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._db = self._open(":memory:")
        self._warned = False

    @staticmethod
    def _open(where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where, timeout=0.25, check_same_thread=False, isolation_level=None)
        if where != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        return db

    def attach(self, folder: Path) -> None:
        """Keep the notes in ``folder``/reasoning.sqlite3 from now on (what the engine does at start)."""
        path = folder / FILE_NAME
        try:
            path.touch(mode=0o600, exist_ok=True)  # owner-only from the start (SQLite's -wal follows it)
            db = self._open(str(path))
        except (OSError, sqlite3.Error) as exc:
            log.warning("the reasoning notes cannot use %s (%s): they are kept in memory until Patchbay stops",
                        folder / FILE_NAME, exc)
            return
        with self._lock:
            old, self._db = self._db, db
        old.close()

    def detach(self) -> None:
        """Close the file; notes go on in memory (what the engine does when it stops)."""
        with self._lock:
            old, self._db = self._db, self._open(":memory:")
        old.close()

    def remember(self, backend: str, tool_ids: Iterable[str], reasoning: str, details: Iterable[Any] = ()) -> None:
        """Note the reasoning (and ``reasoning_details``) an answer with these tool calls came with."""
        ids = [t for t in tool_ids if t]
        merged = merge_details(details)
        if not ids or not (reasoning or merged):
            return
        raw = orjson.dumps(merged) if merged else None
        if raw is not None and len(raw) > MAX_DETAILS:
            raw = None
        rows = [(t, backend, reasoning[:MAX_REASONING], raw) for t in ids]
        self._run(lambda db: self._insert(db, rows))

    def _insert(self, db: sqlite3.Connection, rows: list[tuple[str, str, str, bytes | None]]) -> None:
        db.executemany("INSERT OR REPLACE INTO echo (tool_id, backend, reasoning, details) VALUES (?, ?, ?, ?)", rows)
        db.execute("DELETE FROM echo WHERE seq <= (SELECT MAX(seq) FROM echo) - ?", (self.keep,))

    def recall(self, tool_ids: Iterable[str]) -> dict[str, Recalled]:
        """What is known for these tool-call ids (ids nobody noted are left out)."""
        ids = list(dict.fromkeys(t for t in tool_ids if t))
        found: dict[str, Recalled] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]

            def query(db: sqlite3.Connection, part: list[str] = part) -> list[Any]:
                marks = ",".join("?" * len(part))
                return db.execute(f"SELECT tool_id, backend, reasoning, details FROM echo WHERE tool_id IN ({marks})",
                                  part).fetchall()

            for tool_id, backend, reasoning, details in self._run(query) or ():
                found[tool_id] = Recalled(backend, reasoning, orjson.loads(details) if details else None)
        return found

    def _run(self, work: Any) -> Any:
        with self._lock:
            try:
                return work(self._db)
            except (sqlite3.Error, orjson.JSONDecodeError) as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("the reasoning notes failed (%s); requests go on without them", exc)
                return None

    def clear(self) -> None:
        self._run(lambda db: db.execute("DELETE FROM echo"))


STORE = ReasoningStore()
