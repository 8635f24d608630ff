"""The latest usage windows of each Claude subscription the gateway served, kept in a small file.

The gateway publishes a :class:`~app.events.SubscriptionLimits` whenever an answer carries
Anthropic's ``anthropic-ratelimit-unified-*`` headers (app/proxy/subscription.py). This sink keeps
the newest one per backend and writes them to ``subscription-limits.json`` beside the ledger
(``{"backends": {id: {field: value}}}``, replaced atomically), so ``patchbay usage`` and the status
line, which never talk to the gateway, show them too. No credential is in it: only numbers, states
and the backend's id.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from app.claude.subscription_windows import LIMITS_NAME
from app.events import SubscriptionLimits
from app.paths import make_private_dir

log = logging.getLogger("patchbay.subscription")


def limits_file(data_dir: Path) -> Path:
    return Path(data_dir) / LIMITS_NAME


def read_states(path: Path) -> dict[str, dict[str, Any]]:
    """Each backend's latest windows from the file ({} when there is none or it cannot be read)."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    backends = data.get("backends") if isinstance(data, dict) else None
    if not isinstance(backends, dict):
        return {}
    return {k: v for k, v in backends.items() if isinstance(k, str) and isinstance(v, dict)}


class SubscriptionState:
    """EventHub sink: the newest windows per backend, in memory and in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.states: dict[str, dict[str, Any]] = read_states(self.path)

    def sink(self, event: object) -> None:
        if type(event) is not SubscriptionLimits:
            return
        with self._lock:
            old = self.states.get(event.backend)
            if old is not None and float(old.get("observed_at") or 0.0) > event.observed_at:
                return  # an older answer that finished later
            self.states[event.backend] = dataclasses.asdict(event)
            data = orjson.dumps({"backends": self.states})
        try:
            self._write(data)
        except OSError as exc:  # the windows are a display: never a reason to fail a request
            log.debug("the subscription windows could not be written to %s: %s", self.path, exc)

    def _write(self, data: bytes) -> None:
        make_private_dir(self.path.parent)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)

    def snapshot(self) -> Mapping[str, dict[str, Any]]:
        with self._lock:
            return dict(self.states)
