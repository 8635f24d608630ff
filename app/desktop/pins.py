"""Session pins that survive a restart: ``session-pins.json`` in the data folder.

A pin sends one Claude Code session to a chosen backend (and model) whatever the active backend is.
Lost on restart, the pinned session silently moved to the active backend, often a dearer model; so
the engine writes the pins here on every change and puts them back when it starts (the desktop app
and ``patchbay serve`` alike, so the background gateway of Quit keeps them too). Pins unused for a
week, and pins to a backend no longer configured, are dropped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

FILE_NAME = "session-pins.json"
KEEP_S = 7 * 24 * 3600


def load(path: Path, backends: Iterable[str], now: float | None = None) -> dict[str, tuple[str, str | None]]:
    """session id -> (backend, model) for pins still worth keeping."""
    now = time.time() if now is None else now
    known = set(backends)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for sid, p in (data.items() if isinstance(data, dict) else ()):
        if not isinstance(p, dict) or p.get("backend") not in known:
            continue
        at, model = p.get("at"), p.get("model")
        if isinstance(at, (int, float)) and now - at <= KEEP_S:
            out[str(sid)] = (str(p["backend"]), model if isinstance(model, str) else None)
    return out


def save(path: Path, pins: dict[str, tuple[str, str | None]], now: float | None = None) -> None:
    now = time.time() if now is None else now
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    data = {}
    for sid, (backend, model) in pins.items():
        prev = old.get(sid) if isinstance(old, dict) else None
        same = isinstance(prev, dict) and (prev.get("backend"), prev.get("model")) == (backend, model)
        data[sid] = {"backend": backend, "model": model, "at": prev["at"] if same and prev else now}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only disk: the pins still hold until the next restart
