"""A request's start event always reaches the sinks before its finish event: the gateway publishes
the start once the request's task first waits (its upstream request written), and at the latest
just before the finish of a request that ended without ever waiting."""

from __future__ import annotations

import anthropic
import pytest

from app.events import Event, RequestFinished, RequestStarted
from tests.fakes.chunks import openai_text_chunks
from tests.fakes.upstreams import FakeUpstream, OpenAIStream
from tests.gateway.conftest import config_text

USER = [{"role": "user", "content": "hello"}]


def _order(events: list[Event]) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.request_id) for e in events
            if isinstance(e, (RequestStarted, RequestFinished))]


def test_start_before_finish_when_the_request_fails_before_its_first_wait(start_gateway, anthropic_up: FakeUpstream,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a key that is nowhere: the backend raises before the request ever waits on anything
    monkeypatch.delenv("PB_ORDER_UNSET_KEY", raising=False)
    gw = start_gateway(config_text([{"id": "keyed", "kind": "anthropic", "base_url": anthropic_up.url,
                                     "auth": "env:PB_ORDER_UNSET_KEY", "local": False}], active="keyed"))
    with pytest.raises(anthropic.AuthenticationError):
        gw.client().messages.create(model="claude-fake", max_tokens=5, messages=USER, stream=True)
    fin = gw.finished(1)[0]
    assert fin.status == 401 and not anthropic_up.requests
    assert _order(gw.events()) == [("RequestStarted", fin.request_id), ("RequestFinished", fin.request_id)]


def test_start_before_finish_on_a_streamed_answer(two_backends, openai_up: FakeUpstream) -> None:
    openai_up.enqueue(OpenAIStream(openai_text_chunks("hi")))
    two_backends.client().messages.create(model="m", max_tokens=5, messages=USER, stream=True).close()
    fin = two_backends.finished(1)[0]
    assert fin.status == 200
    assert _order(two_backends.events()) == [("RequestStarted", fin.request_id), ("RequestFinished", fin.request_id)]
