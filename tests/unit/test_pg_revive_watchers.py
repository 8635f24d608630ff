"""A database probe thread ends when nobody is left to tell: a store that is gone stops its outage watch.

Before, a probe of a database that never came back ran for the life of the process (one connection attempt every
0.25 s), and its allocations ran Python's collector on that thread.
"""

from __future__ import annotations

import gc
import socket
import time

from app.ledger.pg_revive import Reviver


class _Store:
    def __init__(self) -> None:
        self.revived = 0

    def on_revived(self) -> None:
        self.revived += 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


def test_the_probe_stops_once_every_watcher_is_gone() -> None:
    r = Reviver(f"postgresql://nobody@127.0.0.1:{_closed_port()}/none", {}, probe_s=0.05)
    store = _Store()
    r.watch(store.on_revived)
    r.down()
    time.sleep(0.3)
    assert r._thread is not None and r._thread.is_alive()  # still someone to tell: it keeps probing
    thread = r._thread
    del store
    gc.collect()
    thread.join(5.0)
    assert not thread.is_alive()
    assert r._thread is None
