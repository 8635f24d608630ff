"""A team ledger that does not answer at start-up: the gateway starts anyway, rows wait in the
spool, ``/ready`` says why, and ``[ledger] on_unreachable`` decides what budgets do meanwhile:
"open" lets requests through, "closed" answers 503 ``api_error`` with ``x-should-retry: false`` (so
Claude Code stops and shows the sentence, tests/e2e/test_outage_answers.py)."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest

from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.pg import free_port
from tests.serve_config import SONNET_PRICES, serve_config, start_engine

TOKEN = "pb-unreachable"


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_budgets_while_the_database_is_away(mode: str, patchbay_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("hi", model="m")), wire="anthropic").start()
    nobody = free_port()  # nothing listens here: the database is down
    eng = start_engine(patchbay_home, serve_config(
        up.url, model="m", backend="local", prices=SONNET_PRICES, budget_usd=5.0,
        ledger_url=f"postgresql://patchbay@127.0.0.1:{nobody}/patchbay", extra=f'on_unreachable = "{mode}"\n'))
    try:
        client = anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0)
        body = {"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
        if mode == "open":
            with client.messages.stream(**body) as s:  # type: ignore[arg-type]
                assert s.get_final_message().content[0].text == "hi"  # type: ignore[union-attr]
            assert eng.ledger.flush(5) and eng.ledger.spooled >= 1  # kept, not lost
        else:
            with pytest.raises(anthropic.APIStatusError) as info:
                client.messages.create(**body)  # type: ignore[arg-type]
            assert info.value.status_code == 503
            err = info.value.body["error"]  # type: ignore[index]
            assert err["type"] == "api_error" and 'on_unreachable = "closed"' in err["message"]
            assert info.value.response.headers["x-should-retry"] == "false"
            assert "Traceback" not in err["message"] and TOKEN not in err["message"]
        ready = httpx.get(eng.url + "/ready")
        assert ready.status_code == 503
        assert "PostgreSQL" in ready.json()["error"]["message"] or "budgets" in ready.json()["error"]["message"]
        assert httpx.get(eng.url + "/health").status_code == 200
    finally:
        eng.stop()
        up.stop()
