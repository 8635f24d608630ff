"""Plain data the Monitor page reads: the GPU, the machine and the local Ollama (no Qt, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuView:
    name: str
    vendor: str  # nvidia | apple | amd
    util_pct: float | None  # None: not readable on this machine (never shown as 0)
    mem_used: int | None
    mem_total: int | None
    temp_c: float | None = None
    power_w: float | None = None
    unified: bool = False  # memory shared with the CPU (Apple Silicon)


@dataclass(frozen=True, slots=True)
class HardwareView:
    """One hardware sample: CPU/RAM/swap always, GPUs where the machine has readable ones."""

    t: float
    cpu_pct: float
    ram_used: int
    ram_total: int
    swap_used: int | None
    swap_total: int | None
    gpus: tuple[GpuView, ...] = ()
    gpu_util: float | None = None
    vram_used: int | None = None
    vram_total: int | None = None


@dataclass(frozen=True, slots=True)
class LocalModelView:
    """A model installed in (or loaded by) the local Ollama."""

    name: str
    size: int  # on disk
    family: str | None
    parameter_size: str | None
    quantization: str | None
    context_max: int | None  # what the model was trained for
    capabilities: tuple[str, ...]
    installed: bool = True
    loaded: bool = False
    memory: int | None = None  # in memory now (loaded only)
    vram_share: float | None = None  # 0..1 of that memory on the GPU
    context_loaded: int | None = None  # the context it is loaded with
    expires_at: float | None = None
    last_used: float | None = None  # the last request a local backend served with it
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OllamaView:
    url: str
    running: bool | None  # None: not asked yet
    version: str | None = None
    message: str | None = None  # why it is not running
    models: tuple[LocalModelView, ...] = ()
    warnings: tuple[str, ...] = ()
    next_check_s: float | None = None


@dataclass(frozen=True, slots=True)
class PullView:
    model: str
    state: str  # running | done | failed | cancelled
    status: str = ""  # Ollama's words for the current step ("pulling 4f1e…", "verifying sha256 digest")
    completed: int = 0
    total: int = 0
    bytes_per_s: float | None = None
    error: str | None = None
