"""Hanging up does not make a stream free: an answer the client cuts short is charged for the output
it delivered, its row says so, and the person's budget holds to it.

The fake upstream streams a long Opus-priced answer whose usage (as Anthropic's does) says
``output_tokens: 1`` in ``message_start`` and the real count only in ``message_delta`` at the end.
A client reads part of it and closes the socket, as Claude Code does when Esc is pressed: the
final usage never arrives. On the embedded SQLite ledger and on PostgreSQL with two gateways
sharing it. The real Claude Code CLI interrupted mid-answer: tests/e2e/test_cut_stream_claude.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core import Engine
from tests.books import raw_rows
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import OPUS_PRICES, each_user_budget, oidc_team, serve_config, start_engine

ALICE = "alice@corp.example"
TEXT = "word " * 32_000  # 160,000 characters: about 36,000 tokens
PIECES = 400  # 400 characters a delta
READ_DELTAS = 100  # what the client reads before hanging up: 40,000 characters
BODY = {"model": "priced", "max_tokens": 64000, "stream": True, "messages": [{"role": "user", "content": "Go on."}]}


def team_config(upstream: str, idp: FakeIdP, limit_usd: float, ledger: str = "") -> str:
    return serve_config(upstream, prices=OPUS_PRICES,
                        extra=oidc_team(idp.oidc_issuer) + each_user_budget(limit_usd) + ledger)


def long_answer(delay_s: float = 0.002) -> FakeUpstream:
    total = len(TEXT) // 4
    return FakeUpstream(lambda req: AnthropicStream(
        anthropic_text_events(TEXT, pieces=PIECES, model="priced", usage=(20, total)), delay_s=delay_s),
        wire="anthropic", record=True).start()


def cut_stream(url: str, token: str, deltas: int = READ_DELTAS) -> tuple[int, int]:
    """Stream ``BODY``, read ``deltas`` text deltas, close the socket. (status, characters read)."""
    chars = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("POST", "/v1/messages", json=BODY, headers={"authorization": f"Bearer {token}"}) as r:
            if r.status_code != 200:
                r.read()
                return r.status_code, 0
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: ") and '"text_delta"' in line:
                    chars += len(json.loads(line[6:])["delta"]["text"])
                    seen += 1
                    if seen >= deltas:
                        break
    return 200, chars


def rows(eng: Engine, n: int) -> list[tuple]:
    """(output_tokens, cost_usd, interrupted, usage_counted) of the first ``n`` rows, once written."""
    deadline = time.monotonic() + 10
    while True:
        assert eng.ledger.drain(10)
        got = raw_rows(eng.paths.ledger_file, eng.config.ledger.team.url,
                       "SELECT output_tokens, cost_usd, interrupted, usage_counted FROM requests "
                       "WHERE status = 200 ORDER BY started_at")
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", "pg"])
def engines(request: pytest.FixtureRequest, tmp_path: Path, idp: FakeIdP,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Engine]]:
    """One gateway on SQLite, or two on one PostgreSQL ledger; all with a $1 budget per person
    (``limit_usd`` marks a test that needs another)."""
    marker = request.node.get_closest_marker("limit_usd")
    limit = float(marker.args[0]) if marker else 1.0
    up = long_answer()
    ledger = ""
    homes = [tmp_path / "home-a"]
    if request.param == "pg":
        ledger = f'\n[ledger]\nurl = "{request.getfixturevalue("pg_server").create_db()}"\n'
        homes.append(tmp_path / "home-b")
    started: list[Engine] = []
    try:
        for home in homes:
            monkeypatch.setenv("PATCHBAY_HOME", str(home))
            started.append(start_engine(home, team_config(up.url, idp, limit, ledger)))
        yield started
    finally:
        for eng in started:
            eng.stop()
        up.stop()


def test_twelve_cut_opus_streams_are_charged_for_what_they_delivered(engines: list[Engine], idp: FakeIdP) -> None:
    token = idp.oidc_token(ALICE, aud="patchbay")
    delivered = 0
    statuses = []
    for i in range(12):
        status, chars = cut_stream(engines[i % len(engines)].url, token)
        statuses.append(status)
        delivered += chars // 4  # the fake's own rate: four characters a token
        time.sleep(0.2)  # the gateway notices the hang-up and writes the row
    served = statuses.count(200)
    got = rows(engines[0], served)
    charged = sum(r[0] for r in got)
    spent = sum(r[1] or 0.0 for r in got)
    print(f"\n{served} cut streams delivered {delivered} output tokens; the ledger charged {charged} tokens, "
          f"${spent:.2f}; statuses {statuses}")
    assert len(got) == served
    assert all(r[2] == 1 and r[3] == "streamed" for r in got), got
    assert 0.8 * delivered <= charged <= 1.25 * delivered
    # a cut stream would deliver ~10,000 Opus tokens (~$0.75): near the $1 budget the meter stops
    # them at its limit (app/budgets/hold_meter.py), and then the budget refuses the rest
    assert served >= 2 and statuses[served:] == [429] * (12 - served), statuses
    assert 0.9 <= spent <= 1.05, spent


@pytest.mark.limit_usd(10.0)  # room for the whole answer (~$3): a $1 budget stops it at its limit
def test_the_upstreams_final_usage_wins_when_it_arrived(engines: list[Engine], idp: FakeIdP) -> None:
    token = idp.oidc_token(ALICE, aud="patchbay")
    status, _chars = cut_stream(engines[0].url, token, deltas=10_000)  # read to the end
    assert status == 200
    got = rows(engines[0], 1)
    assert [(r[0], r[2], r[3]) for r in got] == [(len(TEXT) // 4, 0, None)]
