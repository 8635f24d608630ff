"""The gateway's own answers: errors in Anthropic's shape, auth, limits, the small endpoints."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream
from tests.gateway.conftest import TOKEN, config_text

AUTH = {"x-api-key": TOKEN}
OK_BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _error(r: httpx.Response, status: int, etype: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == etype
    return body["error"]["message"]


@pytest.mark.parametrize("raw, needle", [
    (b'{"model": "m", "messages": [', "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"messages": []}', "model: Field required"),
    (b'{"model": "m", "max_tokens": 5}', "messages: Field required"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"model": "m", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}', "messages.0"),
])
def test_bad_requests_get_400_naming_the_problem(two_backends, raw, needle):
    with two_backends.http() as http:
        r = http.post("/v1/messages", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert needle in _error(r, 400, "invalid_request_error")


def test_unknown_backend_in_model_name(two_backends):
    with two_backends.http() as http:
        r = http.post("/v1/messages", headers=AUTH, json={**OK_BODY, "model": "nope,some-model"})
    msg = _error(r, 400, "invalid_request_error")
    assert "'nope'" in msg and "claude" in msg and "oai" in msg


def test_body_over_the_limit_gets_413(start_gateway, anthropic_up):
    gw = start_gateway(config_text([{"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"}],
                                   active="a", extra="max_body_mb = 1"))
    big = {**OK_BODY, "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    with gw.http() as http:
        r = http.post("/v1/messages", headers=AUTH, json=big)
    assert "limit of 1 MB" in _error(r, 413, "request_too_large")
    assert anthropic_up.requests == []


def test_token_is_required_and_never_echoed(two_backends):
    with two_backends.http() as http:
        r = http.post("/v1/messages", json=OK_BODY)
        assert "gateway token" in _error(r, 401, "authentication_error")
        r = http.post("/v1/messages", json=OK_BODY, headers={"authorization": "Bearer wrong-secret-value"})
        msg = _error(r, 401, "authentication_error")
        assert "wrong-secret-value" not in msg and TOKEN not in msg
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=two_backends.url, api_key="bad", max_retries=0).messages.create(**OK_BODY)


def test_bearer_token_works(two_backends, openai_up):
    from tests.fakes.chunks import openai_completion
    from tests.fakes.upstreams import OpenAIJSON

    openai_up.enqueue(OpenAIJSON(openai_completion("ok")))
    c = anthropic.Anthropic(base_url=two_backends.url, auth_token=TOKEN, max_retries=0)
    assert c.messages.create(**OK_BODY).content[0].text == "ok"


def test_web_pages_are_refused(two_backends):
    with two_backends.http() as http:
        r = http.post("/v1/messages", headers={**AUTH, "origin": "https://evil.example"}, json=OK_BODY)
    assert "allowed_origins" in _error(r, 403, "permission_error")


def test_head_models_health_and_unknown_paths(two_backends):
    with two_backends.http() as http:
        assert http.head("/").status_code == 200
        assert http.head("/api/hello").status_code == 200
        models = http.get("/v1/models?limit=1000", headers=AUTH).json()
        assert [m["id"] for m in models["data"]] == ["oai,gpt-fake", "oai,gpt-other"]
        assert models["has_more"] is False and models["data"][0]["type"] == "model"
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["active"]["backend"] == "oai"
        assert "POST /v1/messages" in _error(http.get("/v2/whatever"), 404, "not_found_error")
        assert "takes POST" in _error(http.get("/v1/messages", headers=AUTH), 405, "invalid_request_error")


def test_count_tokens(two_backends, anthropic_up):
    with two_backends.http() as http:
        r = http.post("/v1/messages/count_tokens?beta=true", headers=AUTH,
                      json={"model": "m", "messages": [{"role": "user", "content": "hello " * 400}]})
        assert r.status_code == 200 and 400 <= r.json()["input_tokens"] <= 1200
        # an Anthropic-format upstream counts itself
        r = http.post("/v1/messages/count_tokens", headers=AUTH,
                      json={"model": "claude,claude-x", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and "input_tokens" in r.json()
    assert anthropic_up.requests[-1].path == "/v1/messages/count_tokens"


def test_paused_gateway_says_so_and_tells_claude_code_not_to_retry(two_backends, anthropic_up):
    two_backends.runtime.pause()
    before = len(anthropic_up.requests)
    with two_backends.http() as http:
        r = http.post("/v1/messages", headers=AUTH, json=OK_BODY)
    message = _error(r, 503, "api_error")  # not overloaded_error: nothing is overloaded
    assert "paused" in message and "resume" in message.lower()
    assert r.headers["x-should-retry"] == "false"  # Claude Code (and the SDKs) stop retrying and show the message
    assert len(anthropic_up.requests) == before  # nothing went upstream
    two_backends.runtime.resume()


def test_missing_api_key_is_a_sentence(start_gateway, anthropic_up, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    gw = start_gateway(config_text([{"id": "a", "kind": "anthropic", "base_url": anthropic_up.url,
                                     "auth": "env:NOT_SET_ANYWHERE"},
                                    {"id": "k", "kind": "anthropic", "base_url": anthropic_up.url}], active="a"))
    with gw.http() as http:
        r = http.post("/v1/messages", headers=AUTH, json=OK_BODY)
        assert "NOT_SET_ANYWHERE" in _error(r, 401, "authentication_error")
        r = http.post("/v1/messages", headers=AUTH, json={**OK_BODY, "model": "k,claude-x"})
        assert "patchbay key set k" in _error(r, 401, "authentication_error")
    assert anthropic_up.requests == []


def test_keychain_key_is_used_once_stored(start_gateway, anthropic_up):
    from app.host import secrets

    gw = start_gateway(config_text([{"id": "k", "kind": "anthropic", "base_url": anthropic_up.url}], active="k"))
    secrets.set_api_key("k", "sk-from-keychain")
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("hi")))
    with gw.http() as http:
        r = http.post("/v1/messages", headers=AUTH, json={**OK_BODY, "stream": True})
    assert r.status_code == 200
    assert anthropic_up.requests[-1].headers["x-api-key"] == "sk-from-keychain"


def test_port_in_use_is_a_clear_start_error(start_gateway, anthropic_up):
    from app.proxy.server import GatewayStartError

    gw = start_gateway(config_text([{"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"}],
                                   active="a"))
    port = gw.runtime.port
    with pytest.raises(GatewayStartError, match=f"Port {port} on 127.0.0.1 is already in use"):
        start_gateway(config_text([{"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"}],
                                  active="a").replace("port = 0", f"port = {port}"))
