"""Start-up against bad disks and broken configs, and the modes of the files Patchbay writes.

Read-only and full disks are made for real where the test runs as root (a tmpfs mounted
read-only, or one megabyte large); elsewhere a read-only folder is made with chmod.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.catalog.prices import PriceBook
from app.config import ConfigError, parse_config
from app.ledger.schema import LedgerError, open_db
from app.ledger.writer import Ledger
from app.logs.file import PrivateLogHandler
from app.paths import PathError, Paths

BACKEND = '[[backends]]\nid = "a"\nkind = "anthropic"\nbase_url = "http://127.0.0.1:9"\nauth = "none"\n'
PRICES = PriceBook.load(parse_config(BACKEND))
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m", ro: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


# --------------------------------------------------------------------------- 5: owner-only files


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_data_and_log_folders_ledger_and_log_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        paths = Paths(tmp_path / "cfg", tmp_path / "data", tmp_path / "logs")
        (tmp_path / "data").mkdir(mode=0o755)  # an older Patchbay's folder
        paths.ensure()
        assert _mode(paths.data_dir) == 0o700 and _mode(paths.log_dir) == 0o700
        led = Ledger(paths.ledger_file, prices=PRICES)
        led.start()
        led.close()
        for p in paths.data_dir.iterdir():
            assert _mode(p) & 0o077 == 0, (p.name, oct(_mode(p)))
        h = PrivateLogHandler(paths.log_dir / "patchbay.log", maxBytes=100, backupCount=2, encoding="utf-8")
        rec = logging.LogRecord("x", logging.INFO, __file__, 1, "line %s", ("x" * 80,), None)
        for _ in range(3):  # rotates: the new files too
            h.emit(rec)
        h.close()
        logs = list(paths.log_dir.iterdir())
        assert len(logs) >= 2 and all(_mode(p) == 0o600 for p in logs)
    finally:
        os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_an_existing_ledger_from_an_older_patchbay_is_made_private(tmp_path):
    path = tmp_path / "usage.sqlite3"
    conn, _ = open_db(path)
    conn.close()
    os.chmod(path, 0o644)
    conn, _ = open_db(path)
    conn.close()
    assert _mode(path) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_folder_the_user_named_for_a_log_or_ledger_keeps_its_mode(tmp_path):
    """Only Patchbay's own data and log folders are tightened: a log at /dev/full once made /dev 0700."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    PrivateLogHandler(shared / "patchbay.log").close()
    conn, _ = open_db(shared / "usage.sqlite3")
    conn.close()
    assert _mode(shared) == 0o755
    assert _mode(shared / "patchbay.log") == 0o600 and _mode(shared / "usage.sqlite3") == 0o600
    fresh = tmp_path / "fresh" / "logs"
    PrivateLogHandler(fresh / "patchbay.log").close()
    assert _mode(fresh) == 0o700  # a folder Patchbay creates is owner-only from the start


def test_a_full_disk_gives_one_line_on_stderr_not_a_traceback_per_log_line(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    # the log file is a link to /dev/full inside a folder of the test's own: the handler makes its
    # folder owner-only, and /dev itself must never be that folder (other users, PostgreSQL's
    # server among them, could no longer open /dev/null)
    link = tmp_path / "logs" / "patchbay.log"
    link.parent.mkdir()
    link.symlink_to("/dev/full")
    code = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from app.logs.file import PrivateLogHandler\n"
        f"h = PrivateLogHandler(Path({str(link)!r}))\n"
        "log = logging.getLogger('t'); log.addHandler(h); log.setLevel(logging.INFO)\n"
        "for i in range(5): log.info('line %d', i)\n"
    )
    dev_mode = _mode(Path("/dev"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert r.returncode == 0
    assert "Traceback" not in r.stderr
    assert _mode(Path("/dev")) == dev_mode  # the log's folder is the system's, never tightened
    assert r.stderr.count("cannot write the log file") == 1


# --------------------------------------------------------------------------- 18: bad disks at start


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "usage.sqlite3"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE photos(id INTEGER)")
    c.commit()
    c.close()
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="not a Patchbay ledger"):
        open_db(path)
    assert path.read_bytes() == before  # never switched to WAL (header bytes 18-19 would become 2)
    assert not (tmp_path / "usage.sqlite3-wal").exists()


def test_a_read_only_ledger_is_refused_at_the_start_with_the_right_advice(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "usage.sqlite3"
    conn, _ = open_db(path)
    conn.close()
    if ROOT:
        ctx: contextlib.AbstractContextManager[object] = _bind_ro(folder)
    else:
        os.chmod(path, 0o444)
        os.chmod(folder, 0o555)
        ctx = contextlib.nullcontext()
    try:
        with ctx:
            with pytest.raises(LedgerError) as info:
                Ledger(path, prices=PRICES).start()
    finally:
        os.chmod(folder, 0o755)
    msg = str(info.value)
    assert "read-only" in msg and "damaged" not in msg and "Move it away" not in msg and "keep it" in msg


@contextlib.contextmanager
def _bind_ro(folder: Path) -> Iterator[None]:
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here ({r.stderr.decode().strip()})")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("the read-only bind mount is still writable")
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_at_the_start_is_diagnosed_as_full(tmp_path):
    if not ROOT:
        pytest.skip("making a full disk needs a tmpfs mount (root)")
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        path = disk / "usage.sqlite3"
        conn, _ = open_db(path)
        conn.close()
        with contextlib.suppress(OSError):
            with open(disk / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        with pytest.raises(LedgerError) as info:
            Ledger(path, prices=PRICES).start()
        msg = str(info.value)
        assert ("full" in msg or "could not be read or written" in msg) and "damaged" not in msg
        assert "Move it away" not in msg


def test_an_unwritable_home_is_a_sentence_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    paths = Paths(blocker / "cfg", blocker / "data", blocker / "logs")
    with pytest.raises(PathError, match="cannot create its folder"):
        paths.ensure()


def test_the_engine_says_so_for_an_unwritable_home(tmp_path, monkeypatch):
    from app.core import Engine, StartError

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("PATCHBAY_HOME", str(blocker / "home"))
    with pytest.raises(StartError, match="PATCHBAY_HOME"):
        Engine()


# --------------------------------------------------------------------------- 19: ranges


@pytest.mark.parametrize("line,needle", [
    ("ping_interval_s = 0", "ping_interval_s is 0"),
    ("ping_interval_s = -1", "ping_interval_s is -1"),
    ("upstream_timeout_s = 0", "upstream_timeout_s is 0"),
    ("max_body_mb = 0", "max_body_mb is 0"),
    ("max_body_mb = -5", "max_body_mb is -5"),
    ("upstream_timeout_s = nan", "upstream_timeout_s is nan"),
    ("ping_interval_s = inf", "ping_interval_s is inf"),
])
def test_values_that_break_the_gateway_are_refused_with_their_line(line, needle):
    text = f"[gateway]\nport = 8787\n{line}\n\n{BACKEND}"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    msg = str(info.value)
    assert needle in msg and "line 3" in msg


def test_nan_anywhere_is_refused():
    with pytest.raises(ConfigError, match="line 6: backends.token_ttl_s is nan"):
        parse_config(BACKEND + "token_ttl_s = nan\n")


def test_a_value_nested_5000_deep_is_a_sentence():
    with pytest.raises(ConfigError, match="nested"):
        parse_config(BACKEND + "models = " + "[" * 5000 + "]" * 5000 + "\n")
