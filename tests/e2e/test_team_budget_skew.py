"""An instance whose clock runs 16 minutes ahead (issue 22 item 6) still sees the other instances'
holds. Two ``patchbay serve`` processes on one PostgreSQL; the second runs under libfaketime
(``LD_PRELOAD``, ``FAKETIME="+16m"``: the real mechanism by which a machine's clock is wrong, not a
switch in Patchbay). A hold lives 15 minutes, so before holds were stamped and compared in the
database's time the fast instance took every other instance's hold for expired and admitted as if
nothing were in flight (2× the limit)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import spawn_gateway
from tests.fakes.chunks import anthropic_message
from tests.fakes.upstreams import AnthropicJSON, FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform != "linux", reason="libfaketime is Linux's")]

LIMIT = 0.30  # one request holds ~$0.31 (4096 output tokens at $75/M): a second must wait for the first
BODY = {"model": "priced", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]}
ANSWER_S = 3.0


@pytest.fixture(scope="module")
def faketime() -> Path:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    if not found:  # ./scripts/test installs it (Debian's faketime package)
        pytest.fail("libfaketime is needed (apt-get install faketime)")
    return found[0]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream(lambda req: AnthropicJSON(anthropic_message("ok", model="priced", usage=(10, 2000)),
                                                ttfb_s=ANSWER_S), wire="anthropic").start()
    yield up
    up.stop()


def test_an_instance_whose_clock_runs_ahead_sees_the_others_holds(tmp_path: Path, pg_server: Any,
                                                                 upstream: FakeUpstream, faketime: Path) -> None:
    url = pg_server.create_db()
    text = serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=f'''
[team]
identity = ["keys"]

[[budgets]]
scope = "each-user"
period = "day"
limit_usd = {LIMIT}
''')
    right = spawn_gateway(text, tmp_path / "right")
    ahead = spawn_gateway(text, tmp_path / "ahead", extra_env={
        "LD_PRELOAD": str(faketime), "FAKETIME": "+16m", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    try:
        made = right.cli("team", "key", "create", "skew@corp.example", "--config", str(right.config_path))
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        answers: dict[str, Any] = {}

        def ask(name: str, gw_url: str) -> None:
            client = anthropic.Anthropic(base_url=gw_url, api_key=key, max_retries=0, timeout=30)
            try:
                answers[name] = client.messages.create(**BODY)  # type: ignore[arg-type]
            except anthropic.APIError as exc:
                answers[name] = exc

        first = threading.Thread(target=ask, args=("first", right.url))
        first.start()
        upstream.wait_for_requests(1, timeout=10)  # the first holds ~$0.31 of the $0.30
        second = threading.Thread(target=ask, args=("second", ahead.url))
        second.start()
        time.sleep(1.0)
        # the instance 16 minutes ahead counts the first's hold: the second waits for it to settle
        assert len(upstream.requests) == 1, "the instance whose clock runs ahead ignored the other's hold"
        first.join(30)
        second.join(30)
        assert answers["first"].type == "message", answers["first"]
        assert answers["second"].type == "message", answers["second"]  # once the first cost $0.15, it fits
    finally:
        right.stop()
        ahead.stop()
