"""Notice at once when the team's PostgreSQL answers again after an outage.

Left to themselves, the parts that use the database come back slowly: ``psycopg_pool`` reconnects
with an exponential backoff (1, 2, 4, 8 … s), admission asks again at most every 2 s and the
ledger's spool backs off to 5 s, so budgets and ``/ready`` came back up to 18 s after the database
did. So a part that finds the database unreachable calls ``Reviver.down()``; while it is down, one
daemon thread per database URL tries a plain connection (``connect_timeout`` 1 s, then
``SELECT 1``) at most every ``PROBE_S``; the first that succeeds calls every watcher's callback
(on that thread, never on the event loop): pools are replaced by fresh ones that connect now,
back-offs end, and the next request goes through. A database that is down costs one connection
attempt per ``PROBE_S`` per URL, however many parts watch it; one that answers costs nothing.

Watchers are held weakly (``WeakMethod``): a store that is gone stops being called.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("patchbay.ledger")

PROBE_S = 0.25  # while down, a connection attempt at most this often
PROBE_CONNECT_TIMEOUT_S = 1  # a host that drops packets holds the probe thread this long, nobody else
OLD_POOL_GRACE_S = 5.0  # a replaced pool is closed this much later: a request already waiting in it is not cut


class Reviver:
    """The outage watch of one PostgreSQL URL (``watcher(url, kwargs)`` shares one per URL)."""

    def __init__(self, url: str, kwargs: dict[str, Any], probe_s: float = PROBE_S) -> None:
        self.url = url
        self._kwargs = {**kwargs, "connect_timeout": PROBE_CONNECT_TIMEOUT_S, "autocommit": True}
        self.probe_s = probe_s
        self._lock = threading.Lock()
        self._watchers: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._thread: threading.Thread | None = None
        self.is_down = False
        self.revived_at: float | None = None  # time.monotonic() of the last probe that found it back

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (a bound method) each time the database answers again after ``down()``."""
        with self._lock:
            self._watchers = [w for w in self._watchers if w() is not None]
            self._watchers.append(weakref.WeakMethod(callback))

    def down(self) -> None:
        """A part found the database unreachable: probe it until it answers. Cheap, never blocks."""
        with self._lock:
            self.is_down = True
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._probe, name="patchbay-pg-revive", daemon=True)
            self._thread.start()

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, **self._kwargs) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    def _probe(self) -> None:
        while True:
            started = time.monotonic()
            if self._answers():
                break
            with self._lock:
                if not any(w() is not None for w in self._watchers):  # every watcher is gone: nobody to tell
                    self._thread = None
                    return
            time.sleep(max(0.0, self.probe_s - (time.monotonic() - started)))
        with self._lock:
            self.is_down = False
            self._thread = None
            self.revived_at = time.monotonic()
            callbacks = [cb for w in self._watchers if (cb := w()) is not None]
        log.info("the PostgreSQL ledger answers again")
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("a part of Patchbay could not take up the PostgreSQL ledger again")


_REVIVERS: dict[str, Reviver] = {}
_REGISTRY = threading.Lock()


def watcher(url: str, kwargs: dict[str, Any]) -> Reviver:
    """The one ``Reviver`` of ``url`` in this process (``kwargs``: the connection's, password included)."""
    with _REGISTRY:
        found = _REVIVERS.get(url)
        if found is None:
            found = _REVIVERS[url] = Reviver(url, kwargs)
        return found


def close_later(pool: Any, after_s: float = OLD_POOL_GRACE_S) -> None:
    """Close a replaced ``ConnectionPool`` once requests already waiting in it are done with it."""
    timer = threading.Timer(after_s, lambda: pool.close(timeout=1.0))
    timer.daemon = True
    timer.start()


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (not that it refused a statement)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    return isinstance(exc, (psycopg.OperationalError, PoolTimeout))
