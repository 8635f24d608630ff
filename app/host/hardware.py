"""What the machine is doing: GPU utilisation and memory, CPU, RAM and swap.

One small interface, :class:`GpuSampler` (``name``, ``sample()``, ``close()``), with one
implementation per platform:

- NVIDIA through NVML (the ``nvidia-ml-py`` package, imported only when asked for);
- Apple Silicon through ``ioreg -c IOAccelerator`` (no root needed): "Device Utilization %" and
  "In use system memory" of the unified memory;
- AMD on Linux through the amdgpu driver's sysfs files (``gpu_busy_percent``,
  ``mem_info_vram_used`` / ``_total``, hwmon temperature and power).

CPU, RAM and swap come from ``psutil`` everywhere. What a machine lacks is absent (``None``, or
no GPU entry at all), never a zero and never an error. :class:`SamplerThread` samples at a
steady interval on its own thread, keeps the last ten minutes, and counts its own CPU time.

No Qt here.
"""

from __future__ import annotations

import collections
import logging
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuSample:
    index: int
    name: str
    vendor: str  # nvidia | apple | amd
    util_pct: float | None
    mem_used: int | None  # bytes
    mem_total: int | None
    temp_c: float | None = None
    power_w: float | None = None
    processes: tuple[tuple[int, int | None], ...] = ()  # (pid, bytes of GPU memory, None where not told)
    unified: bool = False  # memory shared with the CPU (Apple Silicon)

    @property
    def mem_free(self) -> int | None:
        if self.mem_used is None or self.mem_total is None:
            return None
        return max(0, self.mem_total - self.mem_used)


@dataclass(frozen=True, slots=True)
class HostSample:
    cpu_pct: float  # all cores together, 0..100
    ram_used: int
    ram_total: int
    swap_used: int | None  # None: no swap configured
    swap_total: int | None


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # wall clock
    host: HostSample
    gpus: tuple[GpuSample, ...] = ()

    @property
    def gpu_util(self) -> float | None:
        vals = [g.util_pct for g in self.gpus if g.util_pct is not None]
        return max(vals) if vals else None

    @property
    def vram_used(self) -> int | None:
        vals = [g.mem_used for g in self.gpus if g.mem_used is not None]
        return sum(vals) if vals else None

    @property
    def vram_total(self) -> int | None:
        vals = [g.mem_total for g in self.gpus if g.mem_total is not None]
        return sum(vals) if vals else None

    @property
    def vram_free(self) -> int | None:
        vals = [g.mem_free for g in self.gpus if g.mem_free is not None]
        return sum(vals) if vals else None


class GpuSampler(Protocol):
    name: str

    def sample(self) -> list[GpuSample]: ...

    def close(self) -> None: ...


class Unavailable(Exception):
    """This kind of GPU is not readable on this machine (no driver, no library, no device)."""


# --------------------------------------------------------------------------- NVIDIA


class NvmlSampler:
    """NVIDIA GPUs through NVML. ``nvml`` is the ``pynvml`` module (``nvidia-ml-py``); a test may
    pass another object offering the same documented calls."""

    name = "NVIDIA (NVML)"

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            try:
                import pynvml as nvml  # type: ignore[no-redef]  # the module stands in for the parameter
            except ImportError as exc:
                raise Unavailable("nvidia-ml-py is not installed") from exc
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise Unavailable(f"NVML could not start: {exc}") from None
        try:
            count = nvml.nvmlDeviceGetCount()
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.names = [self._text(nvml.nvmlDeviceGetName(h)) for h in self.handles]
        except nvml.NVMLError as exc:
            self.close()
            raise Unavailable(f"NVML lists no usable GPU: {exc}") from None
        if not self.handles:
            self.close()
            raise Unavailable("NVML lists no GPU")

    @staticmethod
    def _text(v: Any) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nvml.NVMLError:  # not supported on this board, or no permission: absent
            return None

    def sample(self) -> list[GpuSample]:
        n = self.nvml
        out = []
        for i, h in enumerate(self.handles):
            util = self._read(n.nvmlDeviceGetUtilizationRates, h)
            mem = self._read(n.nvmlDeviceGetMemoryInfo, h)
            temp = self._read(n.nvmlDeviceGetTemperature, h, getattr(n, "NVML_TEMPERATURE_GPU", 0))
            power = self._read(n.nvmlDeviceGetPowerUsage, h)  # milliwatts
            procs = self._read(n.nvmlDeviceGetComputeRunningProcesses, h) or []
            out.append(GpuSample(
                i, self.names[i], "nvidia", None if util is None else float(util.gpu),
                None if mem is None else int(mem.used), None if mem is None else int(mem.total),
                None if temp is None else float(temp), None if power is None else power / 1000.0,
                tuple((int(p.pid), None if getattr(p, "usedGpuMemory", None) is None else int(p.usedGpuMemory))
                      for p in procs)))
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


# --------------------------------------------------------------------------- Apple Silicon

_IOREG_CMD = ("ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator")
_STAT_RE = re.compile(r'"([^"]+)"\s*=\s*(\d+)')


def parse_ioreg(text: str, unified_total: int | None = None) -> list[GpuSample]:
    """The accelerators in ``ioreg -r -d 1 -w 0 -c IOAccelerator`` output."""
    out: list[GpuSample] = []
    for block in re.split(r"(?m)^\s*\+-o ", text):
        m = re.search(r'"PerformanceStatistics"\s*=\s*\{([^}]*)\}', block)
        if not m:
            continue
        stats = {k: int(v) for k, v in _STAT_RE.findall(m.group(1))}
        util = stats.get("Device Utilization %")
        if util is None:
            parts = [stats[k] for k in ("Renderer Utilization %", "Tiler Utilization %") if k in stats]
            util = max(parts) if parts else None
        used = stats.get("In use system memory")
        model = re.search(r'"model"\s*=\s*"([^"]+)"', block)
        cls = re.match(r"(\S+)", block)
        name = model.group(1) if model else (cls.group(1) if cls else "Apple GPU")
        out.append(GpuSample(len(out), name, "apple", None if util is None or util > 100 else float(util), used,
                             unified_total if used is not None else None, unified=True))
    return out


class AppleSampler:
    """Apple Silicon's GPU from the IOAccelerator registry entry (readable without root)."""

    name = "Apple Silicon (ioreg)"

    def __init__(self, read: Callable[[], str] | None = None, unified_total: int | None = None) -> None:
        self.read = read or self._run_ioreg
        self.unified_total = unified_total if unified_total is not None else psutil.virtual_memory().total
        try:
            first = self.read()
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"ioreg could not run: {exc}") from None
        if not parse_ioreg(first):
            raise Unavailable("ioreg lists no accelerator with statistics")

    @staticmethod
    def _run_ioreg() -> str:
        return subprocess.run(_IOREG_CMD, capture_output=True, text=True, timeout=2.0, check=False).stdout

    def sample(self) -> list[GpuSample]:
        try:
            return parse_ioreg(self.read(), self.unified_total)
        except (OSError, subprocess.SubprocessError):
            return []

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- AMD (Linux sysfs)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class AmdSysfsSampler:
    """AMD GPUs through the amdgpu driver's files under ``/sys/class/drm`` (``root`` for tests)."""

    name = "AMD (amdgpu sysfs)"

    def __init__(self, root: Path | str = "/sys/class/drm") -> None:
        root = Path(root)
        self.cards: list[tuple[str, Path, Path | None]] = []
        try:
            entries = sorted((p for p in root.iterdir() if re.fullmatch(r"card\d+", p.name)),
                             key=lambda p: int(p.name[4:]))
        except OSError:
            entries = []
        for card in entries:
            dev = card / "device"
            try:
                vendor = (dev / "vendor").read_text().strip().lower()
            except OSError:
                continue
            if vendor != "0x1002" or not (dev / "gpu_busy_percent").exists():
                continue
            hw = next(iter(sorted((dev / "hwmon").glob("hwmon*"))), None) if (dev / "hwmon").is_dir() else None
            try:
                name = (dev / "product_name").read_text().strip() or f"AMD GPU ({card.name})"
            except OSError:
                name = f"AMD GPU ({card.name})"
            self.cards.append((name, dev, hw))
        if not self.cards:
            raise Unavailable("no amdgpu device in sysfs")

    def sample(self) -> list[GpuSample]:
        out = []
        for i, (name, dev, hw) in enumerate(self.cards):
            temp = _read_int(hw / "temp1_input") if hw else None  # millidegrees
            power = (_read_int(hw / "power1_average") or _read_int(hw / "power1_input")) if hw else None  # µW
            busy = _read_int(dev / "gpu_busy_percent")
            out.append(GpuSample(i, name, "amd", None if busy is None else float(busy),
                                 _read_int(dev / "mem_info_vram_used"), _read_int(dev / "mem_info_vram_total"),
                                 None if temp is None else temp / 1000.0, None if power is None else power / 1e6))
        return out

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- the machine


def detect_gpus() -> list[GpuSampler]:
    """Every GPU sampler that works on this machine; an empty list where there is no GPU."""
    found: list[GpuSampler] = []
    candidates: list[Callable[[], GpuSampler]] = [NvmlSampler]
    if sys.platform == "darwin" and platform.machine() == "arm64":
        candidates.append(AppleSampler)
    if sys.platform.startswith("linux"):
        candidates.append(AmdSysfsSampler)
    for make in candidates:
        try:
            found.append(make())
        except Unavailable as exc:
            log.debug("no GPU via %s: %s", getattr(make, "name", make), exc)
        except Exception as exc:  # noqa: BLE001 - a broken driver must not stop the app
            log.warning("GPU sampler %s failed to start: %r", getattr(make, "name", make), exc)
    return found


class HardwareSampler:
    """CPU / RAM / swap (psutil) plus whatever GPUs ``gpus`` can read."""

    def __init__(self, gpus: Sequence[GpuSampler] | None = None) -> None:
        self.gpus = list(detect_gpus() if gpus is None else gpus)
        psutil.cpu_percent(None)  # the first call only starts the measurement
        self._failed: set[str] = set()

    def describe(self) -> str:
        return ", ".join(g.name for g in self.gpus) if self.gpus else "no GPU found"

    def sample(self) -> Sample:
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        host = HostSample(psutil.cpu_percent(None), int(vm.total - vm.available), int(vm.total),
                          int(sw.used) if sw.total else None, int(sw.total) if sw.total else None)
        gpus: list[GpuSample] = []
        for g in self.gpus:
            try:
                gpus.extend(g.sample())
            except Exception as exc:  # noqa: BLE001 - absent this time, said once in the log
                if g.name not in self._failed:
                    self._failed.add(g.name)
                    log.warning("reading %s failed: %r", g.name, exc)
        return Sample(time.time(), host, tuple(gpus))

    def close(self) -> None:
        for g in self.gpus:
            g.close()


class SamplerThread:
    """Samples at a steady interval on its own thread; keeps ``history_s`` seconds of samples.

    ``on_sample`` runs on the sampling thread (the bridge hands it to Qt as a queued signal).
    ``cpu_s`` is the CPU time the thread itself has used."""

    def __init__(self, sampler: HardwareSampler, on_sample: Callable[[Sample], None] | None = None, *,
                 interval_s: float = 1.0, history_s: float = 600.0) -> None:
        self.sampler = sampler
        self.on_sample = on_sample
        self.interval_s = interval_s
        self.history: collections.deque[Sample] = collections.deque(maxlen=max(1, int(history_s / interval_s)))
        self.cpu_s = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def latest(self) -> Sample | None:
        return self.history[-1] if self.history else None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="patchbay-hardware", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.sampler.close()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            c0 = time.thread_time()
            try:
                s = self.sampler.sample()
            except Exception as exc:  # noqa: BLE001 - psutil failing is no reason to stop sampling
                log.warning("hardware sample failed: %r", exc)
                s = None
            if s is not None:
                self.history.append(s)
                self.samples += 1
                if self.on_sample is not None:
                    try:
                        self.on_sample(s)
                    except Exception:  # noqa: BLE001 - a consumer's bug must not stop sampling
                        log.exception("hardware sample consumer")
            self.cpu_s += time.thread_time() - c0
            due += self.interval_s
            now = time.monotonic()
            if due < now:  # fell behind (a suspended laptop): keep the rhythm from now on
                due = now + self.interval_s
            self._stop.wait(due - now)
