"""Anthropic SDK → gateway → a fake Vertex AI on loopback, with Google credentials obtained the
real way: google-auth reads a service-account key file (GOOGLE_APPLICATION_CREDENTIALS) and does
a JWT-bearer exchange with a fake OAuth token endpoint that checks the assertion's signature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from app.config import parse_config
from app.core import Engine
from tests.fakes.chunks import anthropic_message, anthropic_text_events
from tests.fakes.cloud import FakeGoogleAuth, google_bearer_guard
from tests.fakes.upstreams import AnthropicJSON, AnthropicStream, FakeUpstream, JSONResponse
from tests.gateway.conftest import TOKEN, config_text

USER = [{"role": "user", "content": "hello"}]
MODEL = "claude-sonnet-4-5@20250929"
PREFIX = "/v1/projects/my-proj-1/locations/us-east5/publishers/anthropic/models"


@pytest.fixture(autouse=True)
def google_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # never the developer's gcloud login
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def _start_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lifetimes: tuple[int, ...]) -> FakeGoogleAuth:
    auth = FakeGoogleAuth(tmp_path, lifetimes).start()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(auth.key_file))
    return auth


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleAuth]:
    auth = _start_auth(tmp_path, monkeypatch, (3600,))
    yield auth
    auth.stop()


@pytest.fixture
def vertex(google: FakeGoogleAuth) -> Iterator[FakeUpstream]:
    with FakeUpstream(wire="anthropic", guard=google_bearer_guard(google)) as up:
        yield up


def _vertex_backend(url: str, **kw: object) -> dict[str, object]:
    return {"id": "gcp", "kind": "vertex", "project": "my-proj-1", "region": "us-east5", "base_url": url,
            "models": [MODEL], **kw}


def _bearers(up: FakeUpstream) -> list[str]:
    return [r.headers.get("authorization", "")[7:] for r in up.requests]


def test_stream_goes_to_stream_raw_predict_with_an_adc_token(vertex, google, start_gateway):
    gw = start_gateway(config_text([_vertex_backend(vertex.url)], active="gcp"))
    events = anthropic_text_events("Hello from Vertex ☃ " * 3, pieces=6, usage=(25, 8, 300, 0))
    vertex.enqueue(AnthropicStream(events, split="awkward"))
    client = gw.client(default_headers={"anthropic-beta": "context-management-2025-06-27"})
    with client.messages.stream(model="claude-opus-5-5", max_tokens=200, messages=USER) as s:
        msg = s.get_final_message()
    assert msg.content[0].text == "Hello from Vertex ☃ " * 3
    sent = vertex.requests[-1]
    assert sent.path == f"{PREFIX}/{MODEL}:streamRawPredict"
    body = sent.json
    assert "model" not in body and body["stream"] is True and body["anthropic_version"] == "vertex-2023-10-16"
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert sent.headers["authorization"] == "Bearer ya29.fake-1" and google.refused == []
    assert TOKEN not in str(sent.headers)
    fin = gw.finished(1)[0]
    assert (fin.usage.input_tokens, fin.usage.output_tokens, fin.usage.cache_read_input_tokens) == (25, 8, 300)
    assert fin.backend == "gcp" and fin.error_type is None


def test_non_streamed_request_uses_raw_predict(vertex, start_gateway):
    gw = start_gateway(config_text([_vertex_backend(vertex.url)], active="gcp"))
    vertex.enqueue(AnthropicJSON(anthropic_message("Whole.", usage=(7, 2))))
    assert gw.client().messages.create(model="claude-x", max_tokens=9, messages=USER).content[0].text == "Whole."
    assert vertex.requests[-1].path == f"{PREFIX}/{MODEL}:rawPredict"


def test_token_is_renewed_before_it_expires_and_reused_while_good(tmp_path, monkeypatch, start_gateway):
    # the first token has 100 s left: inside google-auth's refresh margin, so the next request
    # fetches a new one before it runs out; the second (an hour) is then reused
    auth = _start_auth(tmp_path, monkeypatch, (100, 3600))
    try:
        with FakeUpstream(wire="anthropic", guard=google_bearer_guard(auth)) as up:
            gw = start_gateway(config_text([_vertex_backend(up.url)], active="gcp"))
            for _ in range(3):
                with gw.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
                    s.get_final_message()
            assert _bearers(up) == ["ya29.fake-1", "ya29.fake-2", "ya29.fake-2"]
            assert auth.issued == ["ya29.fake-1", "ya29.fake-2"] and auth.refused == []
    finally:
        auth.stop()


def test_a_401_gets_a_fresh_token_and_one_retry(vertex, google, start_gateway):
    gw = start_gateway(config_text([_vertex_backend(vertex.url)], active="gcp"))
    gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    google.issued.remove("ya29.fake-1")  # revoked on Google's side: Vertex now answers 401
    msg = gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    assert msg.content[0].text == "Hello from the fake upstream."
    assert _bearers(vertex) == ["ya29.fake-1", "ya29.fake-1", "ya29.fake-2"]
    assert [r.outcome for r in vertex.requests] == ["sent", "sent", "sent"]


def test_count_tokens_uses_vertex_count_tokens(vertex, start_gateway):
    gw = start_gateway(config_text([_vertex_backend(vertex.url)], active="gcp"))
    vertex.enqueue(JSONResponse({"input_tokens": 17}), match=lambda r: r.path.endswith("count-tokens:rawPredict"))
    assert gw.client().messages.count_tokens(model="claude-x", messages=USER).input_tokens == 17
    sent = vertex.requests[-1]
    assert sent.path == f"{PREFIX}/count-tokens:rawPredict"
    assert sent.json["model"] == MODEL and sent.json["messages"] == USER


def test_missing_google_credentials_say_what_to_do(monkeypatch, tmp_path, start_gateway):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nowhere.json"))
    with FakeUpstream(wire="anthropic") as up:
        gw = start_gateway(config_text([_vertex_backend(up.url)], active="gcp"))
        with pytest.raises(anthropic.AuthenticationError) as info:
            gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
        assert up.requests == []
    text = str(info.value)
    assert "no Google credentials" in text and "gcloud auth application-default login" in text


def test_vertex_models_are_typed_in(patchbay_home):
    cfg = parse_config(config_text([_vertex_backend("https://example.invalid")], active="gcp"))
    eng = Engine()
    try:
        import asyncio

        with pytest.raises(RuntimeError) as info:
            asyncio.run(eng.list_models(cfg.backends[0]))
    finally:
        eng.stop()
    assert "Type the model ids" in str(info.value)


def test_a_model_that_refuses_the_betas_gets_none_from_then_on(google, start_gateway):
    auth_guard = google_bearer_guard(google)

    def guard(req):  # type: ignore[no-untyped-def]
        if "anthropic-beta" in req.headers:
            return JSONResponse({"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": "invalid beta flag"}}, 400)
        return auth_guard(req)

    with FakeUpstream(wire="anthropic", guard=guard) as up:
        gw = start_gateway(config_text([_vertex_backend(up.url)], active="gcp"))
        client = gw.client(default_headers={"anthropic-beta": "claude-code-20250219,per-turn-control-2026-07-01"})
        for _ in range(2):
            with client.messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
                assert s.get_final_message().content[0].text == "Hello from the fake upstream."
        assert ["anthropic-beta" in r.headers for r in up.requests] == [True, False, False]


def test_deferred_tools_are_sent_up_front_unless_the_tool_search_beta_goes_too(vertex, start_gateway):
    gw = start_gateway(config_text([_vertex_backend(vertex.url)], active="gcp"))
    tools = [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}},
             {"name": "NotebookEdit", "description": "edit", "input_schema": {"type": "object"}, "defer_loading": True}]
    up_front = [{k: v for k, v in t.items() if k != "defer_loading"} for t in tools]
    for beta, sent_tools in ((None, up_front), ("claude-code-20250219", up_front),
                             ("claude-code-20250219, tool-search-tool-2025-10-19", tools)):
        client = gw.client(default_headers={"anthropic-beta": beta} if beta else None)
        with client.messages.stream(model="claude-x", max_tokens=5, messages=USER, tools=tools) as s:
            s.get_final_message()
        assert vertex.requests[-1].json["tools"] == sent_tools, beta


def test_a_missing_transport_library_is_said_plainly_not_called_a_bug(vertex, start_gateway, monkeypatch):
    """An installation without google-auth's urllib3 extra (before pyproject declared it): the
    client hears which library is missing and how to fix it, not "a bug in Patchbay"."""
    import sys

    monkeypatch.setitem(sys.modules, "google.auth.transport.urllib3", None)  # as if not installed
    gw = start_gateway(config_text([_vertex_backend(vertex.url)], active="gcp"))
    with pytest.raises(anthropic.InternalServerError) as err:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    body = err.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    msg = body["error"]["message"]
    assert 'lacks a library the backend "gcp" (Vertex) needs' in msg and "google-auth[urllib3]" in msg
    assert "bug in Patchbay" not in msg
    assert vertex.requests == []
