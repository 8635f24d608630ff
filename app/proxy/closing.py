"""Closing things in the background (a retired backend's connections, an old identity chain)
without losing the task: the event loop keeps only a weak reference to a task, so one nobody
holds may be collected before it has run, and its failure would go unheard. ``close_soon`` keeps
each task until it ends and logs a close that failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("patchbay.gateway")

_CLOSING: set[asyncio.Task[Any]] = set()  # closes under way; each removes itself when done


def close_soon(closing: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``closing`` (an ``aclose()``) on the running loop, held until it ends."""
    task = asyncio.ensure_future(closing)
    _CLOSING.add(task)
    task.add_done_callback(_closed)
    return task


def pending() -> int:
    """How many closes are under way (for tests)."""
    return len(_CLOSING)


def _closed(task: asyncio.Task[Any]) -> None:
    _CLOSING.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("closing in the background failed: %s: %s", type(exc).__name__, exc)
