"""Hardware sampler benchmark: what sampling costs, per sample and as a share of one core.

Run by hand:  .venv/bin/python bench/hardware_bench.py [--calls 2000] [--seconds 20]

1. CPU time of one ``sample()`` for each sampler: this machine as detected (psutil plus whatever
   GPU it has), and our side of each GPU path fed with recorded or fake input (NVML through the
   fake pynvml of tests/fakes/nvml.py, AMD through a fake sysfs tree, Apple's ioreg parser on
   recorded text). The driver's own cost inside NVML, and running the ``ioreg`` process on a
   Mac, are not in these rows: they need the hardware.
2. The real thing: a :class:`SamplerThread` at the app's interval (1 s) for ``--seconds``, its
   own CPU time (``time.thread_time``) over the wall time, as % of one core. Target: < 1 %.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.host.hardware import (  # noqa: E402
    AmdSysfsSampler,
    HardwareSampler,
    NvmlSampler,
    SamplerThread,
    parse_ioreg,
)
from tests.fakes.nvml import FakeNvml  # noqa: E402

IOREG = ('+-o AGXAcceleratorG13X  <class AGXAcceleratorG13X, id 0x1000003f1, registered, matched, active, busy 0 '
         '(0 ms), retain 71>\n    {\n      "IOClass" = "AGXAcceleratorG13X"\n      "PerformanceStatistics" = '
         '{"In use system memory (driver)"=0,"Alloc system memory"=52967440384,"Tiler Utilization %"=10,'
         '"recoveryCount"=0,"Renderer Utilization %"=9,"In use system memory"=2363801600,'
         '"Device Utilization %"=16}\n      "model" = "Apple M1 Max"\n    }\n')


def per_call_ms(fn: Callable[[], object], calls: int) -> float:
    for _ in range(min(50, calls)):
        fn()
    c0 = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - c0) * 1000 / calls


def fake_sysfs(root: Path) -> Path:
    dev = root / "card0" / "device"
    (dev / "hwmon" / "hwmon0").mkdir(parents=True)
    for name, value in (("vendor", "0x1002"), ("gpu_busy_percent", "64"), ("mem_info_vram_used", "9663676416"),
                        ("mem_info_vram_total", "25769803776"), ("product_name", "Radeon RX 7900 XTX"),
                        ("hwmon/hwmon0/temp1_input", "58000"), ("hwmon/hwmon0/power1_average", "243000000")):
        (dev / name).write_text(value + "\n")
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="sample() calls per row (default 2000)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the 1 s sampler thread runs (default 20)")
    args = ap.parse_args()

    rows: list[tuple[str, str, float]] = []
    real = HardwareSampler()
    rows.append(("this machine", f"psutil + {real.describe()}", per_call_ms(real.sample, args.calls)))
    host_only = HardwareSampler([])
    rows.append(("CPU/RAM/swap only", "psutil", per_call_ms(host_only.sample, args.calls)))
    nvml = NvmlSampler(FakeNvml([{"name": "RTX 4090", "util": 87, "mem": (20 << 30, 24 << 30), "temp": 71,
                                  "power_mw": 312_500, "procs": [(4242, 19 << 30)]}]))
    rows.append(("NVIDIA, our side", "NVML calls via fake pynvml, 1 GPU", per_call_ms(nvml.sample, args.calls)))
    with tempfile.TemporaryDirectory() as tmp:
        amd = AmdSysfsSampler(fake_sysfs(Path(tmp)))
        rows.append(("AMD", "sysfs files (fake tree on tmpfs/disk), 1 GPU", per_call_ms(amd.sample, args.calls)))
    rows.append(("Apple, parse only", "recorded ioreg text", per_call_ms(lambda: parse_ioreg(IOREG, 1 << 36),
                                                                         args.calls)))

    print(f"\nOne sample() ({args.calls} calls each, process CPU time)\n")
    print(f"| {'sampler':<18} | {'reads':<44} | {'CPU ms/sample':>13} | {'% core at 1 s':>13} |")
    print(f"|{'-' * 20}|{'-' * 46}|{'-' * 15}|{'-' * 15}|")
    for name, what, ms in rows:
        print(f"| {name:<18} | {what:<44} | {ms:>13.3f} | {ms / 10:>12.3f}% |")

    t = SamplerThread(HardwareSampler(), interval_s=1.0)
    w0 = time.monotonic()
    t.start()
    time.sleep(args.seconds)
    t.stop()
    wall = time.monotonic() - w0
    share = t.cpu_s / wall * 100
    print(f"\nSamplerThread at 1 s on this machine for {wall:.1f} s: {t.samples} samples, "
          f"{t.cpu_s * 1000:.1f} ms CPU → {share:.3f}% of one core (target < 1%: {'ok' if share < 1 else 'MISS'})\n")
    real.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
