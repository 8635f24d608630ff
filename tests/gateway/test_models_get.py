"""GET /v1/models/{model_id} in Anthropic's shape, through the official SDK's ``models.retrieve``."""

from __future__ import annotations

import anthropic
import pytest


def test_a_model_is_retrieved_by_its_id(two_backends):
    with two_backends.client() as c:
        listed = {m.id for m in c.models.list()}
        model = c.models.retrieve("oai,gpt-other")
    assert "oai,gpt-other" in listed
    assert (model.type, model.id, model.display_name) == ("model", "oai,gpt-other", "gpt-other (oai)")
    assert model.created_at.year == 1970  # parsed as a datetime: the shape the SDK expects


def test_a_model_name_alone_finds_its_backend(two_backends):
    with two_backends.client() as c:
        assert c.models.retrieve("gpt-fake").id == "oai,gpt-fake"


def test_an_unknown_model_is_not_found(two_backends):
    with two_backends.client() as c, pytest.raises(anthropic.NotFoundError) as info:
        c.models.retrieve("oai,no-such-model")
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"
    assert body["error"]["message"].startswith("model: oai,no-such-model")
    assert body["request_id"] == info.value.response.headers["request-id"]


def test_it_needs_the_token_like_the_list(two_backends):
    with two_backends.http() as http:
        r = http.get("/v1/models/oai,gpt-fake")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
