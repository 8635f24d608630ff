"""1-hour cache writes are priced at the 1-hour rate (2 × input, where 5 minutes is 1.25 ×): the
split Anthropic reports in ``usage.cache_creation`` reaches the request's usage and its price."""

from __future__ import annotations

import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import Usage
from tests.fakes import AnthropicJSON, AnthropicStream, anthropic_message, anthropic_text_events
from tests.gateway.conftest import config_text

USER = [{"role": "user", "content": "hi"}]
SPLIT = {"ephemeral_5m_input_tokens": 20_000, "ephemeral_1h_input_tokens": 80_000}  # under the long-prompt rates
PRICED = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "https://api.anthropic.com",
                                    "auth": "client"}], active="anthropic"))


def _with_split(usage: dict[str, object]) -> None:
    usage["cache_creation_input_tokens"] = 100_000
    usage["cache_creation"] = dict(SPLIT)


def test_a_1h_cache_write_costs_twice_the_input_price() -> None:
    book = PriceBook.load(PRICED)
    five = Usage(cache_creation_input_tokens=100_000)
    hour = Usage(cache_creation_input_tokens=100_000, cache_creation_1h_input_tokens=100_000)
    # Sonnet 4.5: $3 input; a 5-minute write $3.75, a 1-hour write $6 per MTok
    assert book.cost("anthropic", "claude-sonnet-4-5", five) == pytest.approx(0.375)
    assert book.cost("anthropic", "claude-sonnet-4-5", hour) == pytest.approx(0.6)


@pytest.mark.parametrize("stream", [False, True])
def test_the_split_reaches_the_request_and_its_price(two_backends, anthropic_up, stream):
    if stream:
        events = anthropic_text_events("hi", usage=(10, 5, 0, 100_000))
        _with_split(events[0][1]["message"]["usage"])
        anthropic_up.enqueue(AnthropicStream(events))
    else:
        message = anthropic_message("hi", usage=(10, 5, 0, 100_000))
        _with_split(message["usage"])
        anthropic_up.enqueue(AnthropicJSON(message))
    with two_backends.client() as c:
        if stream:
            with c.messages.stream(model="claude,claude-sonnet-4-5", max_tokens=5, messages=USER) as s:
                s.get_final_message()
        else:
            c.messages.create(model="claude,claude-sonnet-4-5", max_tokens=5, messages=USER)
    (done,) = two_backends.finished(1)
    assert done.usage.cache_creation_input_tokens == 100_000
    assert done.usage.cache_creation_1h_input_tokens == 80_000
    cost = PriceBook.load(PRICED).cost("anthropic", "claude-sonnet-4-5", done.usage)
    assert cost == pytest.approx((10 * 3 + 5 * 15 + 20_000 * 3.75 + 80_000 * 6.0) / 1e6)
