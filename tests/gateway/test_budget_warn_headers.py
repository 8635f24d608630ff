"""A request admitted past a budget's ``warn_at`` carries Anthropic's unified rate-limit headers
with ``allowed_warning`` and the budget's utilisation, so Claude Code can show how much is used;
below ``warn_at`` the answer carries none of them."""

from __future__ import annotations

import time

import pytest

from app.core import Engine
from tests.fakes.chunks import anthropic_message, openai_text_chunks
from tests.fakes.upstreams import AnthropicJSON, OpenAIStream
from tests.gateway.test_engine import USER, _client, engine  # noqa: F401 - the engine fixture

PREFIX = "anthropic-ratelimit-unified-"
BUDGET = '''
[[budgets]]
scope = "all"
period = "day"
limit_usd = 1.0
warn_at = 0.5
action = "block"
'''


def _unified(headers: object) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith(PREFIX)}  # type: ignore[attr-defined]


@pytest.mark.parametrize("engine", [BUDGET], indirect=True)
def test_warn_at_crossing_answers_with_utilisation_headers(engine: Engine) -> None:  # noqa: F811
    anth, oai = engine.upstreams  # type: ignore[attr-defined]
    oai.enqueue(OpenAIStream(openai_text_chunks("a", model="priced-model", usage=(300_000, 0, 0))))  # $0.60
    raw = _client(engine).messages.with_raw_response.create(model="x", max_tokens=5, messages=USER, stream=True)
    assert _unified(raw.headers) == {}  # nothing spent yet: below warn_at, no headers
    for _ in raw.parse():
        pass
    assert engine.ledger.flush(5)
    time.sleep(0.1)

    oai.enqueue(OpenAIStream(openai_text_chunks("b", model="priced-model", usage=(10, 0, 0))))
    raw = _client(engine).messages.with_raw_response.create(model="x", max_tokens=5, messages=USER, stream=True)
    got = _unified(raw.headers)
    for _ in raw.parse():
        pass
    assert got[PREFIX + "status"] == "allowed_warning"
    assert got[PREFIX + "representative-claim"] == "five_hour"  # a day budget: the nearest window Claude Code knows
    assert got[PREFIX + "5h-status"] == "allowed_warning"
    assert got[PREFIX + "5h-utilization"] == "0.60"
    reset = int(got[PREFIX + "reset"])
    assert got[PREFIX + "5h-reset"] == str(reset) and time.time() < reset <= time.time() + 86400 + 3600

    # a non-streamed answer (the passthrough backend) carries them too
    engine.switch("local", "qwen3-coder:30b")
    anth.enqueue(AnthropicJSON(anthropic_message("c")))
    raw = _client(engine).messages.with_raw_response.create(model="x", max_tokens=5, messages=USER)
    assert _unified(raw.headers)[PREFIX + "status"] == "allowed_warning"
    assert raw.parse().content[0].text == "c"  # type: ignore[union-attr]
