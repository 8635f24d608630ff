"""``patchbay serve --workers N``: N gateway processes on one port, so a team gateway uses every core.

The gateway runs its event loop on one thread, and Python runs one thread at a time: one process
serves what one core can. ``--workers N`` starts N ``patchbay serve`` processes that bind the same
host and port with ``SO_REUSEPORT`` (``app/proxy/listen.py``); the kernel spreads connections over
them. This process only supervises: it reserves the port (bound, never listening, so it gets no
connection; with ``--port 0`` that is how the workers learn which port), starts the workers, waits
until each says it listens (a line on a pipe of its own), prints the one "listening" line, forwards
SIGTERM, SIGINT and SIGHUP, and stops them all if one dies (a supervisor above it, systemd or
Kubernetes, restarts the whole).

The workers share what instances share: each is an instance of its own on the PostgreSQL ledger
(its name ``<instance>/w<i>``), so budgets (admission's holds and leases), team keys and their
revocations, the ledger and the hold reaper's heartbeats hold across workers exactly as across
machines. A SQLite ledger is one file written by one process: ``--workers`` refuses it. Metrics: each
worker counts in prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, a directory
this process makes and removes), and whichever worker answers ``GET /metrics`` sums every worker's
counters and histograms, and the in-flight gauge over live workers ("livesum"); the ledger queue and
spool gauges are that worker's own.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.ledger.store import WORKER_ENV
from app.proxy.listen import REUSE_ENV, allow_reuse

READY_FD_ENV = "PATCHBAY_READY_FD"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READY_TIMEOUT_S = 60.0


def announce_ready() -> bool:
    """In a worker: tell the supervisor that this one listens (True); elsewhere nothing (False)."""
    fd = os.environ.get(READY_FD_ENV)
    if not fd:
        return False
    try:
        os.write(int(fd), f"ready {os.getpid()}\n".encode())
        os.close(int(fd))
    except (OSError, ValueError):
        pass
    return True


def _die_with_parent() -> None:
    """In the worker, before it runs (Linux): SIGTERM when the supervisor dies, even by SIGKILL, so no
    orphan keeps serving on the port."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _refusal(config_path: Path | None, workers: int) -> tuple[str | None, str, int]:
    """(why --workers cannot run, host, port) from the config the workers will load."""
    from app.config import ConfigError
    from app.config.disk import load_or_create
    from app.paths import default_paths

    path = config_path or default_paths().config_file
    try:
        config = load_or_create(path)
    except (ConfigError, OSError) as exc:
        return str(exc), "", 0
    if workers < 1:
        return "--workers needs at least 1.", "", 0
    if not hasattr(socket, "SO_REUSEPORT"):
        return "--workers needs SO_REUSEPORT, which this system does not have (run one process).", "", 0
    if not config.ledger.team.url:
        return ("--workers needs the PostgreSQL ledger ([ledger] url): the SQLite ledger is one file written by one "
                "process, so its budgets and usage cannot be shared by several. Run one process, or set [ledger] "
                "url.", "", 0)
    return None, config.gateway.host, config.gateway.port


def _reserve(host: str, port: int) -> socket.socket:
    """The port, bound with SO_REUSEPORT and never listening: the workers bind it too."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    allow_reuse(sock)
    sock.bind((host, port))
    return sock


def _wait_ready(procs: list[subprocess.Popen[bytes]], pipes: list[int]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = set(pipes)
    while waiting and time.monotonic() < deadline:
        ready, _, _ = select.select(list(waiting), [], [], 0.5)
        for fd in ready:
            data = os.read(fd, 256)
            waiting.discard(fd)
            if not data.startswith(b"ready"):
                return False  # the worker exited before it listened (its stderr said why)
        if any(p.poll() is not None for p in procs):
            return False
    return not waiting


def _stop(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def run(args: argparse.Namespace, config_path: Path | None, drain_s: float) -> int:
    """The supervisor of ``args.workers`` workers; returns the exit code."""
    why, host, port = _refusal(config_path, args.workers)
    if why is not None:
        print(f"patchbay: {why}", file=sys.stderr)
        return 2
    host = args.host or host
    port = args.port if args.port is not None else port
    try:
        reserved = _reserve(host, port)
    except OSError as exc:
        print(f"patchbay: could not listen on {host}:{port}: {exc.strerror or exc}.", file=sys.stderr)
        return 2
    port = reserved.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="patchbay-metrics-")
    cmd = [sys.executable, "-m", "app", "serve", "--host", host, "--port", str(port)]
    cmd += (["--config", str(config_path)] if config_path else []) + (["--quiet"] if args.quiet else [])
    procs: list[subprocess.Popen[bytes]] = []
    pipes: list[int] = []
    try:
        for i in range(args.workers):
            r, w = os.pipe()
            env = dict(os.environ, **{WORKER_ENV: str(i), READY_FD_ENV: str(w), REUSE_ENV: "1",
                                      MULTIPROC_ENV: metrics_dir})
            procs.append(subprocess.Popen(cmd, env=env, pass_fds=(w,), stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent))
            os.close(w)
            pipes.append(r)
        if not _wait_ready(procs, pipes):
            print("patchbay: a worker did not start (see above); stopping the others.", file=sys.stderr)
            _stop(procs, 5.0)
            return 2
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        print(f"Patchbay gateway listening on http://{shown}:{port} ({args.workers} worker processes: "
              f"{', '.join(str(p.pid) for p in procs)})", file=sys.stderr, flush=True)
        return _supervise(procs, drain_s)
    finally:
        _stop(procs, drain_s + 7.0)
        for fd in pipes:
            try:
                os.close(fd)
            except OSError:
                pass
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(procs: list[subprocess.Popen[bytes]], drain_s: float) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    def reload(signum: int, frame: object) -> None:  # every worker reads the config again
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGHUP)

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)
    while not stop.wait(0.5):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            print(f"patchbay: worker {dead[0].pid} exited ({dead[0].returncode}); stopping the others.",
                  file=sys.stderr, flush=True)
            _stop(procs, drain_s + 7.0)
            return 1
    print("patchbay: stopping the workers (finishing requests in flight)...", file=sys.stderr, flush=True)
    _stop(procs, drain_s + 7.0)
    return 0
