"""What the dashboard calls each session (its folder, its first prompt), kept across restarts.

The ledger records requests, not the text a session's name comes from, so after a restart the
sessions it brings back would be named by their ids. This small file in the data folder keeps the
folder and first prompt of the most recent sessions; the live part writes it now and then and
reads it when it fills the dashboard from the ledger.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from app.config.disk import atomic_write

log = logging.getLogger("app.bridge")
KEEP = 1000  # sessions remembered (the most recently seen)
FILE_NAME = "session-names.json"


class SessionNames:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._names: dict[str, tuple[str | None, str | None, float]] = {}  # id -> cwd, prompt, last seen
        self._dirty = False
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            for sid, v in raw.items():
                if isinstance(v, dict):
                    self._names[str(sid)] = (v.get("cwd"), v.get("prompt"), float(v.get("last_seen", 0.0)))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # a damaged file costs the names only
            log.warning("session names in %s not read: %s", path, exc)

    def get(self, session_id: str) -> tuple[str | None, str | None]:
        cwd, prompt, _ = self._names.get(session_id, (None, None, 0.0))
        return cwd, prompt

    def items(self) -> list[tuple[str, str | None, str | None]]:
        return [(sid, cwd, prompt) for sid, (cwd, prompt, _) in self._names.items()]

    def note(self, session_id: str, cwd: str | None, prompt: str | None, last_seen: float) -> None:
        if not session_id or not (cwd or prompt):
            return
        old = self._names.get(session_id)
        new = (cwd or (old[0] if old else None), (old[1] if old and old[1] else prompt), last_seen)
        if old is None or old[:2] != new[:2]:
            self._dirty = True
        self._names[session_id] = new

    def save(self) -> None:
        if not self._dirty:
            return
        newest = sorted(self._names.items(), key=lambda kv: -kv[1][2])[:KEEP]
        self._names = dict(newest)
        data = {sid: {"cwd": c, "prompt": p, "last_seen": t} for sid, (c, p, t) in newest}
        try:
            atomic_write(self.path, json.dumps(data, ensure_ascii=False, indent=0))
            self._dirty = False
        except OSError as exc:
            log.warning("session names not saved to %s: %s", self.path, exc)
