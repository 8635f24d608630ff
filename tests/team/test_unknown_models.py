"""No model name is free where budgets are enforced.

A team gateway's backend ``anthropic`` (a fake upstream that answers with the model it was asked
for, Anthropic's way) and a $1 budget per person. Anthropic's alias ``claude-opus-4-0`` and a dated
id are priced as the model they name; a made-up name is reserved and charged at the backend's
dearest known price, and the row, ``patchbay check`` and the Team page say so. A ``[[prices]]``
entry with ``model = "*"`` sets that fallback instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.__main__ import main
from app.core import Engine
from tests.books import raw_rows
from tests.fakes.chunks import anthropic_message
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicJSON, FakeUpstream
from tests.gateway.conftest import config_text
from tests.serve_config import each_user_budget, oidc_team, start_engine

ALICE = "alice@corp.example"
USAGE = (1000, 10_000)  # at Opus's $15 / $75 a million: $0.765 a request
OPUS_COST = (USAGE[0] * 15 + USAGE[1] * 75) / 1e6
DEAREST = "the dearest known price on anthropic (claude-opus-4-1)"


def team_config(upstream: str, idp: FakeIdP, extra: str = "") -> str:
    """The backend ``anthropic`` on the fake (not local: a loopback backend is free by default),
    the client's model name sent as it is."""
    return config_text([{"id": "anthropic", "kind": "anthropic", "base_url": upstream, "auth": "none",
                         "local": False, "models": ["claude-opus-4-1"]}], active="anthropic") + "\n" \
        + oidc_team(idp.oidc_issuer) + each_user_budget(1.0) + extra


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """Answers with the model it was asked for, or the dated id ``answer_as`` names."""
    answer_as = {"claude-opus-4-1": "claude-opus-4-1-20250805"}
    up = FakeUpstream(lambda req: AnthropicJSON(anthropic_message(
        model=answer_as.get(req.json["model"], req.json["model"]), usage=USAGE)), wire="anthropic").start()
    yield up
    up.stop()


def _serve(home: Path, upstream: FakeUpstream, idp: FakeIdP, extra: str = "") -> Engine:
    return start_engine(home, team_config(upstream.url, idp, extra))


def _ask(eng: Engine, idp: FakeIdP, model: str) -> int:
    with httpx.Client(base_url=eng.url, timeout=15) as http:
        r = http.post("/v1/messages", headers={"authorization": "Bearer " + idp.oidc_token(ALICE, aud="patchbay")},
                      json={"model": model, "max_tokens": 10_000, "messages": [{"role": "user", "content": "hi"}]})
    assert eng.ledger.drain(10)
    return r.status_code


def _rows(eng: Engine) -> list[tuple]:
    deadline = time.monotonic() + 5
    while True:
        got = raw_rows(eng.paths.ledger_file, None, "SELECT requested_model, model, cost_usd, priced_by FROM requests "
                       "WHERE status = 200 ORDER BY started_at")
        if got or time.monotonic() > deadline:  # a row follows its answer by a moment
            return got
        time.sleep(0.05)


def test_aliases_and_dated_ids_are_priced_as_the_model_they_name(patchbay_home: Path, upstream, idp) -> None:
    eng = _serve(patchbay_home, upstream, idp)
    try:
        assert _ask(eng, idp, "claude-opus-4-0") == 200
        got = _rows(eng)
        assert [(r[1], round(r[2], 6), r[3]) for r in got] == [("claude-opus-4-0", round(OPUS_COST, 6), None)]
    finally:
        eng.stop()
    ids = ["claude-opus-4-1-20250805", "claude-opus-4@20250514", "us.anthropic.claude-opus-4-1-20250805-v1:0",
           "claude-opus-4-latest", "claude-opus-4-0"]
    assert all(eng.prices.price_for("anthropic", m) is not None and eng.prices.priced_by("anthropic", m) is None
               for m in ids)


def test_a_made_up_model_is_reserved_and_charged_at_the_dearest_known_price(
        patchbay_home: Path, upstream, idp, capsys: pytest.CaptureFixture[str]) -> None:
    eng = _serve(patchbay_home, upstream, idp)
    try:
        statuses = [_ask(eng, idp, "claude-mystery-9") for _ in range(6)]
        got = _rows(eng)
    finally:
        eng.stop()
    # $0.765 each: the second starts under the $1 limit, the third is refused
    assert statuses == [200, 200, 429, 429, 429, 429], statuses
    assert [(r[1], round(r[2], 6), r[3]) for r in got] == [("claude-mystery-9", round(OPUS_COST, 6), DEAREST)] * 2
    assert main(["check", "--config", str(patchbay_home / "config.toml")]) == 0
    out = capsys.readouterr().out
    assert "anthropic: a model the price table does not know is charged at" in out and DEAREST in out
    assert "$15 in / $75 out" in out


def test_a_configured_fallback_price_wins(patchbay_home: Path, upstream, idp, capsys) -> None:
    eng = _serve(patchbay_home, upstream, idp, extra='''
[[prices]]
model = "*"
input = 3.0
output = 15.0
''')
    try:
        assert [_ask(eng, idp, "claude-mystery-9") for _ in range(2)] == [200, 200]
        got = _rows(eng)
    finally:
        eng.stop()
    assert [r[3] for r in got] == ['your [[prices]] model = "*"'] * 2
    assert round(got[0][2], 6) == round((USAGE[0] * 3 + USAGE[1] * 15) / 1e6, 6)
    assert main(["check", "--config", str(patchbay_home / "config.toml")]) == 0
    assert 'your [[prices]] model = "*"' in capsys.readouterr().out
