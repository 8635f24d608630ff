"""The gateway token in its own header (``x-patchbay-token``), the user's Anthropic credential
where Claude Code puts it: a Claude subscription's OAuth bearer (with its beta) or an API key
reaches a ``client`` backend as it came, never a backend with a stored key or an OpenAI-format
one; the old way (the token as Bearer / x-api-key) still works; beyond loopback the token is
still needed everywhere. The official SDK is the client, the upstream a fake that checks the
credential as Anthropic does (tests/fakes/subscription.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.chunks import anthropic_message, anthropic_text_events
from tests.fakes.subscription import API_KEY, OAUTH_BETA, OAUTH_TOKEN, AccountGuard
from tests.fakes.upstreams import (
    AnthropicJSON,
    AnthropicStream,
    FakeUpstream,
    ReceivedRequest,
    Response,
    anthropic_error,
)
from tests.gateway.conftest import TOKEN, Gateway, config_text

USER = [{"role": "user", "content": "hello"}]
STORED_DS = "stored-deepseek-key-0123456789"
STORED_ANT = "stored-anthropic-key-0123456789"
BETAS = f"claude-code-20250219,{OAUTH_BETA},interleaved-thinking-2025-05-14"
SUB = {"x-patchbay-token": TOKEN, "anthropic-beta": BETAS}


@pytest.fixture
def account() -> Iterator[tuple[FakeUpstream, AccountGuard]]:
    g = AccountGuard(gateway_token=TOKEN)
    def answer(r: ReceivedRequest) -> Response:
        return AnthropicStream(anthropic_text_events("from anthropic", 2)) if r.is_stream else \
            AnthropicJSON(anthropic_message("from anthropic"))

    with FakeUpstream(answer, wire="anthropic", guard=g.guard) as up:
        yield up, g


@pytest.fixture
def stored_ant() -> Iterator[FakeUpstream]:
    with FakeUpstream(wire="anthropic") as up:
        yield up


def _config(account: FakeUpstream, deepseek: FakeUpstream, stored: FakeUpstream, host: str = "") -> str:
    text = config_text([
        {"id": "anthropic", "kind": "anthropic", "base_url": account.url, "auth": "client", "local": False},
        {"id": "deepseek", "kind": "openai", "base_url": deepseek.url + "/v1", "auth": "env:PB_DS_KEY",
         "models": ["gpt-fake"], "local": False},
        {"id": "keyed", "kind": "anthropic", "base_url": stored.url, "auth": "env:PB_ANT_KEY", "local": False},
    ], active="anthropic")
    return text.replace("port = 0", f'host = "{host}"\nport = 0') if host else text


@pytest.fixture
def gw(account: tuple[FakeUpstream, AccountGuard], openai_up: FakeUpstream, stored_ant: FakeUpstream,
       start_gateway: Any, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("PB_DS_KEY", STORED_DS)
    monkeypatch.setenv("PB_ANT_KEY", STORED_ANT)
    g: Gateway = start_gateway(_config(account[0], openai_up, stored_ant))
    return g


def _text(msg: anthropic.types.Message) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def _all_headers(up: FakeUpstream) -> str:
    return json.dumps([r.headers for r in up.requests]) + "".join(r.body.decode("utf-8", "replace")
                                                                  for r in up.requests)


def test_a_subscription_bearer_reaches_a_client_backend_as_it_came(gw: Gateway, account: Any) -> None:
    up, guard = account
    sdk = anthropic.Anthropic(base_url=gw.url, auth_token=OAUTH_TOKEN, default_headers=SUB, max_retries=0)
    msg = sdk.messages.create(model="claude-fake", max_tokens=20, messages=USER)  # type: ignore[arg-type]
    assert _text(msg) == "from anthropic", guard.refused
    seen = up.requests_to("/v1/messages")[-1].headers
    assert seen["authorization"] == f"Bearer {OAUTH_TOKEN}" and seen["anthropic-beta"] == BETAS
    assert "x-patchbay-token" not in seen and TOKEN not in json.dumps(seen)
    with sdk.messages.stream(model="claude-fake", max_tokens=20, messages=USER) as s:  # type: ignore[arg-type]
        assert _text(s.get_final_message()) == "from anthropic"
    assert guard.refused == []


def test_an_api_key_reaches_a_client_backend_and_the_token_rides_beside_it(gw: Gateway, account: Any) -> None:
    """As Claude Code sends ANTHROPIC_API_KEY: x-api-key (the SDK itself now sends a Bearer)."""
    up, guard = account
    body = {"model": "claude-fake", "max_tokens": 20, "messages": USER}
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": API_KEY, "x-patchbay-token": TOKEN}, json=body)
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "from anthropic", r.text
    seen = up.requests_to("/v1/messages")[-1].headers
    assert seen["x-api-key"] == API_KEY and "authorization" not in seen and guard.refused == []


def test_the_users_credential_never_reaches_a_stored_key_or_openai_backend(gw: Gateway, openai_up: FakeUpstream,
                                                                          stored_ant: FakeUpstream) -> None:
    sdk = anthropic.Anthropic(base_url=gw.url, auth_token=OAUTH_TOKEN, default_headers=SUB, max_retries=0)
    for model in ("deepseek,gpt-fake", "keyed,claude-fake"):
        with sdk.messages.stream(model=model, max_tokens=20, messages=USER) as s:  # type: ignore[arg-type]
            assert s.get_final_message().content
    for model in ("deepseek,gpt-fake", "keyed,claude-fake"):
        r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": API_KEY, "x-patchbay-token": TOKEN},
                       json={"model": model, "max_tokens": 20, "messages": USER})
        assert r.status_code == 200, r.text
    for up, stored in ((openai_up, STORED_DS), (stored_ant, STORED_ANT)):
        sent = _all_headers(up)
        assert OAUTH_TOKEN not in sent and API_KEY not in sent and TOKEN not in sent, sent
        assert "x-patchbay-token" not in sent and stored in sent
    # the OAuth beta announces a bearer that a stored-key backend does not get
    assert all(OAUTH_BETA not in r.headers.get("anthropic-beta", "") for r in stored_ant.requests)
    assert stored_ant.requests[0].headers["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"


def test_a_stored_key_backend_needs_the_token_and_says_where_it_goes(gw: Gateway, openai_up: FakeUpstream) -> None:
    for headers in ({"anthropic-beta": BETAS}, {"x-patchbay-token": "not-the-token-000", "anthropic-beta": BETAS}):
        sdk = anthropic.Anthropic(base_url=gw.url, auth_token=OAUTH_TOKEN, default_headers=headers, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as err:
            sdk.messages.create(model="deepseek,gpt-fake", max_tokens=20, messages=USER)  # type: ignore[arg-type]
        message = err.value.body["error"]["message"]  # type: ignore[index]
        assert "x-patchbay-token" in message and "ANTHROPIC_CUSTOM_HEADERS" in message
        assert OAUTH_TOKEN not in message and "API key" not in message
    assert not openai_up.requests


def test_the_old_way_still_works(gw: Gateway, openai_up: FakeUpstream, account: Any) -> None:
    """Set-ups from before the header: the token as ANTHROPIC_AUTH_TOKEN (Bearer) or x-api-key."""
    up, guard = account
    for headers in ({"authorization": f"Bearer {TOKEN}"}, {"x-api-key": TOKEN}):
        for model, status in (("deepseek,gpt-fake", 200), ("claude-fake", 401)):
            # a client backend gets no credential then: the token is not the user's
            r = httpx.post(gw.url + "/v1/messages", headers=headers,
                           json={"model": model, "max_tokens": 20, "messages": USER})
            assert r.status_code == status, r.text
    assert guard.refused == ["x-api-key header is required"] * 2  # and never the gateway token
    assert all(TOKEN not in json.dumps(r.headers) for r in openai_up.requests + up.requests)


def test_the_other_routes_take_the_token_header(gw: Gateway) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        r = http.get("/v1/models", headers={"x-patchbay-token": TOKEN})
        assert r.status_code == 200 and "deepseek,gpt-fake" in r.text
        r = http.post("/v1/messages/count_tokens", headers={**SUB, "authorization": f"Bearer {OAUTH_TOKEN}"},
                      json={"model": "deepseek,gpt-fake", "messages": USER})
        assert r.status_code == 200 and r.json()["input_tokens"] > 0


def test_beyond_loopback_the_token_header_is_needed_and_the_bearer_still_goes_on(
        account: Any, openai_up: FakeUpstream, stored_ant: FakeUpstream, start_gateway: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    up, guard = account
    monkeypatch.setenv("PB_DS_KEY", STORED_DS)
    monkeypatch.setenv("PB_ANT_KEY", STORED_ANT)
    g: Gateway = start_gateway(_config(up, openai_up, stored_ant, host="0.0.0.0"))
    assert g.runtime.exposed
    body = {"model": "claude-fake", "max_tokens": 5, "messages": USER}
    with httpx.Client(base_url=g.url, timeout=10) as http:
        own = {"authorization": f"Bearer {OAUTH_TOKEN}", "anthropic-beta": BETAS}
        r = http.post("/v1/messages", headers=own, json=body)
        assert r.status_code == 401 and "beyond this machine" in r.json()["error"]["message"]
        assert http.get("/health", headers=own).status_code == 401
        assert not up.requests
        r = http.post("/v1/messages", headers=own | {"x-patchbay-token": TOKEN}, json=body)
        assert r.status_code == 200, r.text
        assert up.requests[-1].headers["authorization"] == f"Bearer {OAUTH_TOKEN}" and guard.refused == []
        assert http.get("/health", headers={"x-patchbay-token": TOKEN}).status_code == 200
        assert http.get("/v1/models", headers={"x-patchbay-token": TOKEN}).status_code == 200


def test_an_upstream_that_quotes_the_credential_back_leaks_it_nowhere(start_gateway: Any) -> None:
    """An upstream's 401 that repeats the bearer it got: the client, the request log (its row's
    error text) and the live view see it redacted."""
    def echo(req: ReceivedRequest) -> Response:
        return anthropic_error(401, "authentication_error",
                               f"Invalid bearer token {req.headers.get('authorization', '')[7:]} for this account")

    with FakeUpstream(wire="anthropic", guard=echo) as up:
        g: Gateway = start_gateway(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": up.url,
                                                 "auth": "client"}], active="anthropic"))
        for stream in (False, True):
            r = httpx.post(g.url + "/v1/messages", headers={"authorization": f"Bearer {OAUTH_TOKEN}", **SUB},
                           json={"model": "claude-fake", "max_tokens": 5, "messages": USER, "stream": stream})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            assert OAUTH_TOKEN not in r.text and "Invalid bearer token" in r.text
        assert up.requests[-1].headers["authorization"] == f"Bearer {OAUTH_TOKEN}"  # it did get it
        rows = g.finished(2)
        assert len(rows) == 2 and all(OAUTH_TOKEN not in repr(e) and TOKEN not in repr(e) for e in g.events())
