"""Hardware samplers: NVML against a fake of the pynvml module's documented calls, Apple Silicon
against recorded ``ioreg`` output, AMD against a fake sysfs tree, psutil for real."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from app.host.hardware import (
    AmdSysfsSampler,
    AppleSampler,
    HardwareSampler,
    NvmlSampler,
    SamplerThread,
    Unavailable,
    parse_ioreg,
)
from app.host.throughput import Throughput
from tests.fakes.nvml import FakeNvml

GiB = 1024**3


def test_nvml_reads_every_documented_field_and_absent_ones_stay_absent():
    nvml = FakeNvml([
        {"name": "NVIDIA GeForce RTX 4090", "util": 87, "mem": (20 * GiB, 24 * GiB), "temp": 71,
         "power_mw": 312_500, "procs": [(4242, 19 * GiB), (77, None)]},
        {"name": b"Tesla T4", "util": 3, "mem": (1 * GiB, 16 * GiB)},  # no temperature, power, processes
    ])
    s = NvmlSampler(nvml)
    a, b = s.sample()
    assert (a.name, a.vendor, a.util_pct, a.mem_used, a.mem_total) == (
        "NVIDIA GeForce RTX 4090", "nvidia", 87.0, 20 * GiB, 24 * GiB)
    assert (a.temp_c, a.power_w, a.processes) == (71.0, 312.5, ((4242, 19 * GiB), (77, None)))
    assert a.mem_free == 4 * GiB
    assert (b.name, b.util_pct, b.temp_c, b.power_w, b.processes) == ("Tesla T4", 3.0, None, None, ())
    hw = HardwareSampler([s])
    sample = hw.sample()
    assert sample.gpu_util == 87.0 and sample.vram_total == 40 * GiB and sample.vram_free == 19 * GiB
    hw.close()
    assert nvml.shut


def test_nvml_without_a_driver_means_no_gpu_not_an_error():
    with pytest.raises(Unavailable, match="Driver Not Loaded"):
        NvmlSampler(FakeNvml([], init_error="Driver Not Loaded"))
    with pytest.raises(Unavailable, match="no GPU"):
        NvmlSampler(FakeNvml([]))


IOREG_M1_MAX = '''+-o AGXAcceleratorG13X  <class AGXAcceleratorG13X, id 0x1000003f1, registered, matched, active, busy 0 (0 ms), retain 71>
    {
      "IOClass" = "AGXAcceleratorG13X"
      "CommandQueueCount" = 6
      "IOReportLegend" = ({"IOReportChannels"=((5,6,"Alloc system memory"),(7,8,"In use system memory"))})
      "PerformanceStatistics" = {"In use system memory (driver)"=0,"Alloc system memory"=52967440384,"Tiler Utilization %"=10,"recoveryCount"=0,"lastRecoveryTime"=0,"Renderer Utilization %"=9,"TiledSceneBytes"=1441792,"SplitSceneCount"=0,"Allocated PB Size"=3145728,"In use system memory"=2363801600,"Device Utilization %"=16}
      "model" = "Apple M1 Max"
      "gpu-core-count" = 32
    }
    
'''

IOREG_NO_DEVICE_UTIL = '''+-o AGXAcceleratorG14G  <class AGXAcceleratorG14G, id 0x100000211, registered, matched, active, busy 0 (0 ms), retain 40>
    {
      "PerformanceStatistics" = {"Tiler Utilization %"=22,"Renderer Utilization %"=41,"In use system memory"=734003200}
    }
'''


def test_apple_silicon_from_recorded_ioreg_output():
    (g,) = parse_ioreg(IOREG_M1_MAX, unified_total=64 * GiB)
    assert (g.name, g.vendor, g.util_pct, g.mem_used, g.mem_total, g.unified) == (
        "Apple M1 Max", "apple", 16.0, 2363801600, 64 * GiB, True)
    assert g.temp_c is None and g.power_w is None  # not readable without root: absent, not zero
    (h,) = parse_ioreg(IOREG_NO_DEVICE_UTIL, unified_total=16 * GiB)
    assert (h.name, h.util_pct, h.mem_used) == ("AGXAcceleratorG14G", 41.0, 734003200)
    assert parse_ioreg("") == []
    sampler = AppleSampler(read=lambda: IOREG_M1_MAX, unified_total=64 * GiB)
    assert sampler.sample()[0].util_pct == 16.0
    with pytest.raises(Unavailable):
        AppleSampler(read=lambda: "+-o IOAccelerator\n  {\n  }\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_amd_from_a_fake_sysfs_tree(tmp_path: Path):
    drm = tmp_path / "drm"
    d0 = drm / "card0" / "device"
    _write(d0 / "vendor", "0x1002")
    _write(d0 / "gpu_busy_percent", "64")
    _write(d0 / "mem_info_vram_used", str(9 * GiB))
    _write(d0 / "mem_info_vram_total", str(24 * GiB))
    _write(d0 / "product_name", "Radeon RX 7900 XTX")
    _write(d0 / "hwmon" / "hwmon3" / "temp1_input", "58000")
    _write(d0 / "hwmon" / "hwmon3" / "power1_average", "243000000")
    _write(drm / "card1" / "device" / "vendor", "0x8086")  # an Intel iGPU: not ours
    _write(drm / "card1" / "device" / "gpu_busy_percent", "5")
    d2 = drm / "card2" / "device"  # an AMD card with no hwmon and no VRAM files (an APU)
    _write(d2 / "vendor", "0x1002")
    _write(d2 / "gpu_busy_percent", "0")
    (drm / "card0-DP-1").mkdir()  # a connector, not a card
    s = AmdSysfsSampler(drm)
    a, b = s.sample()
    assert (a.name, a.vendor, a.util_pct, a.mem_used, a.mem_total, a.temp_c, a.power_w) == (
        "Radeon RX 7900 XTX", "amd", 64.0, 9 * GiB, 24 * GiB, 58.0, 243.0)
    assert (b.name, b.util_pct, b.mem_used, b.mem_total, b.temp_c) == ("AMD GPU (card2)", 0.0, None, None, None)
    with pytest.raises(Unavailable):
        AmdSysfsSampler(tmp_path / "nothing")


def test_this_machine_reports_what_it_has_with_real_psutil():
    hw = HardwareSampler()
    s = hw.sample()
    assert 0.0 <= s.host.cpu_pct <= 100.0
    assert 0 < s.host.ram_used < s.host.ram_total
    assert (s.host.swap_used is None) == (s.host.swap_total is None)
    if not hw.gpus:  # a machine without a GPU (CI): said plainly, never zeros
        assert hw.describe() == "no GPU found"
        assert s.gpus == () and s.gpu_util is None and s.vram_used is None and s.vram_free is None
    else:
        assert all(g.vendor in ("nvidia", "apple", "amd") for g in s.gpus)
    hw.close()


def test_sampler_thread_samples_off_the_calling_thread_and_keeps_history():
    seen: list[str] = []
    nvml = FakeNvml([{"name": "RTX", "util": 50, "mem": (GiB, 8 * GiB)}])
    got = threading.Event()

    def on_sample(s: Any) -> None:
        seen.append(threading.current_thread().name)
        if len(seen) >= 3:
            got.set()

    t = SamplerThread(HardwareSampler([NvmlSampler(nvml)]), on_sample, interval_s=0.01, history_s=0.05)
    t.start()
    assert got.wait(10)
    t.stop()
    assert set(seen) == {"patchbay-hardware"}
    assert t.history.maxlen == 5 and 3 <= len(t.history) <= 5
    assert t.latest is not None and t.latest.gpus[0].util_pct == 50.0
    assert t.cpu_s > 0 and t.samples >= 3 and nvml.shut


def test_throughput_spreads_tokens_over_the_seconds_they_streamed():
    tp = Throughput(span_s=60)
    t0 = 1_000_000.0
    tp.add(t0, 500.0, t0 + 4.5, 400)  # 400 tokens from t0+0.5 to t0+4.5: 100 tok/s
    xs, ys = tp.series(t0 + 10)
    by = dict(zip(xs, ys, strict=False))
    assert by[t0] == pytest.approx(50.0) and by[t0 + 1] == pytest.approx(100.0)
    assert by[t0 + 4] == pytest.approx(50.0) and by[t0 + 5] == 0.0
    assert sum(ys) == pytest.approx(400.0) and len(xs) == 60
    assert tp.rate(t0 + 10) == pytest.approx(40.0)
    tp.add(t0 + 5, None, t0 + 5, 30)  # not streamed: all at once
    assert dict(zip(*tp.series(t0 + 10), strict=False))[t0 + 5] == 30.0
    tp.add(t0 + 1000, 0.0, t0 + 1001, 10)  # old seconds are forgotten
    assert min(tp.bins) >= t0 + 1000 - 61
