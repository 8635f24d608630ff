"""``patchbay serve --workers 2`` on loopback (app/cli/serve_workers.py): one port, two processes, one
PostgreSQL ledger. Requests spread over both workers (each an instance of its own in the ledger), a
person's budget holds across them as across two instances, ``/metrics`` from either worker counts
every worker's requests, SIGTERM stops both cleanly, and a SQLite ledger is refused with a sentence."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import psycopg
import pytest

from tests.burst import priced_burst, stream_until_refused
from tests.e2e.conftest import REPO, spawn_gateway
from tests.fakes.upstreams import FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SO_REUSEPORT and SIGTERM are POSIX")]

LIMIT = 3.0
BURST = priced_burst("Explain what this function does and how to test it. ", 500)
BODY, COST = BURST.body, BURST.cost
ALICE, BOB = "alice@corp.example", "bob@corp.example"
TEAM = f'''
[team]
identity = ["keys"]

[[budgets]]
scope = "each-user"
period = "day"
limit_usd = {LIMIT}
'''


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = BURST.upstream()
    yield up
    up.stop()


def _requests_200(metrics: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(r'^patchbay_requests_total\{[^}]*status="200"[^}]*\} (\S+)$',
                                                      metrics, re.M))


def test_two_workers_share_one_port_one_budget_and_one_set_of_metrics(tmp_path: Path, pg_server: object,
                                                                      upstream: FakeUpstream) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    gw = spawn_gateway(serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=TEAM),
                       tmp_path / "home", extra_args=["--workers", "2", "--quiet"], timeout_s=60)
    try:
        assert "2 worker processes" in gw.log()
        keys = {u: gw.cli("team", "key", "create", u, "--config", str(gw.config_path)).stdout.strip()
                for u in (ALICE, BOB)}
        for _ in range(12):  # a new connection each: the kernel spreads them over the workers' sockets
            bob = anthropic.Anthropic(base_url=gw.url, api_key=keys[BOB], max_retries=0)
            with bob.messages.stream(**BODY) as s:  # type: ignore[arg-type]
                s.get_final_message()
            bob.close()
        served, refusals = stream_until_refused([gw.url], 6, keys[ALICE], BODY)
        assert refusals == ["billing_error"] * 6 and served[0] > 0
        with psycopg.connect(url) as conn:
            deadline = time.monotonic() + 10
            while True:  # the writers' last batches
                rows = conn.execute("SELECT count(*) FROM requests WHERE status = 200").fetchone()[0]
                metrics = [httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {gw.token}"}).text
                           for _ in range(6)]  # six connections: both workers answer some
                if all(_requests_200(m) == rows for m in metrics) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            spent = dict(conn.execute("SELECT user_id, sum(cost_usd) FROM requests WHERE status = 200 "
                                      "GROUP BY user_id").fetchall())
            bob_instances = conn.execute("SELECT count(DISTINCT instance) FROM requests WHERE user_id = %s",
                                         (BOB,)).fetchone()[0]
        assert bob_instances == 2  # both workers served, each under its own instance name
        assert rows >= 12 + served[0]
        assert [_requests_200(m) for m in metrics] == [rows] * 6  # whichever worker answers counts them all
        assert LIMIT - 2 * COST <= spent[ALICE] <= LIMIT + COST, f"alice spent ${spent[ALICE]:.2f} of ${LIMIT:.2f}"
        assert spent[BOB] == pytest.approx(12 * COST)
    finally:
        gw.stop()  # SIGTERM to the supervisor: it stops both workers, which finish and flush
    assert gw.proc.returncode == 0, gw.log()
    assert gw.log().count("listening (") == 2  # each worker said so once
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM budget_holds").fetchone() == (0,)  # every hold and lease gone


def test_workers_refuse_a_sqlite_ledger(tmp_path: Path, upstream: FakeUpstream) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg = home / "config.toml"
    cfg.write_text(serve_config(upstream.url, port0=False, prices=OPUS_PRICES))
    done = subprocess.run([sys.executable, "-m", "app", "serve", "--config", str(cfg), "--port", "0", "--workers", "2"],
                          cwd=REPO, env={**os.environ, "PATCHBAY_HOME": str(home)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "--workers needs the PostgreSQL ledger ([ledger] url)" in done.stderr


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, pg_server: object,
                                                     upstream: FakeUpstream) -> None:
    """SIGKILL leaves the supervisor no chance to stop them: the workers go on their own (Linux's
    parent-death signal), so no orphan keeps serving on the port."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    url = pg_server.create_db()  # type: ignore[attr-defined]
    gw = spawn_gateway(serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=TEAM),
                       tmp_path / "home", extra_args=["--workers", "2", "--quiet"], timeout_s=60)
    m = re.search(r"2 worker processes: (\d+), (\d+)", gw.log())
    assert m is not None, gw.log()
    pids = [int(m.group(1)), int(m.group(2))]
    gw.proc.kill()
    gw.proc.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), gw.log()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited (its parent is gone, init reaps it)
    except FileNotFoundError:
        return False
