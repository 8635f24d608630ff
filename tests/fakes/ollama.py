"""A fake Ollama server on loopback, built from Ollama's documented API (docs/api.md):

- ``GET /api/version`` → ``{"version"}``
- ``GET /api/tags`` → installed models ``{name, model, modified_at, size, digest, details{…}}``
- ``GET /api/ps`` → loaded models with ``size``, ``size_vram``, ``expires_at``, ``context_length``
- ``POST /api/show {"model"}`` → ``model_info`` (``<arch>.context_length``), ``capabilities``
- ``POST /api/pull {"model"}`` → NDJSON progress ``{"status","digest","total","completed"}`` …
  ``{"status":"success"}``; an error before any progress is HTTP 500 ``{"error"}``, one after it
  is an ``{"error"}`` line in the stream (Ollama's ``streamResponse``)
- ``POST /api/generate {"model", "keep_alive": 0}`` → unloads (``done_reason: "unload"``); an
  empty prompt loads the model
- ``DELETE /api/delete {"model"}`` → 200, or 404 ``{"error": "model 'x' not found"}``

Anything else falls through to :class:`FakeUpstream`'s Anthropic-format answers, so the same
server also stands in for Ollama's own ``/v1/messages``.

    with FakeOllama() as ol:                       # ol.url == "http://127.0.0.1:PORT"
        ol.add_model("qwen3-coder:30b", size=18_600_000_000, loaded=True, context_length=4096)
        ol.script_pull("gpt-oss:20b", steps=20, delay_s=0.02)            # succeeds
        ol.script_pull("broken:1b", fail_after=5, error="max retries exceeded: EOF")
        ol.stop(); ol.start()                                            # down, then back up
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.upstreams import FakeUpstream, JSONResponse, Raw, ReceivedRequest, Response, _compile, _dumps


class NDJSONStream(Response):
    """``application/x-ndjson``: one JSON object a line, chunked, ``delay_s`` between lines."""

    def __init__(self, lines: list[dict[str, Any]], *, delay_s: float = 0.0, status: int = 200) -> None:
        frames = [_dumps(x) + b"\n" for x in lines]
        self.plan = _compile(status, {"content-type": "application/x-ndjson"}, frames, delay_s=delay_s)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeModel:
    name: str
    size: int
    digest: str
    family: str = "qwen3"
    parameter_size: str = "8B"
    quantization: str = "Q4_K_M"
    context_max: int = 40960
    capabilities: tuple[str, ...] = ("completion", "tools")
    modified_at: float = field(default_factory=time.time)


@dataclass
class _Loaded:
    size: int
    size_vram: int
    context_length: int
    expires_at: float


@dataclass
class _PullScript:
    steps: int = 10
    total: int = 50_000_000
    delay_s: float = 0.0
    fail_after: int | None = None  # progress lines before an {"error"} line
    error: str = "max retries exceeded: unexpected EOF"
    status: int | None = None  # an HTTP error before any progress (e.g. 500 with "file does not exist")
    resume_from: float = 0.0  # the share already downloaded by an earlier, interrupted pull


class FakeOllama:
    def __init__(self, *, version: str = "0.12.6", port: int = 0,
                 fallback: Callable[[ReceivedRequest], Response | None] | None = None) -> None:
        self.version = version
        self.fallback = fallback  # answers what is not Ollama's own API (e.g. /v1/messages)
        self.models: dict[str, FakeModel] = {}
        self.loaded: dict[str, _Loaded] = {}
        self._pulls: dict[str, _PullScript] = {}
        self._pending: list[tuple[ReceivedRequest, FakeModel]] = []  # pulls that install when fully sent
        self._lock = threading.Lock()
        self.up = FakeUpstream(self._respond, wire="anthropic", port=port)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return self.up.url

    @property
    def port(self) -> int:
        return self.up.port

    def start(self) -> FakeOllama:
        self.up.start()
        return self

    def stop(self) -> None:
        self.up.stop()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.up.requests

    def requests_to(self, path: str, method: str = "POST") -> list[ReceivedRequest]:
        return [r for r in self.up.requests if r.method == method and r.path == path]

    # ------------------------------------------------------------------ scripting

    def add_model(self, name: str, size: int = 5_000_000_000, *, loaded: bool = False, size_vram: int | None = None,
                  context_length: int = 4096, keep_alive_s: float = 300.0, **kw: Any) -> FakeModel:
        m = FakeModel(name, size, kw.pop("digest", _digest(name)), **kw)
        with self._lock:
            self.models[name] = m
        if loaded:
            self.load(name, size_vram=size_vram, context_length=context_length, keep_alive_s=keep_alive_s)
        return m

    def load(self, name: str, *, size_vram: int | None = None, context_length: int = 4096,
             keep_alive_s: float = 300.0) -> None:
        with self._lock:
            m = self.models[name]
            mem = int(m.size * 1.1)
            self.loaded[name] = _Loaded(mem, mem if size_vram is None else size_vram, context_length,
                                        time.time() + keep_alive_s)

    def script_pull(self, name: str, **kw: Any) -> None:
        """How the next pull of ``name`` goes (see _PullScript); unscripted pulls succeed at once."""
        self._pulls[name] = _PullScript(**kw)

    # ------------------------------------------------------------------ answering

    def _settle(self) -> None:
        """A pull installs its model once its whole answer was sent; a cancelled one never does."""
        keep = []
        for req, model in self._pending:
            if req.outcome == "sent":
                self.models[model.name] = model
            elif req.outcome == "pending":
                keep.append((req, model))
        self._pending = keep

    def _respond(self, req: ReceivedRequest) -> Response | None:
        body = req.json if isinstance(req.json, dict) else {}
        with self._lock:
            self._settle()
            p, m = req.path, req.method
            if m == "GET" and p == "/api/version":
                return JSONResponse({"version": self.version})
            if m == "GET" and p == "/api/tags":
                return JSONResponse({"models": [self._tag(x) for x in self.models.values()]})
            if m == "GET" and p == "/api/ps":
                now = time.time()
                for name in [n for n, x in self.loaded.items() if x.expires_at <= now]:
                    del self.loaded[name]
                return JSONResponse({"models": [self._ps(n, x) for n, x in self.loaded.items()]})
            if m == "POST" and p == "/api/show":
                x = self.models.get(str(body.get("model")))
                if x is None:
                    return JSONResponse({"error": f"model '{body.get('model')}' not found"}, 404)
                return JSONResponse({
                    "modelfile": f"FROM {x.name}\n", "parameters": "", "template": "{{ .Prompt }}",
                    "details": self._details(x), "capabilities": list(x.capabilities),
                    "model_info": {"general.architecture": x.family, "general.parameter_count": 8_190_735_360,
                                   f"{x.family}.context_length": x.context_max,
                                   f"{x.family}.embedding_length": 4096}})
            if m == "POST" and p == "/api/generate":
                name = str(body.get("model"))
                if name not in self.models:
                    return JSONResponse({"error": f"model '{name}' not found"}, 404)
                if body.get("keep_alive") in (0, "0", "0s"):
                    self.loaded.pop(name, None)
                    return JSONResponse({"model": name, "created_at": _rfc3339(time.time()), "response": "",
                                         "done": True, "done_reason": "unload"})
                if not body.get("prompt"):
                    x = self.models[name]
                    self.loaded[name] = _Loaded(int(x.size * 1.1), int(x.size * 1.1), 4096, time.time() + 300)
                    return JSONResponse({"model": name, "created_at": _rfc3339(time.time()), "response": "",
                                         "done": True, "done_reason": "load"})
                return JSONResponse({"error": "this fake Ollama only loads and unloads models"}, 400)
            if m == "DELETE" and p == "/api/delete":
                name = str(body.get("model"))
                if name not in self.models:
                    return JSONResponse({"error": f"model '{name}' not found"}, 404)
                del self.models[name]
                self.loaded.pop(name, None)
                return Raw(200)  # Ollama answers a delete with an empty 200
            if m == "POST" and p == "/api/pull":
                return self._pull(req, str(body.get("model") or body.get("name") or ""))
        return self.fallback(req) if self.fallback is not None else None

    def _pull(self, req: ReceivedRequest, name: str) -> Response:
        s = self._pulls.pop(name, None) or _PullScript(steps=3)
        if s.status is not None:
            return JSONResponse({"error": s.error}, s.status)
        digest = _digest(name + " layer")
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        for i in range(1, s.steps + 1):
            done = s.total * s.resume_from + s.total * (1 - s.resume_from) * i / s.steps
            lines.append({"status": f"pulling {digest[7:19]}", "digest": digest, "total": s.total,
                          "completed": int(done)})
            if s.fail_after is not None and i >= s.fail_after:
                lines.append({"error": s.error})
                return NDJSONStream(lines, delay_s=s.delay_s)
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        self._pending.append((req, FakeModel(name, s.total, digest)))
        return NDJSONStream(lines, delay_s=s.delay_s)

    # ------------------------------------------------------------------ shapes

    @staticmethod
    def _details(x: FakeModel) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": x.family, "families": [x.family],
                "parameter_size": x.parameter_size, "quantization_level": x.quantization}

    def _tag(self, x: FakeModel) -> dict[str, Any]:
        return {"name": x.name, "model": x.name, "modified_at": _rfc3339(x.modified_at), "size": x.size,
                "digest": x.digest[7:], "details": self._details(x)}

    def _ps(self, name: str, x: _Loaded) -> dict[str, Any]:
        m = self.models[name]
        return {"name": name, "model": name, "size": x.size, "digest": m.digest[7:], "details": self._details(m),
                "expires_at": _rfc3339(x.expires_at), "size_vram": x.size_vram, "context_length": x.context_length}
