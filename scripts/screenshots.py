"""Render each page of the desktop app with realistic traffic and save screenshots to docs/.

Run it on a desktop, or let it make one: with ``--desktop`` (the default when no DISPLAY is set)
it starts a virtual X server (Xvfb), a window manager (openbox) and a tray host (trayer), so the
window, its tray icon and the tray menu are the ones a user meets on a plain Linux desktop:

    .venv/bin/python scripts/screenshots.py                 # the full set, light
    .venv/bin/python scripts/screenshots.py --dark          # the desktop's own dark theme
    .venv/bin/python scripts/screenshots.py --case fresh    # a fresh install with little data
    .venv/bin/python scripts/screenshots.py --case small    # the window at its 900x600 minimum
    .venv/bin/python scripts/screenshots.py --case plan     # a Claude subscription's windows (dashboard, tray)
    .venv/bin/python scripts/screenshots.py --case team     # the Team page of a team gateway
    .venv/bin/python scripts/screenshots.py --case team-fresh  # ...with no team request yet
    .venv/bin/python scripts/screenshots.py --case team-admin  # an admin's read-only look (PostgreSQL)

(Debian/Ubuntu: ``apt install xvfb openbox trayer`` plus Qt's X11 libraries, see the README.)
``--dark`` asks the desktop for a dark theme (GTK's Adwaita:dark, which Qt's GTK platform theme
follows), as a user's dark desktop would; the app's palette is never forced.

It starts the app with a throwaway PATCHBAY_HOME, fake upstreams on loopback (an Anthropic-format
one serving "anthropic", an OpenAI-format one serving "deepseek", a fake Ollama serving "ollama"
and the Monitor page's model list), a simulated NVIDIA GPU (the tests' fake pynvml, values
following the clock) with ten minutes of back-filled samples,
back-fills two weeks of usage through the real Ledger API, drives six Claude-Code-like sessions
(one with a long folder name) through the real gateway (thinking, text and tool calls, streamed),
then grabs each page. The fresh case has one backend, no history, no GPU and no Ollama.

The team cases run the gateway in team mode ([team] with keys and three groups): thirty days of
requests by fourteen people (one with a very long e-mail) and a few keys, one revoked, then the
Team page's tabs at the usual size and at the 900x600 minimum (docs/team*.png).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SESSIONS = (
    # session id, working directory, first prompt, model asked for
    ("7f3c9a12-5d0e-4c11-9f7e-2b8d4a6e1c55", "/home/dana/src/patchbay", "Add a retry with backoff to the upload client",
     "claude-sonnet-4-5"),
    ("a41e0b77-93c2-4f5d-8e61-0c2f9d3b7a18", "/home/dana/src/webshop", "Why does the checkout test fail on CI?",
     "claude-sonnet-4-5"),
    ("c95d2e40-1b7a-4e8c-a3f2-6d0b8e5c9f21", "/home/dana/src/ml-pipeline", "Vectorise the feature scaler",
     "claude-sonnet-4-5"),
    ("0b6f8d13-7e24-4a9b-b5c6-9e1a3d7f2c80", "/home/dana/src/infra", "Write a Terraform module for the bucket",
     "claude-haiku-4-5"),
    ("e2a7c5f9-4d18-4b3e-9c0a-5f6b2d8e1a47", "/home/dana/notes", "Summarise yesterday's incident log",
     "claude-haiku-4-5"),
    ("5c1d7e93-2a48-4f60-b7d1-8e3f0a9c6b24",
     "/home/dana/src/customer-portal/services/authentication-and-authorisation-gateway-migration-to-oauth2",
     "Move the session cookies to the new gateway", "claude-sonnet-4-5"),
)
LONG_TITLE = SESSIONS[5][0]
FOLDERS = ("api-server", "billing", "mobile-app", "docs-site", "data-export", "search", "auth", "cli",
           "design-system", "etl-jobs", "onboarding", "payments")

THOUGHTS = (
    "The failing assertion compares the rounded total with the unrounded one, so the fix belongs in the "
    "fixture rather than in the checkout code. Let me confirm by reading the test first.",
    "Backoff should be exponential with jitter and a cap; the client already has a timeout setting I can reuse. "
    "I need to make sure idempotent requests only are retried.",
    "numpy broadcasting removes the Python loop; the mean and std have to be computed per column and the "
    "zero-variance columns guarded.",
)
ANSWERS = (
    "I found the cause: the fixture builds prices as floats and the test compares them after rounding. "
    "I changed the fixture to use `Decimal` and the assertion now holds on CI as well as locally.",
    "Done. `UploadClient.send` now retries 429 and 5xx answers up to four times with exponential backoff "
    "(0.5 s base, full jitter, 8 s cap). Non-idempotent requests are never retried.",
    "The scaler is vectorised: `(X - mean) / std` with `std[std == 0] = 1`. On the 1M-row sample it runs in "
    "38 ms instead of 4.1 s.",
    "Here is a module with versioning, server-side encryption and a lifecycle rule that moves objects to "
    "infrequent access after 30 days.",
)
TOOLS = (
    ("Read", {"file_path": "/home/dana/src/webshop/tests/test_checkout.py"}),
    ("Grep", {"pattern": "def send\\(", "path": "src/upload", "output_mode": "content"}),
    ("Edit", {"file_path": "src/upload/client.py", "old_string": "resp = self._post(url, body)",
              "new_string": "resp = self._with_retry(lambda: self._post(url, body))"}),
    ("Bash", {"command": "pytest tests/test_checkout.py -q", "description": "Run the checkout tests"}),
)


# --------------------------------------------------------------------------- fake upstreams


def _split(text: str, n: int) -> list[str]:
    words = text.split(" ")
    per = max(1, len(words) // n)
    out = [" ".join(words[i:i + per]) for i in range(0, len(words), per)]
    return [p + (" " if i < len(out) - 1 else "") for i, p in enumerate(out)]


def anthropic_events(model: str, rnd: random.Random) -> list[tuple[str, dict[str, Any]]]:
    from tests.fakes.chunks import anthropic_usage

    inp, cache = rnd.randint(1500, 9000), rnd.randint(15000, 60000)
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": {
        "id": f"msg_{uuid.uuid4().hex[:20]}", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": anthropic_usage(inp, 1, cache, 0)}})]
    index = 0
    out_tokens = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(("content_block_start", {"index": index, "content_block": start}))
        events.extend(("content_block_delta", {"index": index, "delta": d}) for d in deltas)
        events.append(("content_block_stop", {"index": index}))
        index += 1

    if rnd.random() < 0.7:
        t = rnd.choice(THOUGHTS)
        block({"type": "thinking", "thinking": "", "signature": ""},
              [{"type": "thinking_delta", "thinking": p} for p in _split(t, 14)]
              + [{"type": "signature_delta", "signature": "c2ln"}])
        out_tokens += len(t) // 4
    use_tool = rnd.random() < 0.5
    text = rnd.choice(ANSWERS) if not use_tool else "Let me look at the code first."
    block({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in _split(text, 16)])
    out_tokens += len(text) // 4
    if use_tool:
        import json

        name, args = rnd.choice(TOOLS)
        raw = json.dumps(args)
        pieces = [raw[i:i + 12] for i in range(0, len(raw), 12)]
        block({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:16]}", "name": name, "input": {}},
              [{"type": "input_json_delta", "partial_json": p} for p in pieces])
        out_tokens += len(raw) // 4
    events.append(("message_delta", {"delta": {"stop_reason": "tool_use" if use_tool else "end_turn",
                                               "stop_sequence": None}, "usage": {"output_tokens": out_tokens}}))
    events.append(("message_stop", {}))
    return events


def make_upstreams() -> tuple[Any, Any]:
    from tests.fakes.chunks import openai_text_chunks, openai_tool_call_chunks
    from tests.fakes.upstreams import AnthropicStream, FakeUpstream, OpenAIStream

    rnd = random.Random(7)
    lock = threading.Lock()

    def anthropic_responder(req: Any) -> Any:
        if req.method != "POST" or "messages" not in req.path:
            return None
        with lock:
            events = anthropic_events(req.json.get("model", "claude-sonnet-4-5"), rnd)
            delay = rnd.uniform(0.03, 0.06)
        return AnthropicStream(events, delay_s=delay)

    def openai_responder(req: Any) -> Any:
        if req.method != "POST" or "chat/completions" not in req.path:
            return None
        with lock:
            model = req.json.get("model", "deepseek-chat")
            usage = (rnd.randint(3000, 12000), rnd.randint(150, 600), rnd.randint(10000, 40000))
            if rnd.random() < 0.4:
                name, args = rnd.choice(TOOLS)
                chunks = openai_tool_call_chunks([(name, args)], pieces=8, text="Checking the file first.",
                                                 model=model, usage=usage)
            else:
                chunks = openai_text_chunks(rnd.choice(ANSWERS), pieces=18, model=model, usage=usage,
                                            reasoning=rnd.choice(THOUGHTS) if model == "deepseek-reasoner" else None)
            delay = rnd.uniform(0.03, 0.05)
        return OpenAIStream(chunks, delay_s=delay)

    a = FakeUpstream(anthropic_responder, wire="anthropic",
                     models=("claude-sonnet-4-5", "claude-haiku-4-5", "qwen3-coder:30b", "gpt-oss:20b"),
                     record=False).start()
    b = FakeUpstream(openai_responder, wire="openai", models=("deepseek-chat", "deepseek-reasoner"),
                     record=False).start()
    return a, b


def make_ollama() -> Any:
    """A fake Ollama with a few models (two loaded: one with a small context, one spilling to the
    CPU), serving Claude-Code-like streams on /v1/messages."""
    from tests.fakes.ollama import FakeOllama
    from tests.fakes.upstreams import AnthropicStream

    rnd = random.Random(3)

    def messages(req: Any) -> Any:
        if req.method != "POST" or "messages" not in req.path:
            return None
        return AnthropicStream(anthropic_events(req.json.get("model", "qwen3-coder:30b"), rnd), delay_s=0.04)

    ol = FakeOllama(version="0.12.6", fallback=messages).start()
    gb = 1_000_000_000
    ol.add_model("qwen3-coder:30b", int(18.6 * gb), family="qwen3moe", parameter_size="30.5B",
                 quantization="Q4_K_M", context_max=262144, loaded=True, context_length=65536, keep_alive_s=1500)
    ol.add_model("qwen2.5-coder:7b", int(4.7 * gb), family="qwen2", parameter_size="7.6B", quantization="Q4_K_M",
                 context_max=32768, loaded=True, context_length=4096, size_vram=int(4.7 * gb * 1.1 * 0.35),
                 keep_alive_s=240)
    ol.add_model("gpt-oss:20b", int(13.8 * gb), family="gptoss", parameter_size="20.9B", quantization="MXFP4",
                 context_max=131072, capabilities=("completion", "tools", "thinking"))
    ol.add_model("llama3.3:70b", int(42.5 * gb), family="llama", parameter_size="70.6B", quantization="Q4_K_M",
                 context_max=131072)
    ol.add_model("nomic-embed-text:latest", 274_000_000, family="nomic-bert", parameter_size="137M",
                 quantization="F16", context_max=2048, capabilities=("embedding",))
    ol.script_pull("devstral:24b", steps=4000, total=int(14.3 * gb), delay_s=0.05, resume_from=0.38)
    return ol


class ScriptedGpu:
    """What a busy RTX 4090 serving a local model reads like: the fake pynvml module of the tests
    (tests/fakes/nvml.py), with values that follow the clock. Labelled as simulated in the README."""

    def __init__(self) -> None:
        from tests.fakes.nvml import FakeNvml

        self.nvml = FakeNvml([{"name": "NVIDIA GeForce RTX 4090", "util": 0, "mem": (0, 24 * 1024**3), "temp": 0,
                               "power_mw": 0, "procs": []}])
        self.update(time.time())

    @staticmethod
    def values(t: float) -> tuple[float, int, float, float]:
        import math

        busy = max(0.0, math.sin(t / 23.0)) ** 0.5 * 0.8 + 0.15 * (math.sin(t / 3.1) + 1) / 2
        util = min(100.0, 100 * busy)
        return util, int((21.3 + 0.4 * busy) * 1024**3), 48 + 28 * busy, 60 + 330 * busy

    def update(self, t: float) -> None:
        util, used, temp, watts = self.values(t)
        d = self.nvml.devices[0]
        d.update(util=round(util), mem=(used, 24 * 1024**3), temp=round(temp), power_mw=int(watts * 1000),
                 procs=[(4242, used - 600 * 1024**2)])

    def sampler(self) -> Any:
        from app.host.hardware import HardwareSampler, NvmlSampler

        outer = self

        class Live(HardwareSampler):
            def sample(self) -> Any:
                outer.update(time.time())
                return super().sample()

        return Live([NvmlSampler(self.nvml)])


def backfill_monitor(bridge: Any, gpu: ScriptedGpu) -> None:
    """Ten minutes of samples and local traffic before the window opened, so the plots are full."""

    import psutil

    from app.host.hardware import GpuSample, HostSample, Sample

    now = time.time()
    vm = psutil.virtual_memory()
    ram_now = vm.total - vm.available
    rnd = random.Random(5)
    for i in range(600, 0, -1):
        t = now - i
        util, used, temp, watts = gpu.values(t)
        host = HostSample(12 + 10 * rnd.random() + util * 0.08, int(ram_now * (0.97 + util / 2000)), vm.total,
                          None, None)
        g = GpuSample(0, "NVIDIA GeForce RTX 4090", "nvidia", float(round(util)), used, 24 * 1024**3, temp,
                      watts)
        bridge.monitor.on_hw_sample(Sample(t, host, (g,)))
    t = now - 600
    while t < now - 20:
        dur = rnd.uniform(4, 14)
        bridge.monitor.throughput.add(t, rnd.uniform(300, 900), t + dur, int(dur * rnd.uniform(55, 85)))
        t += dur + rnd.uniform(2, 25)


# --------------------------------------------------------------------------- config and history


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, a_url: str, b_url: str, ollama_url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# Patchbay configuration (screenshot run)
[gateway]
port = 0

[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "{a_url}"
auth = "client"
local = false

[[backends]]
id = "deepseek"
kind = "openai"
base_url = "{b_url}/v1"
auth = "keyring"
models = ["deepseek-chat", "deepseek-reasoner"]
max_output_tokens = 8192
local = false

[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "{ollama_url}"
auth = "none"
models = ["qwen3-coder:30b", "gpt-oss:20b"]
local = true

[[backends]]
id = "bedrock"
kind = "bedrock"
region = "eu-central-1"
auth = "aws"
profile = "work"
models = ["eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "eu.anthropic.claude-haiku-4-5-20251001-v1:0"]

[[backends]]
id = "openrouter"
kind = "openai"
base_url = "http://127.0.0.1:{_closed_port()}/v1"
auth = "none"
models = ["google/gemini-3-pro"]
local = false

[ollama]
url = "{ollama_url}"

[active]
backend = "anthropic"

[routes]
background = "ollama,qwen3-coder:30b"
long_context = "openrouter,google/gemini-3-pro"
long_context_threshold = 60000
fallback = ["deepseek,deepseek-chat", "ollama,qwen3-coder:30b"]
breaker_failures = 2
breaker_cooldown_s = 600

[[budgets]]
scope = "all"
period = "day"
limit_usd = 20.0
warn_at = 0.8
action = "downgrade:ollama,qwen3-coder:30b"

[[budgets]]
scope = "backend:anthropic"
period = "week"
limit_usd = 60.0
warn_at = 0.8
action = "block"

[[prices]]
model = "deepseek-chat"
input = 0.27
output = 1.10
cache_read = 0.07

[[prices]]
model = "deepseek-reasoner"
input = 0.55
output = 2.19
cache_read = 0.14
""", encoding="utf-8")


def backfill(config_path: Path, ledger_file: Path) -> int:
    """Two weeks of plausible usage, written through the real Ledger API before the app starts."""
    from app.catalog.prices import PriceBook
    from app.config.disk import load_config
    from app.events import Usage, finished_request
    from app.ledger.writer import Ledger

    cfg = load_config(config_path)
    ledger = Ledger(ledger_file, prices=PriceBook.load(cfg), settings=cfg.ledger)
    ledger.start()
    rnd = random.Random(11)
    now = time.time()
    old_sessions = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(40)]
    mix = (("anthropic", "claude-sonnet-4-5", 0.55), ("anthropic", "claude-haiku-4-5", 0.15),
           ("deepseek", "deepseek-chat", 0.15), ("ollama", "qwen3-coder:30b", 0.15))
    n = 0
    t = now - 14 * 86400
    while t < now - 60:
        lt = time.localtime(t)
        busy = 9 <= lt.tm_hour < 19 and lt.tm_wday < 5
        recent = now - t < 30 * 3600
        rate = (40 if recent else 14) if busy else (5 if recent else 0.6)  # requests per hour
        t += rnd.expovariate(rate / 3600.0)
        if t >= now - 60:
            break
        x = rnd.random()
        pick = mix[-1]
        for choice in mix:
            x -= choice[2]
            if x <= 0:
                pick = choice
                break
        backend, model, _share = pick
        out = int(rnd.lognormvariate(6.0, 0.8))
        dur = 800 + out * rnd.uniform(8, 20)
        err = rnd.random() < 0.025
        usage = Usage(rnd.randint(800, 6000), 0 if err else out, 0, 0 if err else rnd.randint(8000, 60000))
        ledger.record(finished_request(
            f"req_{uuid.UUID(int=rnd.getrandbits(128)).hex[:24]}", t,
            session_id=rnd.choice(old_sessions[:12] if recent else old_sessions), client="claude-cli/2.1.332",
            backend=backend, requested_model="claude-sonnet-4-5", model=model,
            status=529 if err else 200, error_type="overloaded_error" if err else None,
            error_message="Overloaded" if err else None, ttft_ms=None if err else rnd.uniform(350, 1400),
            duration_ms=dur, usage=usage, stop_reason=None if err else rnd.choice(("end_turn", "tool_use"))))
        n += 1
    ledger.close()
    # the names the dashboard had for those sessions when they ran (kept across restarts)
    from app.bridge.session_names import FILE_NAME, SessionNames

    names = SessionNames(ledger_file.parent / FILE_NAME)
    for i, sid in enumerate(old_sessions):
        names.note(sid, f"/home/dana/src/{FOLDERS[i % len(FOLDERS)]}", None, now - i * 3600)
    names.save()
    return n


# --------------------------------------------------------------------------- traffic


class Traffic:
    """Claude-Code-like sessions sending streamed turns to the gateway until stopped."""

    def __init__(self, url: str, token: str, sessions: tuple[tuple[str, str, str, str], ...] = SESSIONS,
                 turns: int | None = None, headers: dict[str, str] | None = None) -> None:
        self.url, self.token = url, token
        self.headers = headers or {}  # e.g. a subscription login's anthropic-beta
        self.sessions, self.turns = sessions, turns  # turns: per session, then it stops (None: until stopped)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for i, session in enumerate(self.sessions):
            th = threading.Thread(target=self._run, args=(i, *session), daemon=True)
            th.start()
            self.threads.append(th)

    def _run(self, i: int, sid: str, cwd: str, prompt: str, model: str) -> None:
        import anthropic

        client = anthropic.Anthropic(base_url=self.url, api_key=self.token, max_retries=0, timeout=30.0,
                                     default_headers={"X-Claude-Code-Session-Id": sid,
                                                      "User-Agent": "claude-cli/2.1.332 (external, sdk-cli)",
                                                      **self.headers})
        rnd = random.Random(i)
        time.sleep(i * 0.35)
        turn = 0
        while not self.stop.is_set() and (self.turns is None or turn < self.turns):
            msgs: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
            if turn:
                msgs += [{"role": "assistant", "content": "Let me look at the code first."},
                         {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ok</system-reminder>"}]}]
            try:
                with client.messages.stream(model=model, max_tokens=4096, messages=msgs,
                                            system=[{"type": "text", "text": "You are Claude Code."},
                                                    {"type": "text", "text": f"Working directory: {cwd}\n"}]) as s:
                    for _ in s:
                        if self.stop.is_set():
                            break
            except Exception:  # noqa: BLE001 - a screenshot run keeps going
                pass
            turn += 1
            self.stop.wait(rnd.uniform(0.2, 1.2))

    def join(self) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(10)


# --------------------------------------------------------------------------- the run


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


def write_fresh_config(path: Path, a_url: str) -> None:
    """What a new user has after adding their first backend: one, and nothing else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""[gateway]
port = 0

[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "{a_url}"
auth = "client"
local = false

[active]
backend = "anthropic"
""", encoding="utf-8")


async def wait_until(pred: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if pred():
            return
        await settle(0.05)


async def shoot(args: argparse.Namespace) -> int:
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QScrollArea, QSystemTrayIcon

    from app.gui import App
    from app.host.hardware import HardwareSampler
    from app.paths import default_paths
    from app.views.main_window import MIN_SIZE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-dark" if args.dark else ""
    prefix = {"full": "", "fresh": "fresh-", "small": "small-"}[args.case]
    paths = default_paths()
    a, b = make_upstreams()
    ol = make_ollama()
    fresh = args.case == "fresh"
    if fresh:
        write_fresh_config(paths.config_file, a.url)
        gpu = None
    else:
        write_config(paths.config_file, a.url, b.url, ol.url)
        rows = backfill(paths.config_file, paths.ledger_file)
        print(f"back-filled {rows} ledger rows", flush=True)
        gpu = ScriptedGpu()

    tray_host = QSystemTrayIcon.isSystemTrayAvailable()
    app = App(paths.config_file, use_system_tray=tray_host,
              hardware_factory=gpu.sampler if gpu is not None else (lambda: HardwareSampler([])))
    assert app.start(), [m.text for m in app.window.messages()]
    bridge = app.bridge
    if gpu is not None:
        backfill_monitor(bridge, gpu)
        bridge.backends.set_api_key("deepseek", "sk-deepseek-0123456789abcdef")
    win = app.window
    win.resize(*MIN_SIZE) if args.case == "small" else win.resize(1320, 860)
    app.show_window()
    win.move(0, 30)
    traffic = Traffic(bridge.gateway().url, bridge.settings.gateway_token(), sessions=SESSIONS[:1] if fresh else SESSIONS,
                      turns=3 if fresh else None)
    traffic.start()
    await settle(2.0)
    if not fresh:
        bridge.live.pin_session(SESSIONS[2][0], "deepseek", "deepseek-chat")
        bridge.live.pin_session(SESSIONS[4][0], "ollama", "qwen3-coder:30b")
    await settle(9.0)

    def save(widget: Any, name: str) -> None:
        # no processEvents() here: it would run the loop's asyncio tasks (Ollama polls) inside this one
        pm = widget.grab()
        path = out / f"{prefix}{name}{suffix}.png"
        pm.save(str(path))
        print(f"saved {path} ({pm.width()}x{pm.height()})", flush=True)

    # Dashboard: select a session while it streams (the small window: the one with the long title).
    win.show_page("dashboard")
    dash = win.page("dashboard")
    target = LONG_TITLE if args.case == "small" else SESSIONS[0][0]
    dash.select_session(target)
    if not fresh:
        await wait_until(lambda: (s := bridge.live.session(target)) is not None and s.in_flight
                         and dash.stream.toPlainText().count("→") >= 2)
    await settle(0.6)
    save(win, "dashboard")
    if args.case == "full":
        dash.select_session(LONG_TITLE)
        await settle(0.6)
        save(win, "dashboard-long-title")
        dash.select_session(target)

    if not fresh:
        # Two requests for OpenRouter, which is down: both fail over to DeepSeek, and the breaker
        # opens (the Backends list shows it).
        def to_openrouter() -> None:
            import anthropic

            c = anthropic.Anthropic(base_url=bridge.gateway().url, api_key=bridge.settings.gateway_token(),
                                    max_retries=0)
            for _ in range(2):
                c.messages.create(model="openrouter,google/gemini-3-pro", max_tokens=64,
                                  messages=[{"role": "user", "content": "summarise the repository"}])

        await asyncio.get_running_loop().run_in_executor(None, to_openrouter)
        await settle(0.5)

    # Backends: the DeepSeek entry with a passing Test.
    win.show_page("backends")
    page = win.page("backends")
    page.list.setCurrentRow(0 if fresh else 1)
    if not fresh:
        page.test_model.setCurrentText("deepseek-chat")
        page.run_test()
        await wait_until(page.test_button.isEnabled)
    await settle(0.2)
    save(win, "backends")
    if args.case == "full":
        page.list.setCurrentRow(3)  # Bedrock: region and AWS profile instead of a URL and a key
        await settle(0.2)
        save(win, "backends-bedrock")

    win.show_page("spend")
    spend = win.page("spend")
    await wait_until(lambda: spend.data is not None)
    await settle(0.5)
    save(win, "spend")

    win.show_page("requests")
    req = win.page("requests")
    req.reload()
    await wait_until(lambda: req.model.rowCount() > (1 if fresh else 50))
    await settle(0.3)
    req.view.selectRow(2)
    save(win, "requests")

    # Settings, after Connect merged our keys into a settings.json with the user's hooks and plugins.
    claude_dir = Path(os.environ["CLAUDE_CONFIG_DIR"])
    claude_dir.mkdir(parents=True, exist_ok=True)
    if not fresh:
        (claude_dir / "settings.json").write_text(
            '{\n  "permissions": {"allow": ["Bash(npm run test)"]},\n  "hooks": {"Stop": [{"hooks": [{"type": '
            '"command", "command": "notify-send done"}]}]},\n  "enabledPlugins": {"formatter@tools": true},\n'
            '  "env": {\n    "DISABLE_TELEMETRY": "1"\n  }\n}\n', encoding="utf-8")
        bridge.settings.connect_claude_code(nonessential=True, aliases={"haiku": "ollama,qwen3-coder:30b"})
    win.show_page("settings")
    await settle(0.3)
    save(win, "settings")
    settings = win.page("settings")
    scroll = settings.findChild(QScrollArea)
    if args.case == "full":
        save(settings.cc_group, "claude-code")
        scroll.ensureWidgetVisible(settings.routes, 0, 40)  # ...and its routing rules further down
        await settle(0.3)
        save(win, "routing")
    if args.case == "small":
        scroll.ensureWidgetVisible(settings.budget_save, 0, 40)  # the budgets' buttons at the minimum size
        await settle(0.3)
        save(win, "settings-budgets")
    scroll.verticalScrollBar().setValue(0)

    # Monitor: the machine and the local Ollama, a pull under way (fresh: no GPU, no Ollama).
    win.show_page("monitor")
    mon = win.page("monitor")
    if not fresh:
        await wait_until(lambda: mon.models.rowCount() >= 5)
        bridge.monitor.ollama_pull("devstral:24b")
        await settle(3.0)
        mon.select_model("qwen3-coder:30b")
    await settle(0.5 if not fresh else 2.0)
    save(win, "monitor")

    if args.case == "full":
        await shoot_tray(app, out, suffix, tray_host)

    traffic.join()
    app.quit()
    a.stop()
    b.stop()
    ol.stop()
    _ = QPoint, QGuiApplication
    return 0


async def shoot_tray(app: Any, out: Path, suffix: str, tray_host: bool, name: str = "tray") -> None:
    """The tray menu as a left click opens it: the real tray host's panel, icon and menu, from the screen."""
    from PySide6.QtCore import QPoint, QRect, Qt
    from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPixmap

    tray = app.tray
    tray.update_spend()
    path = out / f"{name}{suffix}.png"
    if tray_host and tray.icon is not None:
        app.window.hide()  # the desktop as it is with the window closed into the tray
        await settle(0.5)
        tray.popup_menu()  # what a left click does on Linux
        await settle(0.8)
        screen = QGuiApplication.primaryScreen()
        geo = tray.menu.geometry()
        icon = tray.icon.geometry()
        left = max(0, min(geo.left(), icon.left()) - 60)
        right = min(screen.geometry().width(), max(geo.right(), icon.right()) + 12)
        shot = screen.grabWindow(0, left, 0, right - left, geo.bottom() + 12)
        tray.menu.hide()
        shot.save(str(path))
        print(f"saved {path} (from the screen: tray host, icon, menu)", flush=True)
        return
    # no tray host: the menu drawn under a panel strip with the tray glyph
    win = app.window
    menu = tray.menu
    menu.popup(QPoint(200, 200))
    await settle(0.3)
    menu_pm = menu.grab()
    menu.hide()
    glyph = tray.current_icon().pixmap(22, 22)
    pad, strip = 12, 30
    w = max(menu_pm.width() + 2 * pad, 320)
    canvas = QPixmap(w, strip + menu_pm.height() + pad)
    canvas.fill(win.palette().color(win.backgroundRole()))
    p = QPainter(canvas)
    p.fillRect(QRect(0, 0, w, strip), QColor("#2b2d31"))
    p.drawPixmap(w - pad - 22 - 40, (strip - 22) // 2, glyph)
    p.setPen(QColor("#e8eaed"))
    p.drawText(QRect(w - pad - 36, 0, 36, strip), int(Qt.AlignmentFlag.AlignVCenter), time.strftime("%H:%M"))
    p.drawPixmap(w - pad - menu_pm.width(), strip, menu_pm)
    p.end()
    canvas.save(str(path))
    print(f"saved {path} (drawn: no tray host)", flush=True)


class Desktop:
    """A virtual X server with a window manager and a tray host, as on a plain Linux desktop."""

    def __init__(self, size: str = "1400x900") -> None:
        import shutil
        import subprocess

        missing = [t for t in ("Xvfb", "openbox", "trayer") if shutil.which(t) is None]
        if missing:
            raise SystemExit(f"--desktop needs {', '.join(missing)}: on Debian or Ubuntu, "
                             "sudo apt install xvfb openbox trayer")
        self.procs: list[subprocess.Popen[bytes]] = []
        r, w = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
                                pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        self.procs.append(xvfb)
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            raise SystemExit("Xvfb did not start")
        os.environ["DISPLAY"] = f":{number}"
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs.append(subprocess.Popen(["openbox"], **quiet))  # type: ignore[call-overload]
        time.sleep(0.5)
        if shutil.which("xsetroot"):  # a desktop colour instead of X's black (after the window manager)
            subprocess.run(["xsetroot", "-solid", "#4a5a6a"], check=False)
        self.procs.append(subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "26",
             "--transparent", "false", "--tint", "0x2b2d31", "--SetDockType", "true"], **quiet))  # type: ignore[call-overload]
        time.sleep(1.0)

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except Exception:  # noqa: BLE001
                p.kill()


# --------------------------------------------------------------------------- the plan case


async def shoot_plan(args: argparse.Namespace) -> int:
    """Claude Code signed in with a Claude subscription (its OAuth token through the default
    ``anthropic`` backend): the Dashboard's plan strip and the tray menu's plan line (docs/plan-*.png)."""
    from app.gui import App
    from app.host.hardware import HardwareSampler
    from app.paths import default_paths
    from tests.fakes.subscription import OAUTH_BETA, OAUTH_TOKEN, SubscriptionAPI

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-dark" if args.dark else ""
    paths = default_paths()
    api = SubscriptionAPI(model="claude-sonnet-4-5")
    api.windows.five_hour, api.windows.seven_day = 0.63, 0.21
    api.up.start()
    write_fresh_config(paths.config_file, api.url)
    app = App(paths.config_file, use_system_tray=False, hardware_factory=lambda: HardwareSampler([]))
    assert app.start(), [m.text for m in app.window.messages()]
    win = app.window
    win.resize(1320, 860)
    app.show_window()
    traffic = Traffic(app.bridge.gateway().url, OAUTH_TOKEN, sessions=SESSIONS[:3], turns=2,
                      headers={"anthropic-beta": f"claude-code-20250219,{OAUTH_BETA}"})
    traffic.start()
    await wait_until(lambda: bool(app.bridge.subscription.text()), 60.0)
    if not app.bridge.subscription.text():
        raise SystemExit("no subscription answer reached the app within a minute: nothing to show")
    await settle(4.0)
    win.show_page("dashboard")
    dash = win.page("dashboard")
    dash.select_session(SESSIONS[0][0])
    await settle(0.8)
    pm = win.grab()
    pm.save(str(out / f"plan-dashboard{suffix}.png"))
    print(f"saved {out / f'plan-dashboard{suffix}.png'} ({pm.width()}x{pm.height()})", flush=True)
    await shoot_tray(app, out, suffix, False, name="plan-tray")
    traffic.join()
    app.quit()
    api.up.stop()
    return 0


# --------------------------------------------------------------------------- the team cases

TEAM = """
[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
backends = ["anthropic", "ollama"]

[[team.groups]]
name = "research"
members = ["group:research"]

[[team.groups]]
name = "contractors"
members = ["*@agency.example"]
models = ["claude-haiku-*", "qwen3-*"]
"""
TEAM_BUDGETS = """
[[budgets]]
scope = "each-user"
period = "day"
limit_usd = 25
warn_at = 0.8
action = "downgrade:ollama,qwen3-coder:30b"

[[budgets]]
scope = "group:contractors"
period = "month"
limit_usd = 400
action = "block"
blocked_message = "Ask Erin (platform team) to raise it."

[[budgets]]
scope = "user:ravi@agency.example"
period = "week"
limit_usd = 30
action = "block"
"""
PEOPLE = (  # e-mail, groups, dollars per working day (roughly)
    ("dana@corp.example", ("eng",), 7.5), ("ravi@agency.example", ("contractors",), 7.0),
    ("mei.lin@corp.example", ("eng", "research"), 6.2), ("tom@corp.example", ("eng",), 3.1),
    ("alexandra.konstantinopoulou-vasilakis@research-and-development.corp.example", ("eng", "research"), 2.6),
    ("jo@corp.example", ("eng",), 2.2), ("sam@agency.example", ("contractors",), 1.8),
    ("priya@corp.example", ("eng",), 1.5), ("lee@corp.example", ("eng",), 0.9), ("ana@corp.example", ("eng",), 0.7),
    ("omar@corp.example", ("eng",), 0.5), ("kim@agency.example", ("contractors",), 0.4),
    ("noah@corp.example", ("eng",), 0.3), ("eva@corp.example", ("eng", "research"), 0.2),
)


def write_team_config(path: Path, a_url: str, ollama_url: str, *, budgets: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""[gateway]
port = 0

[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "{a_url}"
auth = "none"
local = false

[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "{ollama_url}"
auth = "none"
models = ["qwen3-coder:30b"]
local = true

[active]
backend = "anthropic"
{TEAM}{TEAM_BUDGETS if budgets else ""}""", encoding="utf-8")


def backfill_team(config_path: Path, ledger_file: Path) -> int:
    """Thirty days of the team's requests (who sent each: user and groups), through the real Ledger
    (into the ledger the config names: the SQLite ``ledger_file``, or its [ledger] url)."""
    import dataclasses

    from app.catalog.prices import PriceBook
    from app.config.disk import load_config
    from app.events import Usage, finished_request
    from app.ledger.opener import open_reader, open_writer
    from app.paths import Paths

    cfg = load_config(config_path)
    paths = Paths(ledger_file.parent, ledger_file.parent, ledger_file.parent)
    ledger = open_writer(cfg.ledger, paths, PriceBook.load(cfg))
    ledger.start()
    rnd = random.Random(17)
    now = time.time()
    n = 0
    for day in range(29, -1, -1):
        t0 = now - day * 86400
        weekday = time.localtime(t0).tm_wday < 5
        for user, groups, per_day in PEOPLE:
            dollars = per_day * (rnd.uniform(0.3, 1.7) if weekday else rnd.uniform(0.0, 0.25))
            if user.startswith("ravi") and day < 6:
                dollars *= 1.6  # a busy week: past the warn line of his weekly budget
            while dollars > 0:
                cost = min(dollars, rnd.uniform(0.05, 0.6))
                dollars -= cost
                at = min(t0 - rnd.uniform(0, 9 * 3600), now - 60)
                out = int(cost / 15e-6)  # claude-sonnet-4-5 output: $15 per million tokens
                e = finished_request(f"req_{uuid.UUID(int=rnd.getrandbits(128)).hex[:24]}", at,
                                     model="claude-sonnet-4-5", usage=Usage(0, out), duration_ms=rnd.uniform(2e3, 9e3))
                ledger.record(dataclasses.replace(e, user=user, groups=groups, identity_source="keys",
                                                  client_addr=f"10.20.0.{rnd.randint(2, 200)}"))
                n += 1
    # whatever the date: one person past the limit, one past the warn line, one over a weekly cap;
    # what is missing is spread over the period's days so far (no one-day tower on a Monday)
    from app.budgets.limits import period_bounds

    day, week = period_bounds("day", now)[0], period_bounds("week", now)[0]
    ledger.flush(30.0)
    ledger.drain(30.0)
    reader = open_reader(cfg.ledger, paths)
    for user, start, target in (("dana@corp.example", day, 26.0), ("mei.lin@corp.example", day, 21.5),
                                ("ravi@agency.example", week, 33.0)):
        missing = target - sum(t.cost_usd for t in reader.totals(start, None, "user") if t.key == user)
        groups = next(g for u, g, _ in PEOPLE if u == user)
        days = [d for d in (start + i * 86400 for i in range(7)) if d < now]
        while missing > 0.01:
            cost = min(missing, 0.9)
            missing -= cost
            d = rnd.choice(days)
            at = min(d + rnd.uniform(8 * 3600, 18 * 3600), now - rnd.uniform(60, 1800))
            e = finished_request(f"req_{uuid.UUID(int=rnd.getrandbits(128)).hex[:24]}", max(at, d),
                                 model="claude-sonnet-4-5", usage=Usage(0, int(cost / 15e-6)))
            ledger.record(dataclasses.replace(e, user=user, groups=groups, identity_source="keys"))
            n += 1
    reader.close()
    ledger.flush(30.0)
    ledger.drain(30.0)
    ledger.close()
    return n


def issue_team_keys(ledger_file: Path, url: str | None = None) -> None:
    from app.team.keystore import TeamStore

    store: TeamStore
    if url is None:
        from app.team.keystore_sqlite import SqliteKeyStore

        store = SqliteKeyStore(ledger_file)
    else:
        from app.team.keystore_pg import PgKeyStore

        store = PgKeyStore(url)
    try:
        for user, groups, _ in PEOPLE[:6]:
            store.create(user, groups[:1], expires_at=time.time() + 90 * 86400, created_by="erin@admin-laptop")
        old, _ = store.create("former.employee@corp.example", ("eng",), created_by="erin@admin-laptop")
        store.revoke(old.id, revoked_by="erin@admin-laptop")
    finally:
        store.close()


async def shoot_team(args: argparse.Namespace) -> int:
    """The Team page: Spend (by user, by group), Budgets, Keys, Audit trail; and the small window."""
    from app.gui import App
    from app.host.hardware import HardwareSampler
    from app.paths import default_paths
    from app.views.main_window import MIN_SIZE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-dark" if args.dark else ""
    fresh = args.case == "team-fresh"
    paths = default_paths()
    a, _b = make_upstreams()
    ol = make_ollama()
    pg = None
    if args.case == "team-admin":  # the gateways' config elsewhere; this app's only names the ledger
        pg = team_admin_ledger(paths, a.url, ol.url)
    else:
        write_team_config(paths.config_file, a.url, ol.url, budgets=True)
        if not fresh:
            print(f"back-filled {backfill_team(paths.config_file, paths.ledger_file)} team ledger rows", flush=True)
        issue_team_keys(paths.ledger_file)
    app = App(paths.config_file, use_system_tray=False, hardware_factory=lambda: HardwareSampler([]))
    assert app.start(), [m.text for m in app.window.messages()]
    win = app.window
    win.resize(1320, 860)
    app.show_window()
    win.move(0, 30)
    win.show_page("team")
    page = win.page("team")
    await wait_until(lambda: page.keys.rowCount() > 0 and (fresh or bool(page.chart.shown())), 10.0)
    await settle(0.5)
    prefix = "fresh-" if fresh else ""

    def save(name: str) -> None:
        name = name.replace("team", "team-admin", 1) if pg is not None else name
        pm = win.grab()
        path = out / f"{prefix}{name}{suffix}.png"
        pm.save(str(path))
        print(f"saved {path} ({pm.width()}x{pm.height()})", flush=True)

    shots = (((1320, 860), "", ("team", "team-budgets", "team-keys", "team-audit")),
             (MIN_SIZE, "-small", ("team", "team-budgets")))
    if pg is not None:  # the page as the admin sees it, and the banner about the read-only role
        shots = (((1320, 860), "", ("team", "team-budgets")),)
    for size, tail, tabs in shots:
        win.resize(*size)
        for tab, name in enumerate(tabs):
            page.tabs.setCurrentIndex(tab)
            await settle(0.4)
            save(name + tail)
        page.tabs.setCurrentIndex(0)
        if not tail and pg is None:
            page.chart.by.setCurrentIndex(1)
            await settle(0.4)
            save("team-by-group")
            page.chart.by.setCurrentIndex(0)
    app.quit()
    a.stop()
    _b.stop()
    ol.stop()
    if pg is not None:
        pg.destroy()
    return 0


def team_admin_ledger(paths: Any, a_url: str, ol_url: str) -> Any:
    """A team's PostgreSQL (tests/pg.py) as its gateways leave it: thirty days of requests, keys and
    the policy they recorded; a role that may only read it; this app's config naming only that."""
    import psycopg

    from app.config.disk import load_config
    from app.team.audit import record_policy
    from app.team.keystore_pg import PgKeyStore
    from tests.pg import PgServer

    pg = PgServer().start()
    url = pg.create_db()
    gateway = paths.config_dir / "gateway.toml"
    write_team_config(gateway, a_url, ol_url, budgets=True)
    gateway.write_text(gateway.read_text() + f'\n[ledger]\nurl = "{url}"\n', encoding="utf-8")
    scratch = paths.config_dir / "gateway-data" / "usage.sqlite3"
    print(f"back-filled {backfill_team(gateway, scratch)} team ledger rows", flush=True)
    store = PgKeyStore(url)
    try:
        record_policy(store, _at(load_config(gateway)), who="patchbay@gw-1.corp.example")
    finally:
        store.close()
    issue_team_keys(scratch, url)
    db = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE erin_viewer LOGIN PASSWORD 'viewer'")
        conn.execute(f'GRANT CONNECT ON DATABASE "{db}" TO erin_viewer')
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO erin_viewer")
    os.environ["PATCHBAY_SHOTS_DB_PASSWORD"] = "viewer"
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(f"""[gateway]
port = 0

[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "{a_url}"
auth = "none"
local = false

[active]
backend = "anthropic"

[ledger]
url = "{url.replace('postgresql://postgres@', 'postgresql://erin_viewer@')}"
password = "env:PATCHBAY_SHOTS_DB_PASSWORD"
""", encoding="utf-8")
    return pg


def _at(cfg: Any) -> Any:
    """The gateways' config as it would be named on their hosts (the page shows the path)."""
    import dataclasses

    return dataclasses.replace(cfg, path=Path("/etc/patchbay/team.toml"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs"), help="where the PNGs go (default: docs/)")
    ap.add_argument("--dark", action="store_true",
                    help="a dark desktop theme (GTK Adwaita:dark, followed by Qt); adds -dark to the file names")
    ap.add_argument("--case", choices=("full", "fresh", "small", "plan", "team", "team-fresh", "team-admin"),
                    default="full",
                    help="full: every page with two weeks of data; fresh: a new install with little data; "
                         "small: the window at its minimum size (files get a fresh-/small- prefix); "
                         "team: the Team page of a team gateway (docs/team*.png); team-fresh: with no requests; "
                         "team-admin: an admin's read-only look at a team's PostgreSQL (docs/team-admin*.png); "
                         "plan: Claude Code signed in with a Claude subscription (docs/plan-*.png)")
    ap.add_argument("--desktop", action=argparse.BooleanOptionalAction, default=None,
                    help="start Xvfb, openbox and trayer (default: when no DISPLAY is set)")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="patchbay-shots-")
    os.environ["PATCHBAY_HOME"] = home
    os.environ["CLAUDE_CONFIG_DIR"] = str(Path(home) / "claude")
    os.environ.pop("PATCHBAY_TOKEN", None)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)
    desktop = Desktop() if (args.desktop or (args.desktop is None and not os.environ.get("DISPLAY"))) else None
    if args.dark:  # the desktop's dark theme, as a user's would be: GTK's, which Qt's GTK theme follows
        os.environ["GTK_THEME"] = "Adwaita:dark"
        os.environ["QT_QPA_PLATFORMTHEME"] = "gtk3"

    import keyring

    from tests.fakes.keyring_backend import MemoryKeyring  # never touch the real keychain

    keyring.set_keyring(MemoryKeyring())

    import qasync

    from app.gui import make_application

    try:
        qapp = make_application([sys.argv[0]])
        loop = qasync.QEventLoop(qapp)
        asyncio.set_event_loop(loop)
        with loop:
            shots = shoot_team if args.case.startswith("team") else shoot_plan if args.case == "plan" else shoot
            return loop.run_until_complete(shots(args))
    finally:
        if desktop is not None:
            desktop.close()


if __name__ == "__main__":
    sys.exit(main())
