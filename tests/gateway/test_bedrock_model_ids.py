"""A client-chosen Bedrock model id ("<backend>,<id>") is one path segment of the runtime URL:
"." or ".." cannot climb out of /model/ (the URL collapsed to /invoke), and an id longer than
Bedrock's 2,048 characters is a 400 that says so, not Patchbay's own 500. Nothing is sent."""

from __future__ import annotations

import anthropic
import pytest

from tests.fakes.chunks import anthropic_message
from tests.fakes.cloud import FakeBedrock
from tests.fakes.upstreams import AnthropicJSON
from tests.gateway.conftest import config_text
from tests.gateway.test_bedrock import AK, MODEL, SK, ST, USER, _bedrock_backend, aws_env, bedrock  # noqa: F401


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch, bedrock: FakeBedrock, start_gateway):  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_SESSION_TOKEN", ST)
    return start_gateway(config_text([_bedrock_backend(bedrock.url, auth="aws")], active="aws"))


@pytest.mark.parametrize("model_id", ["..", ".", "x" * 100_000, "us.anthropic.claude\n-sonnet"])
def test_a_model_id_that_is_no_bedrock_id_is_a_400_and_never_sent(gw, bedrock: FakeBedrock,  # noqa: F811
                                                                     model_id: str) -> None:
    client = gw.client()
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=f"aws,{model_id}", max_tokens=20, messages=USER)
    body = err.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "is not a Bedrock model id" in body["error"]["message"] and "bug in Patchbay" not in str(body)
    assert len(body["error"]["message"]) < 500  # the 100 KB id is not quoted back whole
    assert bedrock.requests == []
    # an id with dots inside stays as it is, and one at Bedrock's limit still goes out
    bedrock.enqueue(AnthropicJSON(anthropic_message("ok", usage=(1, 1))))
    assert client.messages.create(model=f"aws,{MODEL}", max_tokens=20, messages=USER).content[0].text == "ok"
    assert bedrock.requests[-1].path == f"/model/{MODEL}/invoke"
