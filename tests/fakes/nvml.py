"""A fake of the ``pynvml`` module (nvidia-ml-py): the documented calls the NVML sampler makes,
answering for scripted devices. A field scripted as missing raises ``NVMLError`` the way NVML
does for "Not Supported", so the sampler's handling of absent values is exercised.

    nvml = FakeNvml([{"name": "RTX 4090", "util": 87, "mem": (used, total), "temp": 71,
                      "power_mw": 312_500, "procs": [(pid, bytes)]}])
    NvmlSampler(nvml)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class FakeNvml:
    """The documented pynvml calls the sampler uses, answering for scripted devices."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, devices: list[dict[str, Any]], init_error: str | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.calls: list[str] = []
        self.shut = False

    def _get(self, h: int, key: str) -> Any:
        v = self.devices[h].get(key)
        if v is None:
            raise self.NVMLError("Not Supported")
        return v

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> Any:
        return self.devices[h]["name"]

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self._get(h, "util"), memory=7)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        used, total = self._get(h, "mem")
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._get(h, "temp")

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._get(h, "power_mw")

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in self._get(h, "procs")]
