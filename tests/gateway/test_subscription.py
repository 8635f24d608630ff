"""A Claude subscription login through the gateway: its usage is value, not money spent.

Claude Code signed in with a Pro / Max plan sends ``Authorization: Bearer sk-ant-oat01-…`` and the
beta ``oauth-2025-04-20``; on loopback the default ``anthropic`` backend (``auth = "client"``)
forwards it as it came. The fake Anthropic API here refuses an OAuth token without its beta and
answers subscription requests with the ``anthropic-ratelimit-unified-*`` windows. The rows of such
requests are marked ``plan = 'subscription'``, cost nothing, carry their API-equivalent value, and
never count against a money budget; an API-key request beside them is charged as before.
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from app.claude import statusline
from app.cli import usage as usage_cli
from app.paths import default_paths
from app.units import fmt_money
from tests.fakes.subscription import API_KEY, OAUTH_BETA, OAUTH_TOKEN, SubscriptionAPI
from tests.serve_config import SONNET_PRICES, client_config, start_engine

PROMPT = {"model": "claude-fake", "max_tokens": 1000, "messages": [{"role": "user", "content": "hello"}]}
# what one answer's usage (12,000 in, 800 out) costs at Sonnet prices: far past the $0.01 budget
ONE_ANSWER = (12_000 * SONNET_PRICES[0] + 800 * SONNET_PRICES[1]) / 1e6


def _config(url: str, budget_usd: float, budget_extra: str = "") -> str:
    return client_config(url, prices=SONNET_PRICES, extra=f'''
[[budgets]]
scope = "all"
period = "day"
limit_usd = {budget_usd}
action = "block"
{budget_extra}
''')


def _usage(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="patchbay usage")
    usage_cli.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = usage_cli.run(parser.parse_args(argv), default_paths(), out=out, err=err)
    return code, out.getvalue()


def _usage_json() -> tuple[int, dict[str, Any]]:
    code, text = _usage(["--json", "--since", "today"])
    return code, json.loads(text)


def _rows(home: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(home / "data" / "usage.sqlite3")
    try:
        return conn.execute("SELECT plan, cost_usd, api_equiv_usd, status FROM requests ORDER BY started_at").fetchall()
    finally:
        conn.close()


@pytest.fixture
def plan() -> object:
    with SubscriptionAPI() as api:
        yield api


def test_subscription_rows_are_marked_and_never_charged_to_a_budget(
        patchbay_home: Path, plan: SubscriptionAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "PATCHBAY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    eng = start_engine(patchbay_home, _config(plan.url, 0.01))
    try:
        sub = anthropic.Anthropic(base_url=eng.url, auth_token=OAUTH_TOKEN, max_retries=0,
                                  default_headers={"anthropic-beta": f"claude-code-20250219,{OAUTH_BETA}",
                                                   "x-claude-code-session-id": "S-plan"})
        # an API key is money even with the OAuth beta beside it: no budget is dodged by adding it
        keyed = anthropic.Anthropic(base_url=eng.url, api_key=API_KEY, max_retries=0,
                                    default_headers={"anthropic-beta": OAUTH_BETA})
        # two subscription answers, each worth far more than the $0.01 budget: both served
        for _ in range(2):
            with sub.messages.stream(**PROMPT) as s:  # type: ignore[arg-type]
                assert s.get_final_message().stop_reason == "end_turn"
            assert eng.ledger.drain(10)
        assert plan.credentials == ["oauth", "oauth"]  # the OAuth bearer reached the upstream as it came

        # an API-key request is charged: the first one fits the empty budget, the next is refused
        keyed.messages.create(**PROMPT)  # type: ignore[arg-type]
        assert eng.ledger.drain(10)
        with pytest.raises(anthropic.RateLimitError) as refused:
            keyed.messages.create(**PROMPT)  # type: ignore[arg-type]
        assert "is used up" in refused.value.body["error"]["message"]  # type: ignore[index]
        # ... and the subscription still is not: its requests go on
        assert sub.messages.create(**PROMPT).stop_reason == "end_turn"  # type: ignore[arg-type]
        assert eng.ledger.drain(10)

        rows = _rows(patchbay_home)
        served = [r for r in rows if r[3] == 200]
        assert [r[0] for r in served] == ["subscription", "subscription", None, "subscription"]
        for plan_, cost, equiv, _status in served:
            if plan_ == "subscription":
                assert cost == 0.0 and equiv == pytest.approx(ONE_ANSWER)
            else:
                assert cost == pytest.approx(ONE_ANSWER) and equiv is None
        assert eng.reader.subscription_totals(0.0).api_equiv_usd == pytest.approx(3 * ONE_ANSWER)

        # the windows of the latest subscription answer, beside the ledger for the CLI and the status line
        state = orjson.loads((patchbay_home / "data" / "subscription-limits.json").read_bytes())["backends"]["anthropic"]
        assert state["five_hour_utilization"] == pytest.approx(0.63)
        assert state["seven_day_utilization"] == pytest.approx(0.21)
        assert state["five_hour_reset"] == plan.windows.five_hour_reset
        assert state["status"] == "allowed"

        # patchbay usage --json: spend is the API-key request alone; the plan's value and windows apart
        code, out = _usage_json()
        assert code == 0
        assert out["total"]["cost_usd"] == pytest.approx(ONE_ANSWER)
        assert out["subscription"]["requests"] == 3
        assert out["subscription"]["api_equiv_usd"] == pytest.approx(3 * ONE_ANSWER)
        window = out["subscription"]["windows"]["anthropic"]
        assert window["five_hour"] == {"utilization": 0.63, "resets_at": plan.windows.five_hour_reset}
        assert window["seven_day"]["utilization"] == 0.21
        reset = time.strftime("%H:%M", time.localtime(plan.windows.five_hour_reset))
        assert window["text"] == f"5 h window 63 % · resets {reset} · week 21 %"
        code, text = _usage(["--since", "today"])
        assert code == 0
        assert f"Claude subscription: 3 requests, {fmt_money(3 * ONE_ANSWER)} API-equiv. (paid by the plan: not in " \
            f"the cost above)\n  anthropic: 5 h window 63 % · resets {reset} · week 21 %" in text
        # the status line: the session's value (not spend) and the windows
        text = statusline.line({"session_id": "S-plan"}, patchbay_home / "data" / "usage.sqlite3",
                               patchbay_home / "config.toml")
        assert text == (f"anthropic · claude-fake · {fmt_money(3 * ONE_ANSWER)} API-equiv. session · "
                        f"{fmt_money(ONE_ANSWER)}/$0.01 today · 5 h window 63 % · resets {reset} · week 21 %")
    finally:
        eng.stop()
    # the subscription's token is kept nowhere
    for f in (patchbay_home / "data").iterdir():
        if f.is_file():
            assert OAUTH_TOKEN.encode() not in f.read_bytes(), f



def test_a_budget_that_asks_for_it_counts_the_plans_api_equivalent_value(
        patchbay_home: Path, plan: SubscriptionAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "PATCHBAY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    eng = start_engine(patchbay_home, _config(plan.url, 0.01, "include_subscription = true"))
    try:
        sub = anthropic.Anthropic(base_url=eng.url, auth_token=OAUTH_TOKEN, max_retries=0,
                                  default_headers={"anthropic-beta": OAUTH_BETA})
        assert sub.messages.create(**PROMPT).stop_reason == "end_turn"  # type: ignore[arg-type]
        assert eng.ledger.drain(10)
        with pytest.raises(anthropic.RateLimitError) as refused:  # $0.048 of value counted against $0.01
            sub.messages.create(**PROMPT)  # type: ignore[arg-type]
        assert "is used up: $0.048 of $0.01 spent today on all backends" in \
            refused.value.body["error"]["message"]  # type: ignore[index]
        assert [s.spent_usd for s in eng.budgets.status()] == [pytest.approx(ONE_ANSWER)]
        rows = _rows(patchbay_home)
        assert [(r[0], r[1]) for r in rows if r[3] == 200] == [("subscription", 0.0)]  # still no money spent
    finally:
        eng.stop()
