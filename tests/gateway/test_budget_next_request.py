"""The request a client sends the moment the last answer ended is judged on what the last one really
cost, not on its reservation.

Claude Code sends its next request as soon as it has read ``message_stop``; the gateway records the
finished request only once the upstream's body has ended, which can be later (here the upstream
sends an SSE comment 0.3 s after ``message_stop``). Until the fix the last request's hold still
counted at its estimate then, and a budget with room for the next request refused it ("full for
now"). The gateway now hands admission the real cost just before the client gets the end.
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from tests.burst import priced_burst
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import OPUS_PRICES, serve_config, start_engine

TOKEN = "pb-next-token"
BURST = priced_burst("Summarise what changed in this module and why it matters. ", 500)


def test_the_next_request_is_admitted_on_the_last_ones_real_cost(patchbay_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    usage = (BURST.input_tokens, BURST.output_tokens, 0, 0)
    events = [*anthropic_text_events("done", pieces=1, model="priced", usage=usage), b": still here\n\n"]
    up = FakeUpstream(lambda req: AnthropicStream(events, delay_s=0.3), wire="anthropic", record=False).start()
    estimate = (BURST.input_tokens * 15 + 4096 * 75) / 1e6  # what admission reserves for one request
    limit = 0.35
    assert BURST.cost < limit < estimate  # room for the next request after the real cost, not after the estimate
    eng = start_engine(patchbay_home, serve_config(up.url, prices=OPUS_PRICES, budget_usd=limit))
    try:
        client = anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0)
        with client.messages.stream(**BURST.body) as s:  # type: ignore[arg-type]
            assert s.get_final_message().stop_reason == "end_turn"
        # at once, while the gateway still waits for the first upstream body to end
        with client.messages.stream(**BURST.body) as s:  # type: ignore[arg-type]
            assert s.get_final_message().stop_reason == "end_turn"
        # and now the budget is used up: the third is refused on what was really spent
        assert eng.ledger.drain(10)
        with pytest.raises(anthropic.RateLimitError) as refused:
            with client.messages.stream(**BURST.body) as s:  # type: ignore[arg-type]
                s.get_final_message()
        assert "is used up" in refused.value.body["error"]["message"]  # type: ignore[index]
    finally:
        eng.stop()
        up.stop()
