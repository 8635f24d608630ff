"""A real, throwaway PostgreSQL server for the tests (no mock of the database anywhere).

``PgServer.start()`` runs ``initdb`` into a temporary directory (as the ``postgres`` user when the
tests run as root: PostgreSQL refuses to run as root), starts it on a free 127.0.0.1 port with
fsync off (a test cluster, thrown away afterwards), and ``stop()`` kills it (``-m immediate``).
``create_db()`` makes a fresh database, cloned from a migrated template when one is given, so a
test gets an empty ledger in a few milliseconds. ``scripts/test`` installs Debian's
``postgresql`` package when the binaries are missing.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def pg_bindir() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(cand, "initdb")):
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed: run ./scripts/test (it installs Debian's postgresql "
                               "package) or `apt-get install -y postgresql`.")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="patchbay-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count(1)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60, cwd=self.root)

    def start(self) -> PgServer:
        if self._as_root and os.stat("/dev").st_mode & 0o005 != 0o005:
            raise RuntimeError(f"/dev is mode {os.stat('/dev').st_mode & 0o777:o} on this machine, so the postgres user "
                               "cannot open /dev/null and initdb fails. Something made it private (a test that "
                               "tightened a file's parent folder?): `chmod 755 /dev` puts it back.")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=200 -c dynamic_shared_memory_type=sysv")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        """Kill the server (what a crash or a pulled cable looks like to the gateway)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def restart(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=200 -c dynamic_shared_memory_type=sysv")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, template: str | None = None) -> str:
        """A new database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)
