"""Desktop-app responsiveness: the GUI thread under a token flood, and what the GUI costs the gateway.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python bench/gui_bench.py
    .venv/bin/python bench/gui_bench.py --quick           # offscreen when no DISPLAY, about 40 s

What it does (each part in its own process, so no two share a GIL):

- **upstream**: a small paced SSE server (here, not tests/fakes: it stamps every
  ``text_delta`` with the wall-clock time it was written, so each chunk's latency is exact).
  ``--streams`` concurrent streams (default 20), ``--rate`` chunks/s each (default 100).
- **load**: this process — raw asyncio connections, one per stream, a session id each; every
  received chunk's latency = arrival time − the time stamped in it.
- three runs of the same load: **direct** to the upstream (the floor), through a **headless**
  gateway (``Engine(gui=False)``, no Qt), and through the gateway **inside the running app**
  (``app.gui.App``: window shown on the Dashboard, the busiest session's stream on screen, the
  bridge draining events at 25 Hz). The app process runs a 1 ms ``QTimer`` heartbeat: the longest
  gap between two beats is the GUI thread's longest stall.
- **start-up**: ``run_gui`` in a fresh process; time from ``Popen`` to the main window's first
  expose, and resident memory after 5 s idle (Dashboard shown, engine running), then after the
  Spend page was opened (pyqtgraph loaded).

Targets (issue 4): stall ≤ 50 ms; in-app added latency within 10 % of headless; start ≤ 1.5 s;
idle RSS ≤ 180 MB.

Measured on the shared 2-core dev box under Xvfb (two full runs, 2 rounds × 12 s each; upstream,
client, app and X server all on those 2 cores, so the tails wobble):

| | run 1 | run 2 |
|---|---|---|
| GUI longest stall (1 ms heartbeat) | 37.5 ms (p99 gap 5.8) | 24.1 ms (p99 gap 5.9) |
| chunk latency p50 direct / headless / app | 0.52 / 0.60 / 0.61 ms | 0.42 / 0.56 / 0.57 ms |
| chunk latency p95 direct / headless / app | 1.20 / 2.09 / 2.08 ms | 1.24 / 1.33 / 2.20 ms |
| chunk latency p99 direct / headless / app | 1.57 / 2.92 / 3.75 ms | 1.62 / 2.11 / 4.23 ms |
| start to visible window (median of 3) | 0.84 s | 0.79 s |
| RSS idle / after opening Spend | 124 / 167 MB | 126 / 169 MB |

The median added latency in the app is within 10 % of headless; at p95/p99 the app adds up to
about 1 ms / 2 ms more than headless (the GUI thread's Python work takes the GIL from the gateway
thread for a few ms at a time). Before the tables moved to C++ item models the stall was 75–150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# --------------------------------------------------------------------------- the paced upstream


def _sse(event: str, data: dict[str, Any]) -> bytes:
    body = (f"event: {event}\ndata: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()
    return f"{len(body):x}\r\n".encode() + body + b"\r\n"


async def _serve_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: int,
                      interval: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if m:
                await reader.readexactly(int(m.group(1)))
            if not head.startswith(b"POST"):
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            usage = {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                     "output_tokens": 1}
            writer.write(_sse("message_start", {"type": "message_start", "message": {
                "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench-model", "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": usage}}))
            writer.write(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}}))
            t0 = loop.time()
            for k in range(chunks):
                delay = t0 + k * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # an absolute schedule: no drift over the stream
                writer.write(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "text_delta", "text": f"{time.time():.6f} token "}}))
            writer.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            writer.write(_sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                "stop_sequence": None}, "usage": {"output_tokens": chunks}}))
            writer.write(_sse("message_stop", {"type": "message_stop"}))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _upstream_main(conn: Any, chunks: int, interval: float) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _serve_conn(r, w, chunks, interval), "127.0.0.1", 0,
                                            backlog=512)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"
        server.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- the load


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)  # per chunk: arrival − stamped send time
    ttft_ms: list[float] = field(default_factory=list)
    streams: int = 0
    chunks: int = 0
    errors: int = 0
    seconds: float = 0.0


_STAMP = re.compile(rb'"text":"(\d+\.\d+) token "')


async def _one_stream(port: int, path: str, headers: dict[str, str], res: LoadResult) -> None:
    body = json.dumps({"model": "bench-model", "max_tokens": 4096, "stream": True,
                       "messages": [{"role": "user", "content": "go"}]}).encode()
    head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nanthropic-version: 2023-06-01\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "connection: close\r\n\r\n").encode()
    t_send = time.time()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        res.errors += 1
        return
    writer.write(head + body)
    buf = b""
    first = True
    ok = False
    try:
        while True:
            data = await reader.read(65536)
            now = time.time()
            if not data:
                break
            buf += data
            last_end = 0
            for m in _STAMP.finditer(buf):
                sent = float(m.group(1))
                res.latencies_ms.append((now - sent) * 1000.0)
                res.chunks += 1
                if first:
                    res.ttft_ms.append((now - t_send) * 1000.0)
                    first = False
                last_end = m.end()
            if b"message_stop" in buf:
                ok = True
                break
            buf = buf[last_end:] if last_end else buf[-256:]
    finally:
        writer.close()
    if ok:
        res.streams += 1
    else:
        res.errors += 1


async def run_load(port: int, path: str, token: str | None, streams: int, seconds: float) -> LoadResult:
    res = LoadResult()
    deadline = time.monotonic() + seconds

    async def worker(i: int) -> None:
        await asyncio.sleep(i * 0.01)  # stagger the starts a little
        headers = {"x-claude-code-session-id": f"bench-{i:02d}", "user-agent": "gui-bench"}
        if token:
            headers["x-api-key"] = token
        while time.monotonic() < deadline:
            await _one_stream(port, path, headers, res)

    t0 = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(streams)))
    res.seconds = time.monotonic() - t0
    return res


def pct(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


# --------------------------------------------------------------------------- children


def _child_headless(config: str, deltas: bool = False) -> None:
    from app.core import Engine

    eng = Engine(Path(config), gui=deltas)
    eng.start()
    if deltas:  # the gateway's share of the GUI's cost: deltas published and drained, no Qt
        def drain() -> None:
            while True:
                time.sleep(0.04)
                eng.events.drain()

        threading.Thread(target=drain, daemon=True).start()
    print(json.dumps({"url": eng.url, "token": eng.gateway_token()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    eng.stop()


def _child_app(config: str) -> None:
    import qasync
    from PySide6.QtCore import QObject, Qt, QTimer, Signal

    from app.gui import App, make_application

    if os.environ.get("PB_SWITCH"):
        sys.setswitchinterval(float(os.environ["PB_SWITCH"]))
    qapp = make_application([sys.argv[0]])
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    app = App(Path(config), use_system_tray=False)
    assert app.start(), [m.text for m in app.window.messages()]
    app.window.resize(1320, 860)
    app.show_window()
    from app.gui import settle_memory

    QTimer.singleShot(300, settle_memory)  # as run_gui does once the gateway runs

    class Beat(QObject):
        command = Signal(str)

        def __init__(self) -> None:
            super().__init__()
            self.last = time.perf_counter()
            self.measuring = False
            self.gaps: list[float] = []
            self.timer = QTimer(self)
            self.timer.setTimerType(Qt.TimerType.PreciseTimer)
            self.timer.setInterval(1)
            self.timer.timeout.connect(self.beat)
            self.timer.start()
            self.command.connect(self.on_command)

        def beat(self) -> None:
            now = time.perf_counter()
            if self.measuring:
                self.gaps.append((now - self.last) * 1000.0)
            self.last = now

        def on_command(self, cmd: str) -> None:
            if cmd == "start":
                self.cpu0 = _thread_cpu()
                self.t0 = time.perf_counter()
                self.gaps = []
                app.bridge.live.max_tick_ms = 0.0
                self.last = time.perf_counter()
                self.measuring = True
            elif cmd == "stop":
                self.measuring = False
                g = self.gaps
                dash = app.window.page("dashboard")
                cpu1 = _thread_cpu()
                wall = time.perf_counter() - self.t0
                share = {name: round((cpu1.get(name, 0.0) - self.cpu0.get(name, 0.0)) / wall * 100, 1)
                         for name in cpu1}
                print(json.dumps({
                    "cpu_percent_by_thread": share,
                    "beats": len(g), "max_gap_ms": max(g) if g else None, "p99_gap_ms": pct(g, 99),
                    "p999_gap_ms": pct(g, 99.9), "gaps_over_16ms": sum(1 for x in g if x > 16.7),
                    "max_tick_ms": app.bridge.live.max_tick_ms, "dropped_deltas": app.bridge.live.dropped_deltas,
                    "stream_chars_shown": dash.stream.chars_shown, "selected": dash.selected,
                }), flush=True)
            elif cmd == "quit":
                app.quit()
                qapp.quit()

    beat = Beat()

    def read_stdin() -> None:
        for line in sys.stdin:
            beat.command.emit(line.strip())
        beat.command.emit("quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    print(json.dumps({"url": app.bridge.gateway().url, "token": app.bridge.settings.gateway_token()}), flush=True)
    with loop:
        loop.run_forever()


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by thread name (the GUI thread is "gui")."""
    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    names[threading.main_thread().native_id] = "gui"
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, "other")
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def _child_startup() -> None:
    """run_gui as a user starts it; prints when the window is first exposed, and idle memory."""
    import psutil
    from PySide6.QtCore import QEvent, QObject, QTimer

    from app.gui import make_application, run_gui

    t0 = float(os.environ["PB_T0"])
    qapp = make_application([sys.argv[0]])
    res: dict[str, Any] = {}

    def finish() -> None:
        res["rss_after_spend_mb"] = psutil.Process().memory_info().rss / 1e6
        print(json.dumps(res), flush=True)
        import signal

        os.kill(os.getpid(), signal.SIGTERM)

    def idle() -> None:
        res["rss_idle_mb"] = psutil.Process().memory_info().rss / 1e6
        w = next((w for w in qapp.topLevelWidgets() if hasattr(w, "show_page")), None)
        if w is not None:
            w.show_page("spend")
        QTimer.singleShot(1500, finish)

    class Probe(QObject):
        def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
            if ev.type() == QEvent.Type.Expose and "visible_s" not in res and getattr(obj, "isExposed", None) \
                    and obj.isExposed() and getattr(obj, "title", lambda: "")() == "Patchbay":
                res["visible_s"] = time.time() - t0
                QTimer.singleShot(5000, idle)
            return False

    probe = Probe()
    qapp.installEventFilter(probe)
    run_gui(None)


# --------------------------------------------------------------------------- orchestration


class Child:
    def __init__(self, kind: str, config: Path, env: dict[str, str]) -> None:
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--config",
                                   str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.p.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the {kind} child did not start")
        self.ready = json.loads(line)

    def send(self, cmd: str) -> None:
        self.p.stdin.write(cmd + "\n")  # type: ignore[union-attr]
        self.p.stdin.flush()  # type: ignore[union-attr]

    def read(self) -> dict[str, Any]:
        return json.loads(self.p.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        try:
            self.send("quit")
            self.p.wait(20)
        except Exception:
            self.p.kill()


def summarize(name: str, r: LoadResult) -> dict[str, Any]:
    return {"mode": name, "streams_done": r.streams, "chunks": r.chunks, "errors": r.errors,
            "chunks_per_s": r.chunks / r.seconds if r.seconds else 0.0,
            "lat_p50_ms": pct(r.latencies_ms, 50), "lat_p95_ms": pct(r.latencies_ms, 95),
            "lat_p99_ms": pct(r.latencies_ms, 99), "lat_max_ms": max(r.latencies_ms, default=float("nan")),
            "ttft_p50_ms": pct(r.ttft_ms, 50), "ttft_p95_ms": pct(r.ttft_ms, 95)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--rate", type=float, default=100.0, help="chunks per second per stream")
    ap.add_argument("--chunks", type=int, default=200, help="chunks per stream (a new stream follows at once)")
    ap.add_argument("--seconds", type=float, default=12.0, help="load duration per run")
    ap.add_argument("--rounds", type=int, default=2, help="headless/app runs, alternating")
    ap.add_argument("--startups", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="6 s runs, 1 round, 2 start-ups")
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--child", choices=["headless", "deltas", "app", "startup"], help=argparse.SUPPRESS)
    ap.add_argument("--with-deltas", action="store_true",
                    help="also run a headless gateway that publishes content deltas (the gateway's share)")
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child in ("headless", "deltas"):
        _child_headless(args.config, deltas=args.child == "deltas")
        return 0
    if args.child == "app":
        _child_app(args.config)
        return 0
    if args.child == "startup":
        _child_startup()
        return 0
    if args.quick:
        args.seconds, args.rounds, args.startups = 6.0, 1, 2

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    env = dict(os.environ)
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="patchbay-guibench-"))
    env["PATCHBAY_HOME"] = str(home)
    env.pop("PATCHBAY_TOKEN", None)

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    up = ctx.Process(target=_upstream_main, args=(child, args.chunks, 1.0 / args.rate), daemon=True)
    up.start()
    port = parent.recv()
    config = home / "config.toml"
    config.write_text(f"""[gateway]
port = 0

[[backends]]
id = "fake"
kind = "anthropic"
base_url = "http://127.0.0.1:{port}"
auth = "none"

[active]
backend = "fake"
""", encoding="utf-8")

    print(f"platform: {env.get('QT_QPA_PLATFORM') or 'xcb (DISPLAY=' + env.get('DISPLAY', '') + ')'}; "
          f"{args.streams} streams × {args.rate:g} chunks/s, {args.seconds:g} s a run", flush=True)
    results: dict[str, Any] = {"config": {"streams": args.streams, "rate": args.rate, "chunks": args.chunks,
                                          "seconds": args.seconds, "cpus": os.cpu_count()}, "runs": []}

    def load(p: int, path: str, token: str | None) -> LoadResult:
        return asyncio.run(run_load(p, path, token, args.streams, args.seconds))

    direct = summarize("direct", load(port, "/v1/messages", None))
    results["runs"].append(direct)
    print(json.dumps(direct), flush=True)
    gui_stats: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for kind in ("headless", "deltas", "app") if args.with_deltas else ("headless", "app"):
            c = Child(kind, config, env)
            url_port = int(c.ready["url"].rsplit(":", 1)[1])
            time.sleep(0.5)
            if kind == "app":
                c.send("start")
            r = summarize(kind, load(url_port, "/v1/messages", c.ready["token"]))
            if kind == "app":
                c.send("stop")
                g = c.read()
                gui_stats.append(g)
                r["gui"] = g
            c.close()
            results["runs"].append(r)
            print(json.dumps(r), flush=True)
    parent.send("stop")
    up.join(5)

    starts = []
    for _ in range(args.startups):
        senv = dict(env)
        shome = Path(tempfile.mkdtemp(prefix="patchbay-start-"))
        (shome / "config.toml").write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
        senv["PATCHBAY_HOME"] = str(shome)
        senv["PB_T0"] = repr(time.time())
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "startup"], env=senv,
                             capture_output=True, text=True, timeout=60)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
        if line:
            starts.append(json.loads(line))
            print(line, flush=True)
        else:
            print("start-up run failed:", out.stderr[-500:], flush=True)
    results["startup"] = starts

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results["runs"] if r["mode"] == mode)

    print("\n== summary ==")
    print(f"{'mode':<10}{'lat p50':>10}{'lat p95':>10}{'lat p99':>10}{'TTFT p50':>10}{'chunks/s':>10}")
    for mode in ("direct", "headless", "deltas", "app"):
        if not any(r["mode"] == mode for r in results["runs"]):
            continue
        print(f"{mode:<10}{med(mode, 'lat_p50_ms'):>10.2f}{med(mode, 'lat_p95_ms'):>10.2f}"
              f"{med(mode, 'lat_p99_ms'):>10.2f}{med(mode, 'ttft_p50_ms'):>10.2f}{med(mode, 'chunks_per_s'):>10.0f}")
    summary: dict[str, Any] = {}
    for q in ("p50", "p95", "p99"):
        k = f"lat_{q}_ms"
        h = med("headless", k) - med("direct", k)
        a = med("app", k) - med("direct", k)
        summary[f"added_{q}_headless_ms"] = h
        summary[f"added_{q}_app_ms"] = a
        summary[f"added_{q}_app_over_headless"] = a / h if h > 0 else float("nan")
        print(f"added latency {q}: headless {h:.2f} ms, in app {a:.2f} ms ({(a / h - 1) * 100 if h > 0 else 0:+.0f} %)")
    if gui_stats:
        summary["gui_max_stall_ms"] = max(g["max_gap_ms"] for g in gui_stats)
        summary["gui_p99_gap_ms"] = max(g["p99_gap_ms"] for g in gui_stats)
        summary["bridge_max_tick_ms"] = max(g["max_tick_ms"] for g in gui_stats)
        print(f"GUI thread: longest gap between 1 ms beats {summary['gui_max_stall_ms']:.1f} ms "
              f"(p99 {summary['gui_p99_gap_ms']:.1f} ms); longest bridge tick {summary['bridge_max_tick_ms']:.1f} ms; "
              f"deltas dropped {max(g['dropped_deltas'] for g in gui_stats)}")
    if starts:
        summary["visible_s_median"] = statistics.median(s["visible_s"] for s in starts)
        summary["rss_idle_mb_median"] = statistics.median(s["rss_idle_mb"] for s in starts)
        summary["rss_after_spend_mb_median"] = statistics.median(s["rss_after_spend_mb"] for s in starts)
        print(f"start to visible window: {summary['visible_s_median']:.2f} s (median of {len(starts)}); "
              f"idle RSS {summary['rss_idle_mb_median']:.0f} MB, after opening Spend "
              f"{summary['rss_after_spend_mb_median']:.0f} MB")
    results["summary"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
