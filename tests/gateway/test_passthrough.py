"""Anthropic SDK → gateway → fake Anthropic-format upstream: bytes pass through unchanged."""

from __future__ import annotations

import threading
import time

import anthropic
import pytest

from app.events import ContentDelta
from tests.fakes.chunks import anthropic_text_events, anthropic_tool_use_events
from tests.fakes.upstreams import AnthropicStream, anthropic_error
from tests.gateway.conftest import TOKEN, config_text

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def gw(start_gateway, anthropic_up):  # type: ignore[no-untyped-def]
    return start_gateway(config_text([
        {"id": "claude", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "env:PB_TEST_ANTHROPIC_KEY"},
        {"id": "mine", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "client"},
    ], active="claude"))


@pytest.fixture(autouse=True)
def _key(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PB_TEST_ANTHROPIC_KEY", "sk-ant-upstream-secret")


def test_stream_bytes_reach_the_client_unchanged(gw, anthropic_up):
    stream = AnthropicStream(anthropic_text_events("Bonjour, ça va? ☃ " * 5, pieces=9, usage=(30, 12, 500, 40)),
                             split="awkward")
    anthropic_up.enqueue(stream)
    with gw.http() as http:
        r = http.post("/v1/messages?beta=true", headers={"x-api-key": TOKEN, "anthropic-version": "2023-06-01",
                                                         "anthropic-beta": "claude-code-20250219,foo-2099-01-01"},
                      json={"model": "claude-opus-5-5", "max_tokens": 100, "stream": True, "messages": USER})
    assert r.status_code == 200
    expected = b"".join(stream.plan.body_frames) if hasattr(stream.plan, "body_frames") else None
    sent = anthropic_up.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,foo-2099-01-01"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == "sk-ant-upstream-secret"
    assert TOKEN not in str(sent.headers)
    # the client got exactly the SSE the upstream produced
    from tests.fakes.upstreams import AnthropicStream as _AS

    reference = b"".join(_AS.frame(e) for e in anthropic_text_events("Bonjour, ça va? ☃ " * 5, pieces=9,
                                                                      usage=(30, 12, 500, 40)))
    assert r.content == reference
    assert expected is None or r.content == expected
    fin = gw.finished(1)[0]
    u = fin.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (30, 12, 500, 40)
    assert fin.backend == "claude" and fin.ttft_ms is not None


def test_sdk_gets_tool_use_through_passthrough(gw, anthropic_up):
    anthropic_up.enqueue(AnthropicStream(anthropic_tool_use_events([("Write", {"file_path": "a", "content": "b"})]),
                                         split="awkward"))
    with gw.client().messages.stream(model="claude-x", max_tokens=100, messages=USER) as s:
        msg = s.get_final_message()
    assert msg.content[-1].type == "tool_use" and msg.content[-1].input == {"file_path": "a", "content": "b"}
    kinds = [e.kind for e in gw.events() if isinstance(e, ContentDelta)]
    assert "tool_use" in kinds and "tool_input" in kinds


def test_client_auth_forwards_the_callers_key_never_the_gateway_token(gw, anthropic_up):
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("hi")))
    client = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-users-own", max_retries=0)
    client.messages.create(model="mine,claude-x", max_tokens=5, messages=USER, stream=True).close()
    sent = anthropic_up.requests[-1]
    assert "sk-ant-users-own" in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))
    assert sent.json["model"] == "claude-x"
    # Claude Code with ANTHROPIC_AUTH_TOKEN=<gateway token> and ANTHROPIC_API_KEY=<own key>: only the key goes on
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("hi")))
    with gw.http() as http:
        r = http.post("/v1/messages", headers={"x-api-key": "sk-ant-users-own", "authorization": f"Bearer {TOKEN}"},
                      json={"model": "mine,claude-x", "max_tokens": 5, "stream": True, "messages": USER})
    assert r.status_code == 200
    sent = anthropic_up.requests[-1]
    assert sent.headers.get("x-api-key") == "sk-ant-users-own"
    assert TOKEN not in str(sent.headers)


def test_upstream_error_body_is_forwarded_verbatim(gw, anthropic_up):
    anthropic_up.enqueue(anthropic_error(529, "overloaded_error", "Overloaded", **{"retry-after": "7"}))
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER, stream=True)
    assert info.value.status_code == 529
    # the upstream's body as it came, but for its request_id: ours, the one in the header and the ledger
    rid = info.value.response.headers["request-id"]
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                               "request_id": rid}
    assert rid.startswith("req_") and rid != "req_fake"
    assert info.value.response.headers.get("retry-after") == "7"


def test_upstream_cut_mid_stream_gives_an_error_event_not_a_hang(gw, anthropic_up):
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("a b c d e f g h", pieces=8), cut_after=5,
                                         split="awkward"))
    t0 = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as info:
        with gw.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
            s.get_final_message()
    assert time.monotonic() - t0 < 10
    assert "incomplete" in str(info.value)
    assert gw.finished(1)[0].error_type == "api_error"


def test_client_disconnect_cancels_the_upstream_request(gw, anthropic_up):
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("x " * 200, pieces=100), delay_s=0.05))
    with gw.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
        for i, _ in enumerate(s):
            if i == 5:
                break
    fin = gw.finished(1)[0]
    assert fin.error_type == "client_closed" and fin.status == 200
    deadline = time.monotonic() + 5
    while anthropic_up.requests[-1].outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert anthropic_up.requests[-1].outcome == "peer-closed"


def test_switch_applies_to_the_next_request_not_to_one_in_flight(start_gateway, anthropic_up, openai_up):
    from tests.fakes.chunks import openai_text_chunks
    from tests.fakes.upstreams import OpenAIStream

    gw = start_gateway(config_text([
        {"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"},
        {"id": "o", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "none", "models": ["g"]},
    ], active="a"))
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("slow " * 20, pieces=20), delay_s=0.03))
    openai_up.enqueue(OpenAIStream(openai_text_chunks("fast")))
    result: dict[str, str] = {}

    def slow() -> None:
        with gw.client().messages.stream(model="c", max_tokens=5, messages=USER) as s:
            result["slow"] = s.get_final_text()

    t = threading.Thread(target=slow)
    t.start()
    anthropic_up.wait_for_requests(1, timeout=10)  # the slow one is in flight at its upstream
    gw.runtime.set_active("o", None)
    with gw.client().messages.stream(model="c", max_tokens=5, messages=USER) as s:
        result["fast"] = s.get_final_text()
    t.join(10)
    assert result == {"slow": "slow " * 20, "fast": "fast"}


def test_pinned_session_routes_only_that_session(start_gateway, anthropic_up, openai_up):
    from tests.fakes.chunks import openai_text_chunks
    from tests.fakes.upstreams import OpenAIStream

    gw = start_gateway(config_text([
        {"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"},
        {"id": "o", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "none", "models": ["g1", "g2"]},
    ], active="a"))
    gw.runtime.pin_session("pinned", "o", "g2")
    openai_up.enqueue(OpenAIStream(openai_text_chunks("from openai")))
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("from anthropic")))
    pinned = gw.client(default_headers={"X-Claude-Code-Session-Id": "pinned"})
    other = gw.client(default_headers={"X-Claude-Code-Session-Id": "other"})
    with pinned.messages.stream(model="c", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "from openai"
    with other.messages.stream(model="c", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "from anthropic"
    assert openai_up.requests[-1].json["model"] == "g2"
    gw.runtime.unpin_session("pinned")
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("back")))
    with pinned.messages.stream(model="c", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "back"


def test_pin_header_routes_that_client_only_and_is_not_forwarded(start_gateway, anthropic_up, openai_up):
    from tests.fakes.chunks import openai_text_chunks
    from tests.fakes.upstreams import OpenAIStream

    gw = start_gateway(config_text([
        {"id": "a", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"},
        {"id": "o", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "none", "models": ["g1", "g2"]},
    ], active="a"))
    openai_up.enqueue(OpenAIStream(openai_text_chunks("from openai")))
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("from anthropic")))
    pinned = gw.client(default_headers={"x-patchbay-pin": "o,g2", "X-Claude-Code-Session-Id": "s1"})
    other = gw.client(default_headers={"X-Claude-Code-Session-Id": "s1"})
    with pinned.messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "from openai"
    assert openai_up.requests[-1].json["model"] == "g2"
    with other.messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "from anthropic"
    assert "x-patchbay-pin" not in {k.lower() for k in anthropic_up.requests[-1].headers}

    # a backend alone keeps the backend's own model choice; an unknown one is a clear 400
    anthropic_up.enqueue(AnthropicStream(anthropic_text_events("pinned to a")))
    with gw.client(default_headers={"x-patchbay-pin": "a"}).messages.stream(
            model="claude-x", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "pinned to a"
    assert anthropic_up.requests[-1].json["model"] == "claude-x"
    with pytest.raises(anthropic.BadRequestError) as err:
        gw.client(default_headers={"x-patchbay-pin": "nope,m"}).messages.create(
            model="claude-x", max_tokens=5, messages=USER)
    assert "no backend named 'nope'" in err.value.message and "x-patchbay-pin" in err.value.message
