"""Routing by Claude Code's own hint headers, tested against the request shapes recorded from the
real CLI (tests/fixtures/claude_code_requests.json, written by scripts/record_claude_requests.py;
docs/claude-code-requests.md describes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.config import parse_config
from app.proxy.hints import Hints, asks_for_reasoning, is_classifier_shape
from app.proxy.routing import Route, RoutingTable
from tests.fakes import bodies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_code_requests.json"
RECORDED = json.loads(FIXTURES.read_text())

BASE = '''
[[backends]]
id = "main"
kind = "anthropic"
base_url = "http://127.0.0.1:1"
auth = "none"

[[backends]]
id = "cheap"
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
auth = "none"
models = ["small"]

[[backends]]
id = "big"
kind = "anthropic"
base_url = "http://127.0.0.1:3"
auth = "none"

[active]
backend = "main"
'''
ALL = BASE + '''
[routes]
background = "cheap,small"
think = "big,deep"
subagent = "cheap,agent"
compaction = "big,summariser"
'''
NO_NEW_TARGETS = BASE + '[routes]\nbackground = "cheap,small"\nthink = "big,deep"\n'


def recorded(kind: str) -> dict[str, Any]:
    for r in RECORDED["requests"]:
        if r["kind"] == kind:
            return r  # type: ignore[no-any-return]
    raise AssertionError(f"no recorded request of kind {kind!r} in {FIXTURES}")


def as_request(rec: dict[str, Any]) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """The body and headers of a recorded request (tools stand in by name: routing reads their count)."""
    body: dict[str, Any] = {"model": rec["model"], "max_tokens": rec["max_tokens"],
                            "messages": [{"role": "user", "content": rec["first_user_text"] or "hi"}],
                            "stream": rec["stream"]}
    if rec["tools"]:
        body["tools"] = [{"name": n, "input_schema": {"type": "object"}} for n in rec["tool_names"]]
    for key in ("thinking", "output_config"):
        if rec[key] is not None:
            body[key] = rec[key]
    headers = {k.encode(): v.encode() for k, v in rec["headers"].items()}
    return body, headers


def rule_for(rec: dict[str, Any], text: str = ALL, *, hints: bool = True) -> Route:
    body, headers = as_request(rec)
    table = RoutingTable.from_config(parse_config(text))
    r = table.resolve(body["model"], None, None, body=body, subagent=b"x-claude-code-agent-id" in headers,
                      hints=Hints.from_headers(headers) if hints else None)
    assert isinstance(r, Route), r
    return r


def test_the_recordings_come_from_the_pinned_claude_code_and_hold_no_secret():
    assert RECORDED["claude_code_version"] == "2.1.332"
    kinds = {r["kind"] for r in RECORDED["requests"]}
    assert {"main/main", "auxiliary/summary-extraction", "subagent/blocking-subagent", "compaction/main"} <= kinds
    text = FIXTURES.read_text()
    assert "recorder" not in text.replace("recorded_with", "").replace("record_claude", "")  # the auth token
    for r in RECORDED["requests"]:
        assert r["headers"].get("authorization") in (None, "<scrubbed>")


@pytest.mark.parametrize("kind, rule, backend, model", [
    ("main/main", "active", "main", "claude-opus-5-5"),  # adaptive thinking on every turn is no ask to think
    ("main/main after a tool call", "active", "main", "claude-opus-5-5"),
    ("auxiliary/summary-extraction", "background", "cheap", "small"),  # the session title: main model, 128000
    ("subagent/blocking-subagent", "subagent", "cheap", "agent"),
    ("compaction/main", "compaction", "big", "summariser"),
])
def test_recorded_claude_code_requests_route_by_their_hints(kind: str, rule: str, backend: str, model: str):
    r = rule_for(recorded(kind))
    assert (r.rule, r.backend, r.model) == (rule, backend, model)


@pytest.mark.parametrize("kind", ["subagent/blocking-subagent", "compaction/main"])
def test_without_a_subagent_or_compaction_target_they_stay_with_the_main_model(kind: str):
    r = rule_for(recorded(kind), NO_NEW_TARGETS)
    assert (r.rule, r.backend) == ("active", "main")


def test_the_safety_classifier_with_its_hints_stays_with_the_main_model():
    """auxiliary + main (read from the 2.1.332 binary; auto mode refuses to run against a base URL
    that is not Anthropic's, so it cannot be recorded here): never the cheap background model."""
    body = bodies.classifier_request()
    headers = {b"x-claude-code-request-class": b"auxiliary", b"x-claude-1p-request-class": b"main"}
    table = RoutingTable.from_config(parse_config(ALL))
    r = table.resolve(body["model"], None, None, body=body, hints=Hints.from_headers(headers))
    assert isinstance(r, Route) and (r.rule, r.backend) == ("active", "main")
    # other auxiliary work (a web-fetch summary, prompt suggestions) is background
    for first in (b"summary-extraction", b"followup-generation", b"background-task"):
        h = {b"x-claude-code-request-class": b"auxiliary", b"x-claude-1p-request-class": first}
        r = table.resolve(body["model"], None, None, body=bodies.title_request(), hints=Hints.from_headers(h))
        assert isinstance(r, Route) and r.rule == "background", first


def test_the_classifier_shape_without_hints_never_goes_to_background():
    table = RoutingTable.from_config(parse_config(ALL))
    for body in (bodies.classifier_request(), bodies.classifier_second_stage()):
        assert is_classifier_shape(body)
        r = table.resolve(body["model"], None, None, body=body)
        assert isinstance(r, Route) and r.rule == "active"
    # while a title of an older Claude Code (haiku, no tools, 512) still is background
    r = table.resolve(bodies.title_request()["model"], None, None, body=bodies.title_request())
    assert isinstance(r, Route) and r.rule == "background"
    assert not is_classifier_shape(bodies.title_request()) and not is_classifier_shape(bodies.main_turn(40))


def test_without_hints_a_subagent_is_known_by_its_agent_id_header():
    r = rule_for(recorded("subagent/blocking-subagent"), hints=False)
    assert (r.rule, r.backend) == ("subagent", "cheap")


def test_the_hints_replace_the_guesses_where_they_are_sent():
    """A tool-less haiku request at max_tokens 300 scores as background by shape, but Claude Code
    marks it main (the classifier's investigator, say): the hint wins."""
    body = {"model": "claude-haiku-5-5", "max_tokens": 300, "messages": [{"role": "user", "content": "x"}]}
    table = RoutingTable.from_config(parse_config(ALL))
    main = Hints.from_headers({b"x-claude-code-request-class": b"main", b"x-claude-1p-request-class": b"main"})
    assert table.resolve(body["model"], None, None, body=body).rule == "background"  # type: ignore[union-attr]
    assert table.resolve(body["model"], None, None, body=body, hints=main).rule == "active"  # type: ignore[union-attr]


@pytest.mark.parametrize("body, expected", [
    ({"thinking": {"type": "adaptive"}}, False),
    ({"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "medium"}}, False),
    ({"thinking": {"type": "enabled"}}, False),
    ({"thinking": {"type": "enabled", "budget_tokens": 0}}, False),
    ({"thinking": {"type": "enabled", "budget_tokens": True}}, False),
    ({"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}}, False),
    ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, True),
    ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}, True),
    ({"output_config": {"effort": "max"}}, True),
])
def test_think_fires_only_on_an_explicit_reasoning_request(body: dict[str, Any], expected: bool):
    assert asks_for_reasoning(body) is expected


def test_no_hint_headers_means_no_hints():
    assert Hints.from_headers({b"x-claude-code-session-id": b"abc"}) is None
    h = Hints.from_headers({b"x-claude-code-request-class": b"Subagent ", b"x-claude-code-agent-type": b"Explore"})
    assert h == Hints("subagent", None, "explore") and h.is_subagent
