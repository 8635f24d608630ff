"""Gateway benchmark: what the gateway adds on top of an upstream, in latency, CPU and memory.

    .venv/bin/python bench/gateway_bench.py            # full run, about 1.5 minutes
    .venv/bin/python bench/gateway_bench.py --quick    # smaller samples, about 30 s

Processes: a fake upstream (tests/fakes, its own process so it shares no GIL with the client),
the gateway (``python -m app serve``, its own process, measured with psutil), and the client
(this process: a small keep-alive HTTP/1.1 client on uvloop + httptools, so client overhead stays
low). For each backend kind (``openai``: translated; ``anthropic``: passthrough; ``bedrock``:
SigV4-signed, answered in event-stream frames, run with ``--kinds bedrock``) and each load
(non-streaming; 50-chunk streams back to back; 50-chunk streams paced at 20 ms a chunk) at
concurrency 1 and 10, the same requests go once straight to the upstream and once through the
gateway; the difference is what the gateway adds. See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httptools  # noqa: E402
import psutil  # noqa: E402

TOKEN = "bench-token"
BEDROCK_STOP = __import__("base64").b64encode(b'{"type":"message_stop"}')[-16:]
CHUNKS = 50
PACE_S = 0.020
LISTENING_RE = re.compile(r"Patchbay gateway listening on (http://\S+)")

TARGET_TTFB_MS = 1.0
TARGET_CPU_B2B_MS = 2.5
TARGET_CPU_PACED_MS = 21.0
TARGET_START_S = 1.0
TARGET_RSS_MB = 80.0
IDLE_S = 3.0

LOADS = ("non-stream", "stream", "paced")
COUNTS = {  # (load, concurrency) -> requests measured (full, quick)
    ("non-stream", 1): (300, 100), ("non-stream", 10): (600, 200),
    ("stream", 1): (200, 60), ("stream", 10): (400, 120),
    ("paced", 1): (10, 4), ("paced", 10): (40, 20),
}

# --------------------------------------------------------------------------- the fake upstream process


def _text_pieces() -> str:
    words = ["alpha ", "beta ", "gamma ", "delta ", "ε-psi ", "zeta ", "eta "]
    return "".join(words[i % len(words)] for i in range(CHUNKS))


def _upstream_main(wire: str, conn: Connection) -> None:
    """Runs in a child process: a FakeUpstream whose answers follow the phase the parent sets."""
    from tests.fakes import (
        AnthropicJSON,
        AnthropicStream,
        FakeUpstream,
        OpenAIJSON,
        OpenAIStream,
        anthropic_message,
        anthropic_text_events,
        openai_completion,
        openai_text_chunks,
    )

    text = _text_pieces()
    if wire == "openai":
        chunks = openai_text_chunks(text, CHUNKS - 3, usage=(20, CHUNKS, 0))  # role + 47 + finish + usage = 50
        assert len(chunks) == CHUNKS
        phases = {
            "stream": OpenAIStream(chunks),
            "paced": OpenAIStream(chunks, delay_s=PACE_S),
            "json": OpenAIJSON(openai_completion(text, usage=(20, CHUNKS, 0))),
        }
    elif wire == "bedrock":
        from tests.fakes.cloud import BedrockStream

        events = anthropic_text_events(text, CHUNKS - 5, usage=(20, CHUNKS), ping=False)
        phases = {
            "stream": BedrockStream(events),
            "paced": BedrockStream(events, delay_s=PACE_S),
            "json": AnthropicJSON(anthropic_message(text, usage=(20, CHUNKS))),
        }
    else:
        events = anthropic_text_events(text, CHUNKS - 5, usage=(20, CHUNKS), ping=False)  # 45 deltas + 5 = 50
        assert len(events) == CHUNKS
        phases = {
            "stream": AnthropicStream(events),
            "paced": AnthropicStream(events, delay_s=PACE_S),
            "json": AnthropicJSON(anthropic_message(text, usage=(20, CHUNKS))),
        }
    state = {"stream": phases["stream"]}

    def respond(req: Any) -> Any:
        body = req.body
        if b'"stream":true' in body or b'"stream": true' in body or req.path.endswith("/invoke-with-response-stream"):
            return state["stream"]
        return phases["json"]

    with FakeUpstream(respond, wire="openai" if wire == "openai" else "anthropic", record=False) as up:
        conn.send(up.port)
        while True:
            msg = conn.recv()
            if msg == "stop":
                break
            state["stream"] = phases["paced" if msg == "paced" else "stream"]
            conn.send("ok")


class Upstream:
    def __init__(self, wire: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_upstream_main, args=(wire, child), daemon=True)
        self.proc.start()
        child.close()  # so a child that dies ends our recv() with EOFError instead of hanging
        try:
            self.port: int = self.conn.recv()
        except EOFError:
            raise SystemExit("The fake upstream process failed to start (see its traceback above).") from None

    def phase(self, load: str) -> None:
        self.conn.send(load)
        self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


# --------------------------------------------------------------------------- the client


class _Conn(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends pre-encoded bytes and times the answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.done: asyncio.Future[float] | None = None
        self.first_body = 0.0
        self.status = 0
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection closed before the response ended ({exc})"))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.first_body:
            self.first_body = time.perf_counter()
        self.tail = (self.tail + body)[-64:]

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(time.perf_counter())

    async def request(self, data: bytes) -> tuple[float, float, int, bytes]:
        """(total s, first body byte s, status, last bytes of the body)"""
        self.parser = httptools.HttpResponseParser(self)
        self.first_body = 0.0
        self.tail = b""
        self.done = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        assert self.transport is not None
        self.transport.write(data)
        t_end = await self.done
        return t_end - t0, (self.first_body or t_end) - t0, self.status, self.tail


async def _connect(port: int) -> _Conn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(_Conn, "127.0.0.1", port)
    return proto


def _request_bytes(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    raw = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "content-type: application/json",
             f"content-length: {len(raw)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


def anthropic_request(port: int, stream: bool, token: str | None) -> bytes:
    body = {"model": "claude-sonnet-5-5", "max_tokens": 1024, "stream": stream,
            "messages": [{"role": "user", "content": "Say something about benchmarks."}]}
    headers = {"anthropic-version": "2023-06-01"}
    if token:
        headers["x-api-key"] = token
    return _request_bytes(port, "/v1/messages", body, headers)


def openai_request(port: int, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": "fake-model", "max_tokens": 1024, "stream": stream,
                            "messages": [{"role": "user", "content": "Say something about benchmarks."}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return _request_bytes(port, "/v1/chat/completions", body, {})


@dataclass
class Sample:
    total: list[float]
    ttfb: list[float]
    errors: int
    wall: float
    cpu_s: float


async def _run_load(port: int, data: bytes, n: int, concurrency: int, ok_tail: bytes, warmup: int,
                    probe: Callable[[], float] | None = None, stagger_s: float = 0.0) -> Sample:
    """``n`` requests over ``concurrency`` keep-alive connections after ``warmup`` unmeasured ones;
    ``probe`` (the gateway's CPU seconds) is read right before and after the measured part.
    ``stagger_s``: connection i starts i * stagger_s / concurrency later, so paced streams do not
    all tick at the same instant (real sessions don't; in step, one wake-up would serve all)."""
    conns = [await _connect(port) for _ in range(concurrency)]
    total: list[float] = []
    ttfb: list[float] = []
    errors = 0

    async def worker(conn: _Conn, count: int, record: bool, delay: float = 0.0) -> None:
        nonlocal errors
        if delay:
            await asyncio.sleep(delay)
        for _ in range(count):
            try:
                t, f, status, tail = await conn.request(data)
            except (ConnectionError, httptools.HttpParserError):
                errors += 1
                return
            if status != 200 or ok_tail not in tail:
                errors += 1
            if record:
                total.append(t)
                ttfb.append(f)

    offsets = [i * stagger_s / concurrency for i in range(concurrency)]
    await asyncio.gather(*(worker(c, max(1, warmup // concurrency), False, d) for c, d in zip(conns, offsets, strict=False)))
    cpu0 = probe() if probe else 0.0
    t0 = time.perf_counter()
    per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(worker(c, k, True, d) for c, k, d in zip(conns, per, offsets, strict=False)))
    wall = time.perf_counter() - t0
    cpu = (probe() - cpu0) if probe else 0.0
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return Sample(total, ttfb, errors, wall, cpu)


def pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# --------------------------------------------------------------------------- the gateway process


class Gateway:
    def __init__(self, kind: str, upstream_port: int, home: Path, backend_extra: str = "",
                 repo: Path = REPO, extra_args: Sequence[str] = ()) -> None:
        base_url = f"http://127.0.0.1:{upstream_port}" + ("/v1" if kind == "openai" else "")
        home.mkdir(parents=True, exist_ok=True)
        cfg = home / "bench-config.toml"
        # bedrock: signed with SigV4 on every request (static keys from the environment)
        auth = 'auth = "aws"\nregion = "us-east-1"' if kind == "bedrock" else 'auth = "none"'
        cfg.write_text(
            "[gateway]\nport = 0\n\n[[backends]]\n"
            f'id = "up"\nkind = "{kind}"\nbase_url = "{base_url}"\n{auth}\nmodels = ["fake-model"]\n{backend_extra}\n'
            '[active]\nbackend = "up"\nmodel = "fake-model"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AWS_"))}
        env |= {"PATCHBAY_HOME": str(home), "PATCHBAY_TOKEN": TOKEN}
        if kind == "bedrock":
            env |= {"AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                    "AWS_CONFIG_FILE": str(home / "no-aws-config"), "AWS_EC2_METADATA_DISABLED": "true"}
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--config", str(cfg), "--port", "0", "--quiet", *extra_args],
            cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.url = ""
        ready = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = LISTENING_RE.search(line)
                if m and not self.url:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30) or not self.url:
            self.stop()
            raise SystemExit("The gateway did not start; its stderr:\n" + "".join(self.lines)[-4000:])
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.ps = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        """CPU seconds the gateway has used, all threads. On Linux from each thread's
        ``schedstat`` (nanoseconds; psutil's user + sys ticks at 10 ms, too coarse for a few
        hundred requests); elsewhere psutil's user + system."""
        total = 0
        try:  # with `serve --workers N`: the supervisor and its workers
            pids = [self.proc.pid, *(c.pid for c in self.ps.children(recursive=True))]
            for pid in pids:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                        total += int(f.read().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError, psutil.Error):
            t = self.ps.cpu_times()
            return t.user + t.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _first_served(gw: Gateway) -> float:
    """Seconds from spawning the gateway to its first successful 200."""
    data = anthropic_request(gw.port, False, TOKEN)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        try:
            conn = await _connect(gw.port)
            _, _, status, _ = await conn.request(data)
            assert conn.transport is not None
            conn.transport.close()
            if status == 200:
                return time.perf_counter() - gw.t_spawn
        except (ConnectionError, OSError):
            pass
        await asyncio.sleep(0.005)
    raise SystemExit("The gateway never answered 200 to a first request.")


# --------------------------------------------------------------------------- one backend kind


@dataclass
class Row:
    kind: str
    load: str
    c: int
    n: int
    direct_p50: float
    gw_p50: float
    add_p50: float
    add_p99: float
    add_ttfb_p50: float
    add_ttfb_p99: float
    cpu_ms: float
    errors: int

    def verdict(self) -> str:
        checks = []
        if self.c == 1:
            checks.append(("TTFB", self.add_ttfb_p50 <= TARGET_TTFB_MS, f"+TTFB≤{TARGET_TTFB_MS:g}"))
        if self.load == "stream":
            checks.append(("CPU", self.cpu_ms <= TARGET_CPU_B2B_MS, f"CPU≤{TARGET_CPU_B2B_MS:g}"))
        if self.load == "paced":
            checks.append(("CPU", self.cpu_ms <= TARGET_CPU_PACED_MS, f"CPU≤{TARGET_CPU_PACED_MS:g}"))
        if self.errors:
            checks.append(("errors", False, "no errors"))
        return "  ".join(f"{label} {'ok' if ok else 'MISS'}" for _, ok, label in checks)


async def bench_kind(kind: str, quick: bool, home: Path) -> tuple[list[Row], float, float, float]:
    up = Upstream(kind)
    try:
        gw = Gateway(kind, up.port, home / kind)
        try:
            start_s = await _first_served(gw)
            rows: list[Row] = []
            for load in LOADS:
                up.phase(load)
                stream = load != "non-stream"
                direct_req = openai_request(up.port, stream) if kind == "openai" else \
                    anthropic_request(up.port, stream, None)
                # a Bedrock stream's last frame carries message_stop in base64
                direct_tail = {"openai": b"[DONE]", "bedrock": BEDROCK_STOP}.get(kind, b"message_stop") if stream \
                    else b"}"
                gw_req = anthropic_request(gw.port, stream, TOKEN)
                gw_tail = b"message_stop" if stream else b"}"
                for c in (1, 10):
                    n = COUNTS[(load, c)][1 if quick else 0]
                    warm = 2 * c if load == "paced" else max(20, 2 * c)
                    stagger = PACE_S if load == "paced" else 0.0
                    direct = await _run_load(up.port, direct_req, n, c, direct_tail, warm, stagger_s=stagger)
                    via = await _run_load(gw.port, gw_req, n, c, gw_tail, warm, probe=gw.cpu_s, stagger_s=stagger)
                    cpu_ms = via.cpu_s / n * 1000
                    row = Row(
                        kind, load, c, n,
                        pct(direct.total, .5) * 1e3, pct(via.total, .5) * 1e3,
                        (pct(via.total, .5) - pct(direct.total, .5)) * 1e3,
                        (pct(via.total, .99) - pct(direct.total, .99)) * 1e3,
                        (pct(via.ttfb, .5) - pct(direct.ttfb, .5)) * 1e3,
                        (pct(via.ttfb, .99) - pct(direct.ttfb, .99)) * 1e3,
                        cpu_ms, direct.errors + via.errors,
                    )
                    rows.append(row)
                    print_row(row)
            rss = gw.rss_mb()
            cpu0 = gw.cpu_s()
            await asyncio.sleep(IDLE_S)
            idle = (gw.cpu_s() - cpu0) / IDLE_S * 1000
        finally:
            gw.stop()
    finally:
        up.stop()
    return rows, start_s, rss, idle


HEADER = (f"{'backend':<10}{'load':<11}{'c':>3}{'n':>5}{'direct p50':>11}{'gw p50':>9}{'+lat p50':>10}"
          f"{'+lat p99':>10}{'+TTFB p50':>11}{'+TTFB p99':>11}{'CPU ms/req':>12}{'err':>5}  targets")


def print_row(r: Row) -> None:
    print(f"{r.kind:<10}{r.load:<11}{r.c:>3}{r.n:>5}{r.direct_p50:>11.2f}{r.gw_p50:>9.2f}{r.add_p50:>10.2f}"
          f"{r.add_p99:>10.2f}{r.add_ttfb_p50:>11.2f}{r.add_ttfb_p99:>11.2f}{r.cpu_ms:>12.2f}{r.errors:>5}  "
          f"{r.verdict()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Measure what the Patchbay gateway adds over its upstream.")
    ap.add_argument("--quick", action="store_true", help="smaller samples (about 30 s)")
    ap.add_argument("--kinds", default="openai,anthropic", help="backend kinds to run: openai, anthropic, bedrock (default: the first two)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.run

    print(f"Patchbay gateway bench: {CHUNKS}-chunk answers, paced = {PACE_S * 1000:g} ms a chunk, "
          f"{psutil.cpu_count()} CPUs, python {sys.version.split()[0]}. Times in ms.")
    print(HEADER)
    results: dict[str, Any] = {"rows": [], "start_s": {}, "rss_mb": {}, "idle_cpu_ms_per_s": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="patchbay-bench-") as tmp:
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            rows, start_s, rss, idle = runner(bench_kind(kind, args.quick, Path(tmp)))
            results["rows"] += [r.__dict__ for r in rows]
            results["start_s"][kind] = start_s
            results["rss_mb"][kind] = rss
            results["idle_cpu_ms_per_s"][kind] = idle
    print()
    for kind, s in results["start_s"].items():
        print(f"{kind:<10} start to first served request {s:6.3f} s   "
              f"(target ≤ {TARGET_START_S:g} s: {'ok' if s <= TARGET_START_S else 'MISS'})")
    for kind, m in results["rss_mb"].items():
        print(f"{kind:<10} gateway RSS after the runs    {m:6.1f} MB  "
              f"(target ≤ {TARGET_RSS_MB:g} MB: {'ok' if m <= TARGET_RSS_MB else 'MISS'})")
    for kind, ms in results["idle_cpu_ms_per_s"].items():
        print(f"{kind:<10} gateway CPU when idle         {ms:6.2f} ms/s (after the runs, over {IDLE_S:g} s)")
    print(f"\nbench took {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
