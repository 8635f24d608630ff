"""The gateway left running without a window: what Quit → "Keep serving in the background" starts.

The desktop app stops its own gateway, then starts ``patchbay serve`` on the same port with the same
config and token, in its own session (it outlives the app and its terminal). Its process id is kept in
``background-gateway.pid`` in the data folder, so the next desktop start ends it and takes the port back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.paths import Paths

PID_FILE = "background-gateway.pid"


def pid_file(paths: Paths) -> Path:
    return paths.data_dir / PID_FILE


def serve_command(config_path: Path, port: int) -> list[str]:
    """The command line of ``patchbay serve`` for this installation (a checkout or a frozen bundle)."""
    if getattr(sys, "frozen", False):
        head = [sys.executable]
    else:
        head = [sys.executable, "-m", "app"]
    return head + ["serve", "--config", str(config_path), "--port", str(port), "--quiet"]


def start(paths: Paths, config_path: Path, port: int, token: str, *, wait_s: float = 15.0) -> int:
    """Start the headless gateway on ``port``; returns its pid once it answers /health.

    The token goes in the child's environment (readable by this user only), so Claude Code's stored
    token keeps working even where the keychain would need unlocking. Raises RuntimeError with a
    sentence when it does not come up."""
    env = dict(os.environ, PATCHBAY_TOKEN=token)
    log = paths.log_dir / "background-gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(serve_command(config_path, port), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, start_new_session=True, close_fds=True)
    pid_file(paths).write_text(str(proc.pid), encoding="utf-8")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file(paths).unlink(missing_ok=True)
            raise RuntimeError(f"The background gateway did not start (exit {proc.returncode}); see {log}.")
        if _answers(port):
            return proc.pid
        time.sleep(0.1)
    return proc.pid


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def running_pid(paths: Paths) -> int | None:
    """The pid of a background gateway this app started that still runs, else None."""
    try:
        pid = int(pid_file(paths).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        if "serve" in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
            return pid
    except (psutil.Error, OSError):
        pass
    pid_file(paths).unlink(missing_ok=True)
    return None


def stop(paths: Paths, *, wait_s: float = 12.0) -> bool:
    """End the background gateway (it finishes requests in flight first). True when one was running."""
    pid = running_pid(paths)
    if pid is None:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        os.kill(pid, signal.SIGTERM)
        proc.wait(wait_s)
    except psutil.TimeoutExpired:
        proc.kill()
    except (psutil.Error, OSError):
        pass
    pid_file(paths).unlink(missing_ok=True)
    return True
