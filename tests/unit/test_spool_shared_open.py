"""The workers of `serve --workers N` open the one ledger spool at the same moment.

Setting WAL mode on a new file answers "database is locked" at once, without SQLite's busy wait, while another
process does the same: a worker failed to start in a full test run. Six processes opening a fresh spool together,
fifteen times, failed 3 of 90 opens before; opening now waits that out.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from app.ledger.spool import Spool, SpoolError


def _open(path: str, start: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    while time.time() < start:
        pass
    try:
        spool = Spool(Path(path))
        spool.open()
        spool.close()
        results.put("ok")
    except SpoolError as exc:
        results.put(str(exc))


def test_workers_opening_one_spool_together_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(15):
        path = tmp_path / f"r{round_}" / "ledger-spool.sqlite3"
        path.parent.mkdir()
        results = ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_open, args=(str(path), start, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        outcomes += [results.get(timeout=5) for _ in procs]
    assert [o for o in outcomes if o != "ok"] == []
