"""The gateway against upstreams that break the rules (tests/fakes/hostile.py, raw sockets).

Someone else's fault is never "a bug in Patchbay": a complete answer ends when its last event
came, a cut or stalled body is a 502/504 naming the backend, a 200 that is not an answer is
refused, odd chunks are skipped, the upstream's own words reach the client and the ledger alike,
and a key an upstream quotes back never reaches the client or the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from app.events import RequestFinished
from tests.fakes.hostile import CAPTIVE_PAGE, QUOTA_MESSAGE, HostileUpstream
from tests.gateway.conftest import TOKEN, config_text

USER = [{"role": "user", "content": "hello"}]
SECRET = "plain-secret-value-1234"  # no sk- shape: only the exact-secret scrub can find it


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as up:
        yield up


@pytest.fixture
def gw(start_gateway, hostile, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PB_HOSTILE_KEY", SECRET)
    return start_gateway(config_text([
        {"id": "claude", "kind": "anthropic", "base_url": hostile.url, "auth": "none"},
        {"id": "oai", "kind": "openai", "base_url": hostile.url + "/v1", "auth": "none", "models": ["gpt-fake"]},
        {"id": "keyed", "kind": "anthropic", "base_url": hostile.url, "auth": "env:PB_HOSTILE_KEY"},
    ], active="claude", extra="upstream_timeout_s = 3"))


def _post(gw, model: str, stream: bool, **kw):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=gw.url, timeout=20) as http:
        return http.post("/v1/messages", headers={"x-api-key": TOKEN},
                         json={"model": model, "max_tokens": 50, "stream": stream, "messages": USER, **kw})


def _last(gw) -> RequestFinished:  # type: ignore[no-untyped-def]
    done = gw.finished(1)
    assert done, "no ledger record was published"
    return done[-1]


@pytest.mark.parametrize("model,behaviour", [("claude,claude-fake", "sse_unended"),
                                             ("oai,gpt-fake", "openai_done_unended")])
def test_a_complete_stream_ends_at_its_last_event_though_the_body_never_ends(gw, hostile, model, behaviour):
    hostile.behave(behaviour)
    t0 = time.monotonic()
    with gw.client(timeout=20) as c:
        with c.messages.stream(model=model, max_tokens=50, messages=USER) as s:  # type: ignore[arg-type]
            text = s.get_final_text()
    took = time.monotonic() - t0
    assert text.strip()
    assert took < 2.5, f"the client waited {took:.1f} s for an answer it already had"
    rec = _last(gw)
    assert rec.error_type is None and rec.status == 200 and not rec.interrupted
    assert gw.runtime.health().get(model.split(",")[0]) is None or \
        gw.runtime.health()[model.split(",")[0]].state == "ok"


@pytest.mark.parametrize("model", ["claude,claude-fake", "oai,gpt-fake"])
def test_a_whole_answer_cut_mid_body_is_a_502_naming_the_backend(gw, hostile, model):
    hostile.behave("cut_mid_body")
    r = _post(gw, model, False)
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["type"] == "api_error"
    assert f'"{model.split(",")[0]}"' in err["message"] and "bug" not in err["message"].lower()


def test_a_whole_answer_stalled_mid_body_is_a_504_naming_the_backend(gw, hostile):
    hostile.behave("stall_mid_body")
    r = _post(gw, "claude,claude-fake", False)
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "timeout_error" and '"claude"' in err["message"]
    assert "bug" not in err["message"].lower()


@pytest.mark.parametrize("behaviour", ["html_200", "index_html_200", "error_json_200"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["claude,claude-fake", "oai,gpt-fake"])
def test_a_200_that_is_not_an_answer_is_refused(gw, hostile, behaviour, stream, model):
    hostile.behave(behaviour)
    r = _post(gw, model, stream)
    assert r.status_code == 502, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["type"] == "api_error" and f'"{model.split(",")[0]}"' in err["message"]
    if behaviour == "error_json_200":
        assert "quota exhausted" in err["message"]  # the upstream's words
    rec = _last(gw)
    assert rec.status == 502 and rec.error_type == "api_error"


def test_an_html_page_is_named_as_such_and_never_passed_as_the_answer(gw, hostile):
    hostile.behave("html_200")
    r = _post(gw, "claude,claude-fake", False)
    assert r.json()["type"] == "error" and not r.text.startswith(CAPTIVE_PAGE.decode())
    assert "an HTML page" in r.json()["error"]["message"] and "base_url" in r.json()["error"]["message"]


def test_odd_openai_chunk_shapes_keep_the_stream(gw, hostile, caplog):
    hostile.behave("odd_openai_chunks")
    caplog.set_level(logging.WARNING, logger="patchbay.backends")
    with gw.client(timeout=20) as c:
        with c.messages.stream(model="oai,gpt-fake", max_tokens=50, messages=USER) as s:
            text = s.get_final_text()
    assert text == "Before after."
    rec = _last(gw)
    assert rec.error_type is None and rec.usage.output_tokens == 5
    notes = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notes) == 1, "the odd chunks are logged once per stream"


def test_a_quota_error_inside_a_200_stream_keeps_the_upstreams_words_in_both_places(gw, hostile):
    hostile.behave("quota_in_stream")
    with gw.client(timeout=20) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            with c.messages.stream(model="oai,gpt-fake", max_tokens=50, messages=USER) as s:
                s.get_final_text()
    seen = str(info.value)
    assert QUOTA_MESSAGE in seen
    rec = _last(gw)
    assert rec.error_message == QUOTA_MESSAGE
    assert rec.error_type == "rate_limit_error"


def test_invalid_utf8_in_a_chunk_becomes_replacement_characters(gw, hostile):
    hostile.behave("invalid_utf8")
    with gw.client(timeout=20) as c:
        with c.messages.stream(model="oai,gpt-fake", max_tokens=50, messages=USER) as s:
            text = s.get_final_text()
    assert text == "Start caf\ufffd ok"


@pytest.mark.parametrize("stream", [False, True])
def test_a_401_quoting_the_stored_key_never_reaches_the_client_or_the_log(gw, hostile, caplog, stream):
    hostile.behave("echo_key_401")
    caplog.set_level(logging.INFO)
    r = _post(gw, "keyed,claude-fake", stream)
    assert hostile.requests[-1][0]["x-api-key"] == SECRET  # the upstream did get it
    assert r.status_code == 424  # a stored key refused: the client is told not to retry (app/proxy/stops.py)
    assert SECRET not in r.text and "[redacted]" in r.text
    rec = _last(gw)
    assert SECRET not in (rec.error_message or "")
    assert "request " in caplog.text and SECRET not in caplog.text
