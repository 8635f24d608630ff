"""``patchbay serve``: the gateway headless, until SIGINT or SIGTERM (SIGHUP reloads the config)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from app.cli.common import config_path, setup_logging

if TYPE_CHECKING:
    from app.core import Engine


def cmd_serve(args: argparse.Namespace) -> int:
    from app.core import Engine, StartError, finished_line
    from app.events import RequestFinished

    if args.workers != 1:  # a supervisor of N worker processes (app/cli/serve_workers.py)
        from app.cli.serve_workers import run

        return run(args, config_path(args), _drain_s())
    try:
        engine = Engine(config_path(args), host=args.host, port=args.port)
    except StartError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    setup_logging(engine.paths.log_dir, verbose=False)
    engine.runtime.drain_s = _drain_s()
    if not args.quiet:
        def show(ev: object) -> None:
            if type(ev) is RequestFinished:
                print(finished_line(ev), file=sys.stderr, flush=True)

        engine.hub.add(show)
    try:
        engine.start()
    except StartError as exc:
        engine.ledger.close()
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    from app.cli.serve_workers import announce_ready

    if announce_ready():  # a worker of `serve --workers N`: its supervisor prints the listening line
        print(f"patchbay: worker {os.getpid()} listening ({engine.instance})", file=sys.stderr, flush=True)
    else:
        _banner(engine)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, f: _reload(engine))
    while not stop.wait(2.0):
        if not engine.running:
            print("patchbay: the gateway stopped unexpectedly; see the log in " f"{engine.paths.log_dir}",
                  file=sys.stderr)
            engine.ledger.close()
            return 1
    print("patchbay: stopping (finishing requests in flight)...", file=sys.stderr, flush=True)
    engine.stop()
    return 0


def _banner(engine: Engine) -> None:
    active = engine.config.active
    if engine.runtime.exposed:
        print(f"Patchbay gateway listening on http://{engine.runtime.listen_address} (reachable from other "
              f"machines; on this one: {engine.url})", file=sys.stderr, flush=True)
        print("  warning: not on loopback, so every request (also to `client` backends), /v1/models and /health "
              "need the gateway token; host names clients use must be listed in allowed_hosts ([gateway])",
              file=sys.stderr, flush=True)
    else:
        print(f"Patchbay gateway listening on {engine.url}", file=sys.stderr, flush=True)
    print(f"  config: {engine.config_path}\n  active: {active.backend}"
          f"{' / ' + active.model if active.model else ''}\n  run `patchbay env` for the lines that point "
          "Claude Code here", file=sys.stderr, flush=True)
    if engine.token_source == "file":
        print(f"  note: no OS keychain here, so the gateway token is kept in {engine.paths.token_file} "
              "(readable only by you). Set PATCHBAY_TOKEN to choose it yourself.", file=sys.stderr, flush=True)


def _drain_s() -> float:
    """Seconds requests in flight may go on after SIGTERM: PATCHBAY_DRAIN_S, else 8 (Cloud Run kills
    10 s after SIGTERM by default, Kubernetes 30 s: set it a little below your platform's grace)."""
    try:
        return max(0.0, float(os.environ.get("PATCHBAY_DRAIN_S", "8")))
    except ValueError:
        return 8.0


def _reload(engine: Engine) -> None:
    from app.core import StartError

    try:
        engine.reload()
        print("patchbay: config reloaded", file=sys.stderr, flush=True)
    except StartError as exc:
        print(f"patchbay: config not reloaded: {exc}", file=sys.stderr, flush=True)
