"""Every answer carries a ``request-id`` header (Anthropic's name and ``req_…`` shape), the same id
as its error body's ``request_id`` and its ledger row (app/proxy/request_ids.py)."""

from __future__ import annotations

import anthropic
import pytest

from tests.fakes import (
    AnthropicStream,
    OpenAIJSON,
    OpenAIStream,
    anthropic_error,
    anthropic_text_events,
    openai_completion,
    openai_text_chunks,
)
from tests.gateway.conftest import TOKEN

AUTH = {"x-api-key": TOKEN}
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_success_carries_the_id_of_its_ledger_row(two_backends, openai_up, stream):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("hi")) if stream else OpenAIJSON(openai_completion("hi")))
    client = two_backends.client()
    if stream:
        with client.messages.stream(model="m", max_tokens=5, messages=USER) as s:
            s.get_final_message()
            rid = s.response.headers.get("request-id")
    else:
        msg = client.messages.create(model="m", max_tokens=5, messages=USER)
        rid = msg._request_id  # what the official SDK reads from the request-id header
    (done,) = two_backends.finished(1)
    assert rid is not None and rid.startswith("req_") and rid == done.request_id


def test_an_upstream_error_carries_one_id_in_header_body_and_row(two_backends, anthropic_up):
    anthropic_up.enqueue(anthropic_error(400, "invalid_request_error", "bad thing"))  # its body says req_fake
    with pytest.raises(anthropic.BadRequestError) as info:
        two_backends.client().messages.create(model="claude,claude-x", max_tokens=5, messages=USER)
    rid = info.value.response.headers["request-id"]
    (done,) = two_backends.finished(1)
    assert rid.startswith("req_") and info.value.body["request_id"] == rid == info.value.request_id == done.request_id


def test_a_request_refused_by_the_gateway_carries_the_id_of_its_row(two_backends):
    with two_backends.http() as http:
        r = http.post("/v1/messages", headers=AUTH, json={"model": "m", "messages": "not a list"})
    assert r.status_code == 400
    (done,) = two_backends.finished(1)
    assert r.headers["request-id"] == r.json()["request_id"] == done.request_id


@pytest.mark.parametrize("method,path", [("GET", "/v1/models"), ("GET", "/health"), ("GET", "/nowhere"),
                                         ("POST", "/v1/messages/count_tokens")])
def test_other_answers_carry_an_id_too(two_backends, method, path):
    with two_backends.http() as http:
        r = http.request(method, path, headers=AUTH,
                         json={"model": "m", "messages": USER} if method == "POST" else None)
    rid = r.headers["request-id"]
    assert rid.startswith("req_") and len(rid) == 28
    if r.status_code >= 400:
        assert r.json()["request_id"] == rid


def test_an_upstream_request_id_is_kept_apart(two_backends, anthropic_up):
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("hi"), headers={"request-id": "req_from_anthropic"}))
    with two_backends.client().messages.stream(model="claude,claude-x", max_tokens=5, messages=USER) as s:
        s.get_final_message()
        headers = s.response.headers
    assert headers.get_list("request-id") == [two_backends.finished(1)[0].request_id]
    assert headers["upstream-request-id"] == "req_from_anthropic"
