"""Server tools (WebSearch / WebFetch) never reach an OpenAI-compatible model, which would invent
the results: they go to `[routes] web_search` (also for a pinned client), else to an Anthropic
backend on Anthropic's API that can pay for them, else the client gets a 400 that Claude Code shows
at once. Real gateway, the anthropic SDK as client, fake upstreams."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from app.config import parse_config
from app.proxy.routing import Refusal, Route, RoutingTable
from app.proxy.server_tools import place, server_tools
from tests.fakes import AnthropicStream, FakeUpstream, anthropic_text_events
from tests.gateway.conftest import config_text

SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}]
FETCH = [{"type": "web_fetch_20250910", "name": "web_fetch"}]
ASK = [{"role": "user", "content": "Perform a web search for the query: patchbay gateway"}]


def search(gw: Any, tools: list[dict[str, Any]] = SEARCH, **kw: Any) -> str:
    with gw.client().messages.stream(model="claude-opus-5-5", max_tokens=2000, messages=ASK, tools=tools,
                                     **kw) as s:
        return s.get_final_text()


def test_a_pinned_client_still_searches_on_the_web_search_backend(start_gateway):
    with FakeUpstream(wire="anthropic") as claude, FakeUpstream(wire="openai") as oai:
        gw = start_gateway(config_text([
            {"id": "oai", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none", "models": ["deep-chat"]},
            {"id": "claude", "kind": "anthropic", "base_url": claude.url, "auth": "none"},
        ], active="oai") + '\n\n[routes]\nweb_search = "claude,claude-sonnet-5-5"\n')
        claude.enqueue(AnthropicStream(anthropic_text_events("real results", 2)))
        assert search(gw, extra_headers={"x-patchbay-pin": "oai"}) == "real results"
        claude.enqueue(AnthropicStream(anthropic_text_events("fetched", 2)))
        assert search(gw, FETCH, extra_headers={"x-patchbay-pin": "oai"}) == "fetched"
        assert not oai.requests_to("/chat/completions")
        assert [(e.route, e.backend) for e in gw.finished(2)] == [("web_search", "claude")] * 2


def test_without_a_backend_that_can_search_the_client_is_told_at_once(start_gateway):
    with FakeUpstream(wire="openai") as oai:
        gw = start_gateway(config_text([
            {"id": "deepseek", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none",
             "models": ["deepseek-chat"]}], active="deepseek"))
        with pytest.raises(anthropic.BadRequestError) as err:
            search(gw)
        assert err.value.response.headers.get("x-should-retry") == "false"
        body = err.value.response.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "web_search" in body["error"]["message"] and '"deepseek"' in body["error"]["message"]
        assert "[routes]" in body["error"]["message"] and "bug" not in body["error"]["message"]
        assert not oai.requests_to("/chat/completions")  # nothing was sent to be made up
        # tool_choice none: the model may not call it, so the request goes as usual
        oai_answer = search(gw, tool_choice={"type": "none"})
        assert oai_answer and len(oai.requests_to("/chat/completions")) == 1


def test_a_fallback_that_cannot_search_is_not_tried(start_gateway):
    from tests.fakes import anthropic_error

    with FakeUpstream(wire="anthropic") as claude, FakeUpstream(wire="openai") as oai:
        gw = start_gateway(config_text([
            {"id": "claude", "kind": "anthropic", "base_url": claude.url, "auth": "none"},
            {"id": "oai", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none", "models": ["deep-chat"]},
        ], active="claude") + '\n\n[routes]\nfallback = ["oai"]\n')
        claude.enqueue(anthropic_error(529, "overloaded_error", "Overloaded"))
        with pytest.raises(anthropic.APIStatusError) as err:
            search(gw)
        assert err.value.status_code == 529 and not oai.requests_to("/chat/completions")


ANTHROPIC_CONFIG = '''
[[backends]]
id = "deepseek"
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
auth = "none"
models = ["deepseek-chat"]

[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "client"

[[backends]]
id = "claude-key"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "env:ANTHROPIC_KEY_FOR_TEST"

[active]
backend = "deepseek"
'''


def test_an_anthropic_backend_that_can_pay_runs_the_search():
    """No [routes] web_search: the first backend on Anthropic's API with a key of its own, or
    auth = "client" when the client brought its own Anthropic credential."""
    t = RoutingTable.from_config(parse_config(ANTHROPIC_CONFIG))
    route = Route("deepseek", "deepseek-chat", "active", "claude-opus-5-5")
    body = {"tools": SEARCH}
    r = place(t, route, body, False, lambda r: True)
    assert isinstance(r, Route) and (r.backend, r.model, r.rule) == ("claude-key", "claude-opus-5-5", "server_tools")
    r = place(t, route, body, True, lambda r: True)
    assert isinstance(r, Route) and r.backend == "anthropic"
    r = place(t, route, body, False, lambda r: r.backend != "claude-key")  # e.g. a team policy refuses it
    assert isinstance(r, Refusal) and r.status == 400
    assert place(t, route, {"tools": [{"name": "Read", "input_schema": {}}]}, False, lambda r: True) is route
    assert server_tools({"tools": SEARCH + FETCH}) == ["web_search", "web_fetch"]
