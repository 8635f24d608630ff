"""Monitor page benchmark: CPU of the whole app process with the Monitor page shown vs another page.

Run by hand under a virtual X server (the window must really paint):

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python bench/monitor_bench.py [--seconds 8]

The app runs with a throwaway PATCHBAY_HOME, the simulated GPU of scripts/screenshots.py (the tests'
fake pynvml) and ten minutes of back-filled samples, so all five plots are full. Each row is the
process's user + system CPU over ``--seconds`` as % of one core, after 2 s on that page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    os.environ["PATCHBAY_HOME"] = tempfile.mkdtemp(prefix="patchbay-bench-")
    import keyring

    from tests.fakes.keyring_backend import MemoryKeyring

    keyring.set_keyring(MemoryKeyring())
    import psutil
    import qasync
    import screenshots as shots

    from app.gui import App, make_application

    qapp = make_application([sys.argv[0]])
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    rows: list[tuple[str, float]] = []

    async def run() -> None:
        gpu = shots.ScriptedGpu()
        app = App(None, use_system_tray=False, hardware_factory=gpu.sampler)
        app.start()
        shots.backfill_monitor(app.bridge, gpu)
        app.window.resize(1320, 860)
        app.show_window()
        proc = psutil.Process()
        for page in ("dashboard", "monitor", "dashboard", "monitor"):
            app.window.show_page(page)
            await asyncio.sleep(2)
            c0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
            await asyncio.sleep(args.seconds)
            rows.append((page, 100 * (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)))
        app.quit()

    with loop:
        loop.run_until_complete(run())
    print(f"\n| page shown | process CPU, % of one core ({args.seconds:g} s) |\n|---|---|")
    for page, pct in rows:
        print(f"| {page} | {pct:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
