"""Two ``patchbay serve`` processes on one PostgreSQL, people verified by the fake IdP's OIDC tokens:
a person's budget holds across both. Alice runs six sessions spread over the two instances; her
spend ends within one request's cost of her own limit, and Bob, on the same gateways, is served
after she is refused (his counter is his own)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import psycopg
import pytest

from tests.burst import priced_burst, stream_until_refused
from tests.e2e.conftest import spawn_gateway
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM drain is POSIX")]

LIMIT = 3.0
BURST = priced_burst("Explain what this function does and how to test it. ", 500)
BODY, COST = BURST.body, BURST.cost  # one request's real cost (Opus-like prices)
ALICE, BOB = "alice@corp.example", "bob@corp.example"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = BURST.upstream()
    yield up
    up.stop()


def test_a_persons_budget_holds_across_two_instances(tmp_path: Path, pg_server: object, upstream: FakeUpstream
                                                    ) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    with FakeIdP() as idp:
        text = serve_config(upstream.url, port0=False, prices=OPUS_PRICES, ledger_url=url, extra=f'''
[team]
identity = ["oidc"]
oidc_issuer = "{idp.oidc_issuer}"
oidc_audience = "patchbay"

[[budgets]]
scope = "each-user"
period = "day"
limit_usd = {LIMIT}
blocked_message = "Ask #platform-ai for more."
''')
        gws = [spawn_gateway(text, tmp_path / f"home-{i}") for i in range(2)]
        try:
            alice = idp.oidc_token(ALICE, aud="patchbay")
            served, refusals = stream_until_refused([gw.url for gw in gws], 6, alice, BODY, sessions=True)
            assert refusals == ["billing_error"] * 6 and all(served), served  # both instances served her
            for gw in gws:  # Bob is served on each, after Alice is refused on both
                bob = anthropic.Anthropic(base_url=gw.url, api_key=idp.oidc_token(BOB, aud="patchbay"), max_retries=0)
                with bob.messages.stream(**BODY) as s:  # type: ignore[arg-type]
                    s.get_final_message()
                again = anthropic.Anthropic(base_url=gw.url, api_key=alice, max_retries=0)
                with pytest.raises(anthropic.RateLimitError) as refused:
                    for _ in range(5):  # what the burst's last holds left room for, then the refusal
                        with again.messages.stream(**BODY) as s:  # type: ignore[arg-type]
                            s.get_final_message()
                message = refused.value.body["error"]["message"]  # type: ignore[index]
                assert f"by {ALICE}" in message and message.endswith("Ask #platform-ai for more.")
        finally:
            for gw in gws:
                gw.stop()  # SIGTERM: finish, flush the ledger, exit
    for gw in gws:
        assert gw.proc.returncode == 0, gw.log()
    with psycopg.connect(url) as conn:
        spent = dict(conn.execute("SELECT user_id, sum(cost_usd) FROM requests WHERE status = 200 "
                                  "GROUP BY user_id").fetchall())
        instances = conn.execute("SELECT count(DISTINCT instance) FROM requests WHERE user_id = %s",
                                 (ALICE,)).fetchone()
        holds = conn.execute("SELECT count(*) FROM budget_holds").fetchone()
    assert instances == (2,)
    assert LIMIT - 2 * COST <= spent[ALICE] <= LIMIT + COST, f"alice spent ${spent[ALICE]:.2f} of ${LIMIT:.2f}"
    assert spent[BOB] == pytest.approx(2 * COST)
    assert holds == (0,)  # every reservation was settled
