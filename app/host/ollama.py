"""The local Ollama server: its documented API (docs/protocol.md §5) and a monitor that polls it.

:class:`OllamaClient` speaks the API: version, installed models (``/api/tags``), loaded models
(``/api/ps``), details (``/api/show``), pulling with streamed progress (``/api/pull``), unloading
(``/api/generate`` with ``keep_alive: 0``) and removing (``DELETE /api/delete``). Every failure is
an :class:`OllamaError` whose text is a sentence for the user.

:class:`OllamaMonitor` polls: one :meth:`OllamaMonitor.poll` gives an :class:`OllamaState`
("Ollama is not running at …" while it is down) and sets how long to wait before the next one:
the normal interval while Ollama answers, doubling up to a cap while it does not, and back to
normal by itself the first time it answers again. The caller owns the clock (the GUI's timer,
a test), so nothing here sleeps.

No Qt here; the bridge runs these coroutines on the GUI thread's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx

from app.config import DEFAULT_OLLAMA_URL, is_loopback_url
from app.units import fmt_bytes

CLAUDE_CODE_MIN_CONTEXT = 65536  # tokens; Claude Code's system prompt and tools alone take ~20k
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:+]*$")


class OllamaError(Exception):
    """Something Ollama did or did not do. ``str()`` is the whole message for the user."""


# --------------------------------------------------------------------------- what the API returns


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """One entry of ``GET /api/tags``."""

    name: str
    size: int  # bytes on disk
    digest: str = ""
    family: str | None = None
    parameter_size: str | None = None  # e.g. "30.5B"
    quantization: str | None = None  # e.g. "Q4_K_M"
    modified_at: float | None = None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One entry of ``GET /api/ps``: a model in memory now."""

    name: str
    size: int  # bytes in memory (weights + context)
    size_vram: int  # of which in GPU memory
    expires_at: float | None = None  # when Ollama unloads it unless it is used again
    context_length: int | None = None  # the context it was loaded with (newer Ollama only)
    digest: str = ""

    @property
    def vram_share(self) -> float | None:
        """The part of the model in GPU memory, 0..1 (None when Ollama reported no size)."""
        return min(1.0, self.size_vram / self.size) if self.size > 0 else None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ``POST /api/show`` tells about one model."""

    name: str
    context_length: int | None  # the longest context the model was trained for
    capabilities: tuple[str, ...] = ()  # e.g. ("completion", "tools", "thinking")
    architecture: str | None = None


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One line of ``POST /api/pull``'s NDJSON stream."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def done(self) -> bool:
        return self.status == "success"


@dataclass(frozen=True, slots=True)
class ModelWarning:
    model: str
    kind: str  # "context" | "spill"
    text: str


@dataclass(frozen=True)
class OllamaState:
    url: str
    running: bool | None  # None: not asked yet
    version: str | None = None
    installed: tuple[InstalledModel, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()
    info: dict[str, ModelInfo] = field(default_factory=dict)  # by model name
    message: str | None = None  # why it is not running, as a sentence
    checked_at: float | None = None
    next_check_s: float | None = None

    def loaded_model(self, name: str) -> LoadedModel | None:
        return next((m for m in self.loaded if m.name == name), None)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.installed]


# --------------------------------------------------------------------------- helpers


def not_running(url: str) -> str:
    return (f"Ollama is not running at {url}. Start it (run “ollama serve”, or open the Ollama app); "
            "Patchbay notices by itself when it is back.")


def check_model_name(name: str) -> str:
    """The name stripped, or an OllamaError saying what a name looks like."""
    name = name.strip()
    if not name or not _NAME_RE.match(name) or len(name) > 300:
        raise OllamaError(f"“{name}” is not a model name. Names look like qwen3-coder:30b or "
                          "hf.co/owner/repo:Q4_K_M (see ollama.com/library).")
    return name


def _time(value: Any) -> float | None:
    """An RFC 3339 time as Ollama writes it (nanoseconds, zone offset) in seconds since the epoch."""
    if not isinstance(value, str) or not value:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value.strip())
    if not m:
        return None
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    zone = m.group(3) or "+00:00"
    if zone == "Z":
        zone = "+00:00"
    try:
        return datetime.fromisoformat(m.group(1) + zone).timestamp() + frac
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_tags(data: Any) -> tuple[InstalledModel, ...]:
    out = []
    for m in (data.get("models") if isinstance(data, dict) else None) or []:
        if not isinstance(m, dict) or not _str(m.get("name") or m.get("model")):
            continue
        raw = m.get("details")
        d = raw if isinstance(raw, dict) else {}
        out.append(InstalledModel(
            name=str(m.get("name") or m.get("model")), size=_int(m.get("size")) or 0, digest=str(m.get("digest") or ""),
            family=_str(d.get("family")), parameter_size=_str(d.get("parameter_size")),
            quantization=_str(d.get("quantization_level")), modified_at=_time(m.get("modified_at"))))
    return tuple(sorted(out, key=lambda x: x.name))


def parse_ps(data: Any) -> tuple[LoadedModel, ...]:
    out = []
    for m in (data.get("models") if isinstance(data, dict) else None) or []:
        if not isinstance(m, dict) or not _str(m.get("name") or m.get("model")):
            continue
        out.append(LoadedModel(
            name=str(m.get("name") or m.get("model")), size=_int(m.get("size")) or 0,
            size_vram=_int(m.get("size_vram")) or 0, expires_at=_time(m.get("expires_at")),
            context_length=_int(m.get("context_length")), digest=str(m.get("digest") or "")))
    return tuple(sorted(out, key=lambda x: x.name))


def parse_show(name: str, data: Any) -> ModelInfo:
    info = data.get("model_info") if isinstance(data, dict) else None
    info = info if isinstance(info, dict) else {}
    arch = _str(info.get("general.architecture"))
    ctx = _int(info.get(f"{arch}.context_length")) if arch else None
    if ctx is None:  # an architecture Ollama names differently: any "<x>.context_length"
        ctx = next((_int(v) for k, v in info.items() if k.endswith(".context_length") and _int(v)), None)
    caps = data.get("capabilities") if isinstance(data, dict) else None
    return ModelInfo(name, ctx, tuple(c for c in caps or () if isinstance(c, str)), arch)


def model_warnings(state: OllamaState, free_vram: int | None = None) -> list[ModelWarning]:
    """What a user must know before sending Claude Code to these models.

    A loaded model whose context is below what Claude Code needs, one that runs partly on the
    CPU, and (where the free GPU memory is known) an installed model larger than it."""
    out: list[ModelWarning] = []
    for m in state.loaded:
        if m.context_length is not None and m.context_length < CLAUDE_CODE_MIN_CONTEXT:
            out.append(ModelWarning(m.name, "context", (
                f"{m.name} is loaded with a {m.context_length:,}-token context; Claude Code needs at least 64k. "
                f"Set OLLAMA_CONTEXT_LENGTH={CLAUDE_CODE_MIN_CONTEXT} where Ollama runs and restart it, or set "
                "num_ctx in the model's options.")))
        share = m.vram_share
        if share is not None and share < 0.995:
            out.append(ModelWarning(m.name, "spill", (
                f"{m.name} does not fit in GPU memory: {1 - share:.0%} of it runs on the CPU, which is many "
                "times slower. Use a smaller model or quantisation, or a shorter context.")))
    if free_vram is not None:
        loaded = {m.name for m in state.loaded}
        for inst in state.installed:
            if inst.name not in loaded and inst.size > free_vram:
                out.append(ModelWarning(inst.name, "spill", (
                    f"{inst.name} ({fmt_bytes(inst.size)}) is larger than the free GPU memory "
                    f"({fmt_bytes(free_vram)}): loaded now, it would spill to the CPU and crawl.")))
    return out


class PullMeter:
    """Overall bytes and speed of a pull: Ollama reports each layer (digest) on its own.

    The speed counts only bytes that arrived during this pull: a layer Ollama resumes first
    reports what an earlier, interrupted pull already fetched."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.layers: dict[str, tuple[int, int]] = {}  # digest -> (completed, total)
        self._start: dict[str, int] = {}  # digest -> completed when first seen
        self.samples: list[tuple[float, int]] = []
        self.window_s = window_s
        self.status = ""

    def add(self, p: PullProgress, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.status = p.status
        if not (p.digest and p.total):
            return
        done = min(p.completed or 0, p.total)
        self._start.setdefault(p.digest, done)
        self.layers[p.digest] = (done, p.total)
        self.samples.append((now, self.fetched))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window_s:
            self.samples.pop(0)

    @property
    def completed(self) -> int:
        return sum(c for c, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.layers.values())

    @property
    def fetched(self) -> int:
        """Bytes downloaded by this pull."""
        return sum(c - self._start[d] for d, (c, _) in self.layers.items())

    @property
    def bytes_per_s(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


# --------------------------------------------------------------------------- the client


class OllamaClient:
    """Ollama's HTTP API at ``url``.

    One ``httpx.AsyncClient`` per event loop is kept (making one costs tens of milliseconds, an
    SSL context included, which a poll every few seconds on the GUI thread must not pay), and it
    keeps no idle connections: nothing is left open when its loop goes away."""

    def __init__(self, url: str = DEFAULT_OLLAMA_URL, *, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            # a loopback Ollama never goes through a proxy someone set for the internet
            self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s,
                                           trust_env=not is_loopback_url(self.url),
                                           limits=httpx.Limits(max_keepalive_connections=0))
            self._loop = loop
        yield self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _failed(self, exc: Exception) -> OllamaError:
        if isinstance(exc, httpx.ConnectError):
            return OllamaError(not_running(self.url))
        if isinstance(exc, httpx.TimeoutException):
            return OllamaError(f"Ollama at {self.url} did not answer within {self.timeout_s:g} s. It may be busy "
                               "loading a model; Patchbay tries again.")
        return OllamaError(f"Ollama at {self.url} could not be reached ({type(exc).__name__}: {exc}).")

    @staticmethod
    def _said(status: int, body: bytes, what: str) -> OllamaError:
        text = ""
        try:
            data = json.loads(body)
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                text = data["error"]
        except ValueError:
            text = body.decode("utf-8", "replace").strip()[:300]
        return OllamaError(f"Ollama could not {what}: {text or f'HTTP {status}'}" +
                           ("" if (text or ".").endswith((".", "!", "?")) else "."))

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, what: str,
                    body: dict[str, Any] | None = None) -> Any:
        try:
            resp = await client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._failed(exc) from None
        if resp.status_code >= 400:
            raise self._said(resp.status_code, resp.content, what)
        if not resp.content:  # DELETE /api/delete answers an empty 200
            return None
        try:
            return resp.json()
        except ValueError:
            raise OllamaError(f"{self.url} answered {path} with something that is not Ollama's API. Check "
                              "[ollama] url in the config.") from None

    async def version(self) -> str:
        async with self._client() as c:
            data = await self._call(c, "GET", "/api/version", "say its version")
        return str(data.get("version", "")) if isinstance(data, dict) else ""

    async def installed(self) -> tuple[InstalledModel, ...]:
        async with self._client() as c:
            return parse_tags(await self._call(c, "GET", "/api/tags", "list its models"))

    async def loaded(self) -> tuple[LoadedModel, ...]:
        async with self._client() as c:
            return parse_ps(await self._call(c, "GET", "/api/ps", "list the loaded models"))

    async def show(self, model: str) -> ModelInfo:
        async with self._client() as c:
            return parse_show(model, await self._call(c, "POST", "/api/show", f"describe {model}", {"model": model}))

    async def unload(self, model: str) -> None:
        """Free the model's memory now (``keep_alive: 0``)."""
        async with self._client() as c:
            await self._call(c, "POST", "/api/generate", f"unload {model}", {"model": model, "keep_alive": 0})

    async def remove(self, model: str) -> None:
        """Delete the model from disk."""
        async with self._client() as c:
            await self._call(c, "DELETE", "/api/delete", f"remove {model}", {"model": model})

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Download ``model``, yielding each progress line; the last one has ``done``.

        Cancel the task iterating it to stop the download (the connection closes, and Ollama
        stops). A pull that fails, before or halfway, raises OllamaError with Ollama's words."""
        model = check_model_name(model)
        # a layer may take a while to verify: allow long pauses between progress lines
        timeout = httpx.Timeout(self.timeout_s, read=120.0)
        async with self._client() as c:
            try:
                async with c.stream("POST", "/api/pull", json={"model": model, "stream": True},
                                    timeout=timeout) as resp:
                    if resp.status_code >= 400:
                        raise self._said(resp.status_code, await resp.aread(), f"pull {model}")
                    finished = False
                    failure: OllamaError | None = None
                    # read to the end even after an error line (Ollama ends the stream right after it):
                    # leaving httpx's line iterator suspended would leave it to the garbage collector
                    async for line in resp.aiter_lines():
                        if failure is not None or not line.strip():
                            continue
                        try:
                            data = json.loads(line)
                        except ValueError:
                            failure = OllamaError(f"Ollama sent a progress line that is not JSON while pulling "
                                                  f"{model}: {line[:200]}")
                            continue
                        if not isinstance(data, dict):
                            continue
                        if isinstance(data.get("error"), str):
                            failure = OllamaError(f"Pulling {model} failed: {data['error']}"
                                                  + ("" if data["error"].endswith(".") else "."))
                            continue
                        p = PullProgress(str(data.get("status", "")), _str(data.get("digest")),
                                         _int(data.get("total")), _int(data.get("completed")))
                        finished = finished or p.done
                        yield p
                    if failure is not None:
                        raise failure
                    if not finished:
                        raise OllamaError(f"Ollama stopped sending progress before {model} was complete. "
                                          "Pull it again; finished layers are kept.")
            except httpx.HTTPError as exc:
                if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
                    raise OllamaError(f"The connection to Ollama broke while pulling {model}. Pull it again; "
                                      "finished layers are kept.") from None
                raise self._failed(exc) from None


# --------------------------------------------------------------------------- the monitor


class OllamaMonitor:
    """Polls Ollama; the state says what is true now and when to look again."""

    def __init__(self, url: str = DEFAULT_OLLAMA_URL, *, interval_s: float = 3.0, max_backoff_s: float = 60.0,
                 timeout_s: float = 3.0) -> None:
        self.client = OllamaClient(url, timeout_s=timeout_s)
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.failures = 0
        self.state = OllamaState(self.client.url, None)
        self._info: dict[tuple[str, str], ModelInfo] = {}  # (name, digest) -> details; a digest never changes

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def next_delay_s(self) -> float:
        """The normal interval while Ollama answers; doubling from it up to the cap while it does not."""
        if self.failures == 0:
            return self.interval_s
        return min(self.max_backoff_s, self.interval_s * 2 ** (self.failures - 1))

    async def poll(self) -> OllamaState:
        c = self.client
        try:
            version, installed, loaded = await asyncio.gather(c.version(), c.installed(), c.loaded())
            info = await self._details(installed, loaded)
        except OllamaError as exc:
            self.failures += 1
            self.state = OllamaState(self.url, False, message=str(exc), checked_at=time.time(),
                                     next_check_s=self.next_delay_s)
            return self.state
        self.failures = 0
        self.state = OllamaState(self.url, True, version, installed, loaded, info, None, time.time(), self.next_delay_s)
        return self.state

    async def _details(self, installed: Iterable[InstalledModel], loaded: Iterable[LoadedModel]) -> dict[str, ModelInfo]:
        wanted = {(m.name, m.digest) for m in installed} | {(m.name, m.digest) for m in loaded}
        missing = [k for k in wanted if k not in self._info]

        async def one(key: tuple[str, str]) -> None:
            try:
                self._info[key] = await self.client.show(key[0])
            except OllamaError:
                pass  # shown without details this time; asked again on the next poll

        if missing:
            await asyncio.gather(*(one(k) for k in missing))
        return {name: self._info.get((name, digest)) or ModelInfo(name, None) for name, digest in wanted}

    def forget(self, model: str) -> None:
        """Drop what is known about ``model`` (after removing it), so the next poll starts clean."""
        self._info = {k: v for k, v in self._info.items() if k[0] != model}
        self.state = replace(self.state, installed=tuple(m for m in self.state.installed if m.name != model),
                             loaded=tuple(m for m in self.state.loaded if m.name != model))
