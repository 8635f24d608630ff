"""Structured outputs on ``openai`` backends: Claude Code asks for session titles with
``output_config.format`` (a JSON schema); the upstream must get it as ``response_format``
(json_schema), and one that cannot do it must make the client hear so, in Anthropic's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.proxy.translate.structured import is_strict, to_response_format
from tests.fakes import (
    FakeUpstream,
    OpenAIJSON,
    OpenAIStream,
    ResponseFormatCheck,
    openai_completion,
    openai_error,
    openai_text_chunks,
)
from tests.gateway.conftest import TOKEN, config_text

FIXTURES = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "claude_code_requests.json").read_text())
TITLE = next(r for r in FIXTURES["requests"] if r["kind"] == "auxiliary/summary-extraction")


def title_request(stream: bool = True) -> dict[str, Any]:
    """The session-title request as Claude Code 2.1.332 sent it (recorded)."""
    return {"model": TITLE["model"], "max_tokens": 1000, "stream": stream,
            "output_config": TITLE["output_config"],
            "system": [{"type": "text", "text": "Generate a concise title for this session."}],
            "messages": [{"role": "user", "content": "Fix the failing test in the config parser"}]}


def gateway_for(start_gateway: Any, up: FakeUpstream) -> Any:
    return start_gateway(config_text([{"id": "oai", "kind": "openai", "base_url": up.url + "/v1", "auth": "none",
                                       "models": ["gpt-fake"]}], active="oai"))


@pytest.mark.parametrize("stream", [True, False])
def test_output_config_format_reaches_the_upstream_as_response_format(start_gateway, stream: bool):
    check = ResponseFormatCheck()
    with FakeUpstream(wire="openai", guard=check.guard) as up:
        gw = gateway_for(start_gateway, up)
        answer = '{"title": "Fix config parser test"}'
        up.enqueue(OpenAIStream(openai_text_chunks(answer)) if stream else OpenAIJSON(openai_completion(answer)))
        r = gw.http().post("/v1/messages", json=title_request(stream), headers={"x-api-key": TOKEN})
        assert r.status_code == 200, r.text
        sent = up.requests_to("/chat/completions")[-1].json
    assert check.seen == [sent["response_format"]]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "response", "strict": True,
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
                   "additionalProperties": False}}}
    assert "output_config" not in sent
    if stream:
        text = "".join(json.loads(line[6:])["delta"].get("text", "") for line in r.text.splitlines()
                       if line.startswith("data: ") and '"content_block_delta"' in line)
    else:
        text = r.json()["content"][0]["text"]
    assert json.loads(text) == {"title": "Fix config parser test"}


def test_an_upstream_that_cannot_do_json_schema_says_so(start_gateway):
    check = ResponseFormatCheck(supported=False)
    with FakeUpstream(wire="openai", guard=check.guard) as up:
        gw = gateway_for(start_gateway, up)
        r = gw.http().post("/v1/messages", json=title_request(), headers={"x-api-key": TOKEN})
    assert r.status_code == 400
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    msg = err["error"]["message"]
    assert msg.startswith('The backend "oai" cannot answer in the JSON schema this request asks for')
    assert ResponseFormatCheck.UNSUPPORTED in msg and "bug" not in msg.lower()


def test_other_refusals_keep_their_own_words(start_gateway):
    with FakeUpstream(wire="openai") as up:
        gw = gateway_for(start_gateway, up)
        up.enqueue(openai_error(400, "max_tokens is too large"))
        r = gw.http().post("/v1/messages", json=title_request(), headers={"x-api-key": TOKEN})
    assert r.status_code == 400 and r.json()["error"]["message"] == "max_tokens is too large"


def test_schema_names_and_strictness():
    loose = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    rf = to_response_format({"output_config": {"format": {"type": "json_schema",
                                                          "schema": dict(loose, title="Session Title!")}}})
    assert rf is not None and rf["json_schema"]["name"] == "Session_Title" and rf["json_schema"]["strict"] is False
    assert to_response_format({"output_config": {"effort": "high"}}) is None
    assert to_response_format({}) is None
    nested = {"type": "object", "additionalProperties": False, "required": ["x"],
              "properties": {"x": {"type": "array", "items": {"type": "object", "properties": {"y": {}},
                                                               "required": ["y"], "additionalProperties": False}}}}
    assert is_strict(nested)
    nested["properties"]["x"]["items"]["additionalProperties"] = True
    assert not is_strict(nested)
    # a schema with "$schema" (Claude Code's tool schemas carry one) goes without it
    rf = to_response_format({"output_config": {"format": {"type": "json_schema", "schema": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}}}})
    assert rf is not None and "$schema" not in rf["json_schema"]["schema"]


def test_the_fake_checks_like_openai():
    check = ResponseFormatCheck()
    with FakeUpstream(wire="openai", guard=check.guard) as up:
        import httpx

        bad = {"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {
            "name": "has space", "schema": {"type": "object"}}}}
        r = httpx.post(up.url + "/v1/chat/completions", json=bad)
        assert r.status_code == 400 and "json_schema.name" in r.json()["error"]["message"]
        strict = {"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {
            "name": "t", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}
        r = httpx.post(up.url + "/v1/chat/completions", json=strict)
        assert r.status_code == 400 and "additionalProperties" in r.json()["error"]["message"]
