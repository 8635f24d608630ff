"""Errors no retry can cure stop the client at once, naming the backend and the fix
(app/proxy/stops.py): a stored key its provider refuses, a backend that does not answer.
Claude Code itself is in tests/e2e/test_claude_code_stops.py."""

from __future__ import annotations

import socket

import anthropic
import pytest

from app.host import secrets
from tests.fakes import AnthropicStream, FakeUpstream, OpenAIStream, anthropic_text_events, openai_text_chunks
from tests.fakes.keys import KeyCheck
from tests.gateway.conftest import config_text

USER = [{"role": "user", "content": "hi"}]
WRONG = "sk-deepseek-wrong-0123456789abcdef"
GOOD = "sk-deepseek-good-0123456789abcdef"
LOGIN_WORDS = ("API key", "api key", "x-api-key")  # Claude Code turns these into "Please run /login"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def deepseek():
    with FakeUpstream(wire="openai", models=("deepseek-chat",), guard=KeyCheck("deepseek", GOOD)) as up:
        yield up


def _deepseek_gateway(start_gateway, url: str, routes: str = "", extra: list[dict[str, object]] | None = None):
    secrets.set_api_key("deepseek", WRONG)
    text = config_text([{"id": "deepseek", "kind": "openai", "base_url": url + "/v1", "auth": "keyring",
                         "models": ["deepseek-chat"]}] + (extra or []), active="deepseek", model="deepseek-chat")
    return start_gateway(text + routes)


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_stored_key_stops_the_client_with_the_fix(start_gateway, deepseek, stream):
    gw = _deepseek_gateway(start_gateway, deepseek.url)
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client(max_retries=5).messages.create(model="deepseek-chat", max_tokens=5, messages=USER, stream=stream)
    err = info.value
    assert err.status_code == 424 and err.response.headers["x-should-retry"] == "false"
    body = err.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error" and body["request_id"].startswith("req_")
    message = body["error"]["message"]
    assert message.startswith("The key stored for backend deepseek was refused by its provider (401: "
                              "Authentication Fails, Your key: ****cdef is invalid)")
    assert "set a new one with `patchbay key set deepseek` or in Settings → Backends" in message
    assert not any(w in message for w in LOGIN_WORDS) and WRONG not in message
    assert len([r for r in deepseek.requests if r.is_generation]) == 1  # one try: nothing to gain from more
    (done,) = gw.finished(1)
    assert (done.status, done.error_type, done.backend) == (424, "api_error", "deepseek")


def test_a_refused_stored_key_fails_over_to_the_fallback(start_gateway, deepseek, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("served by the fallback")))
    gw = _deepseek_gateway(start_gateway, deepseek.url, '\n\n[routes]\nfallback = ["spare,gpt-fake"]\n',
                           [{"id": "spare", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "none",
                             "models": ["gpt-fake"]}])
    with gw.client().messages.stream(model="deepseek-chat", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "served by the fallback"
    (done,) = gw.finished(1)
    assert (done.backend, done.attempts, done.status) == ("spare", 2, 200)


def test_a_client_credential_refused_upstream_is_passed_through(start_gateway):
    # auth = "client": the 401 is about the user's own credential (an expired subscription token
    # that Claude Code refreshes itself), so it reaches the client as the upstream sent it
    check = KeyCheck("anthropic", "users-own-key-that-works")
    with FakeUpstream(wire="anthropic", guard=check) as up:
        gw = start_gateway(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": up.url,
                                         "auth": "client"}], active="anthropic"))
        with pytest.raises(anthropic.AuthenticationError) as info:
            with anthropic.Anthropic(base_url=gw.url, api_key="users-expired-key-1234", max_retries=0) as c:
                c.messages.create(model="claude-fake", max_tokens=5, messages=USER)  # type: ignore[arg-type]
    assert info.value.status_code == 401 and "x-should-retry" not in info.value.response.headers
    assert info.value.response.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}


@pytest.mark.parametrize("backend_id,words", [
    ("ollama", "Ollama at {url} (backend \"ollama\") is not answering"),
    ("remote", 'The backend "remote" at {url} is not answering'),
])
def test_a_backend_that_is_down_stops_the_client_with_what_to_do(start_gateway, backend_id, words):
    url = f"http://127.0.0.1:{closed_port()}"
    gw = start_gateway(config_text([{"id": backend_id, "kind": "anthropic", "base_url": url, "auth": "none"}],
                                   active=backend_id))
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client(max_retries=5).messages.create(model="m", max_tokens=5, messages=USER)
    err = info.value
    assert err.status_code == 502 and err.response.headers["x-should-retry"] == "false"
    message = err.response.json()["error"]["message"]
    assert message.startswith(words.format(url=url)), message
    assert message.endswith("or switch backend in Patchbay.")
    if backend_id == "ollama":
        assert "start it with `ollama serve`" in message


def test_a_backend_that_is_down_still_fails_over(start_gateway, anthropic_up):
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("served by b")))
    gw = start_gateway(config_text([
        {"id": "ollama", "kind": "anthropic", "base_url": f"http://127.0.0.1:{closed_port()}", "auth": "none"},
        {"id": "b", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"}], active="ollama")
        + '\n\n[routes]\nfallback = ["b"]\n')
    with gw.client().messages.stream(model="m", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "served by b"


def test_a_backend_whose_name_does_not_resolve_stops_the_client_too(start_gateway):
    url = "https://patchbay-test.invalid/v1"  # .invalid never resolves (RFC 2606)
    gw = start_gateway(config_text([{"id": "remote", "kind": "openai", "base_url": url, "auth": "none",
                                     "models": ["m"]}], active="remote"))
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client(max_retries=5).messages.create(model="m", max_tokens=5, messages=USER)
    err = info.value
    assert err.status_code == 502 and err.response.headers["x-should-retry"] == "false"
    message = err.response.json()["error"]["message"]
    assert message.startswith(f'The backend "remote" at {url} could not be reached (')
    assert "check the address (base_url)" in message


def test_a_403_names_what_the_provider_said_and_offers_the_key_fix_only_if_it_is_about_the_key(start_gateway):
    from tests.fakes import openai_error

    moderated = openai_error(403, "Your chosen model requires moderation and your input was flagged", "forbidden")
    with FakeUpstream(moderated, wire="openai", models=("m",)) as up:
        secrets.set_api_key("router", GOOD)
        gw = start_gateway(config_text([{"id": "router", "kind": "openai", "base_url": up.url + "/v1",
                                         "auth": "keyring", "models": ["m"]}], active="router"))
        with pytest.raises(anthropic.APIStatusError) as info:
            gw.client(max_retries=5).messages.create(model="m", max_tokens=5, messages=USER)
    assert info.value.status_code == 424 and info.value.response.headers["x-should-retry"] == "false"
    assert info.value.response.json()["error"]["message"] == (
        "The provider of backend router refused this request (403: Your chosen model requires moderation and your "
        "input was flagged); if it is about the key, set a new one with `patchbay key set router` or in "
        "Settings → Backends.")


def test_a_backend_with_no_key_stored_fails_over_to_the_fallback(start_gateway, openai_up):
    openai_up.enqueue(OpenAIStream(openai_text_chunks("served by the fallback")))
    text = config_text([{"id": "nokey", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "keyring",
                         "models": ["m"]},
                        {"id": "spare", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "none",
                         "models": ["gpt-fake"]}], active="nokey", model="m")
    gw = start_gateway(text + '\n\n[routes]\nfallback = ["spare,gpt-fake"]\n')
    with gw.client().messages.stream(model="m", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "served by the fallback"
    (done,) = gw.finished(1)
    assert (done.backend, done.attempts, done.status) == ("spare", 2, 200)
    assert len(openai_up.requests) == 1  # nothing went out without a key


def test_a_key_not_stored_is_said_without_login_words_and_not_retried(start_gateway, openai_up):
    gw = start_gateway(config_text([{"id": "deepseek", "kind": "openai", "base_url": openai_up.url + "/v1",
                                     "auth": "keyring", "models": ["m"]}], active="deepseek", model="m"))
    with pytest.raises(anthropic.AuthenticationError) as info:
        gw.client(max_retries=5).messages.create(model="m", max_tokens=5, messages=USER)
    assert info.value.response.headers["x-should-retry"] == "false"
    message = info.value.response.json()["error"]["message"]
    assert 'No key is stored for the backend "deepseek"' in message and "`patchbay key set deepseek`" in message
    assert not any(w in message for w in LOGIN_WORDS) and openai_up.requests == []
