"""What the wheel rule's application-wide event filter (app/views/wheel.py) costs every other event.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/wheel_bench.py [--events 200000]

Posts N plain events to a QObject and delivers them with processEvents, with and without the
filter installed (median of 5 rounds each); the difference per event is the filter's price.
For scale: the Dashboard under a token flood handles a few thousand events a second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from PySide6.QtCore import QCoreApplication, QEvent, QObject
    from PySide6.QtWidgets import QApplication

    from app.views.wheel import WheelGuard

    app = QApplication([])
    target = QObject()

    def deliver() -> float:
        for _ in range(args.events):
            QCoreApplication.postEvent(target, QEvent(QEvent.Type.User))
        t0 = time.perf_counter()
        app.processEvents()
        app.sendPostedEvents()
        return time.perf_counter() - t0

    rows = []
    guard = WheelGuard(app)
    for label, install in (("without the filter", False), ("with the filter", True)):
        if install:
            app.installEventFilter(guard)
        times = [deliver() for _ in range(args.rounds)]
        rows.append((label, statistics.median(times)))
    base, with_filter = rows[0][1], rows[1][1]
    print(f"{'':24} {'total s':>9} {'µs/event':>9}")
    for label, t in rows:
        print(f"{label:24} {t:9.3f} {t / args.events * 1e6:9.2f}")
    print(f"{'filter adds':24} {with_filter - base:9.3f} {(with_filter - base) / args.events * 1e6:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
