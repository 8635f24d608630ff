"""Concurrent streams against a budget until each is refused: the burst the budget tests send, and
the priced request they send (a long prompt whose cost the tests know exactly)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import anthropic

from app.proxy.tokens import estimate_tokens
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream


@dataclass(frozen=True)
class PricedBurst:
    """A request for the model "priced" with a long prompt. Its fake upstream streams ten pieces
    30 ms apart (so concurrent streams overlap) and reports the gateway's own input estimate and
    ``output_tokens``: with Opus-like prices (tests/serve_config.py OPUS_PRICES) each request costs
    exactly ``cost``."""

    body: dict[str, Any]
    input_tokens: int
    output_tokens: int = 2000

    @property
    def cost(self) -> float:
        return (self.input_tokens * 15 + self.output_tokens * 75) / 1e6

    def upstream(self) -> FakeUpstream:
        usage = (self.input_tokens, self.output_tokens, 0, 0)
        return FakeUpstream(lambda req: AnthropicStream(
            anthropic_text_events("x" * 40, pieces=10, model="priced", usage=usage), delay_s=0.03),
            wire="anthropic", record=False).start()


def priced_burst(sentence: str, times: int) -> PricedBurst:
    body = {"model": "priced", "max_tokens": 4096, "messages": [{"role": "user", "content": sentence * times}]}
    return PricedBurst(body, estimate_tokens(body))


def stream_until_refused(urls: list[str], streams: int, token: str, body: dict[str, Any], *,
                         sessions: bool = False) -> tuple[list[int], list[str]]:
    """``streams`` threads, stream ``i`` on ``urls[i % len(urls)]`` (with its own Claude Code session
    id ``s-i`` when ``sessions``), each streaming ``body`` again and again until a 429 stops it.
    Returns the 200s served per URL and the refusals' error types."""
    served = [0] * len(urls)
    refusals: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        k = i % len(urls)
        headers = {"X-Claude-Code-Session-Id": f"s-{i}"} if sessions else None
        client = anthropic.Anthropic(base_url=urls[k], api_key=token, max_retries=0, default_headers=headers)
        while True:
            try:
                with client.messages.stream(**body) as s:
                    s.get_final_message()
            except anthropic.RateLimitError as exc:
                with lock:
                    refusals.append(exc.body["error"]["type"])  # type: ignore[index]
                return
            except anthropic.APIStatusError as exc:  # an answer stopped at the budget's limit (in-stream error)
                err = exc.body.get("error") if isinstance(exc.body, dict) else None
                if not isinstance(err, dict) or err.get("type") != "billing_error":
                    raise
                with lock:
                    served[k] += 1  # answered in part, and charged for what it delivered
                    refusals.append("billing_error")
                return
            with lock:
                served[k] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return served, refusals
