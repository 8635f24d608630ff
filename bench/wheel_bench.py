"""What the wheel rule (app/views/wheel.py) costs the events that are not wheel events.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/wheel_bench.py [--events 200000]

Posts N plain events to a label (an unguarded widget) and to a combo box (a guarded one) and delivers
them with processEvents, before and after install_wheel_guard (median of 5 rounds each); the
difference per event is the rule's price. The rule lives on the guarded widgets alone (a style proxy
puts a filter on each as it is polished), so only their own events pay; an application-wide filter
cost every event about 4 µs. For scale: the Dashboard under a token flood handles a few thousand
events a second.
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
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication, QComboBox, QLabel, QWidget

    from app.views.wheel import install_wheel_guard

    app = QApplication([])
    label, combo = QLabel("x"), QComboBox()
    for w in (label, combo):
        w.show()
    app.processEvents()

    def deliver(target: QWidget) -> float:
        for _ in range(args.events):
            QCoreApplication.postEvent(target, QEvent(QEvent.Type.User))
        t0 = time.perf_counter()
        app.processEvents()
        app.sendPostedEvents()
        return time.perf_counter() - t0

    def measure() -> dict[str, float]:
        return {name: statistics.median(deliver(w) for _ in range(args.rounds))
                for name, w in (("label", label), ("combo box", combo))}

    before = measure()
    install_wheel_guard(app)
    after = measure()
    print(f"{'µs per event':24} {'without':>9} {'with':>9} {'adds':>9}")
    for name in before:
        b, a = before[name] / args.events * 1e6, after[name] / args.events * 1e6
        print(f"{'to a ' + name:24} {b:9.2f} {a:9.2f} {a - b:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
