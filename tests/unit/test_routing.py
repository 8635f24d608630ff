"""Routing rules, their precedence, the background rule's clauses, [routes] parsing and the
circuit breaker's states (with a clock the test moves by hand)."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ConfigError, RouteTarget, parse_config
from app.proxy.health import Breaker, HealthBoard
from app.proxy.routing import Pin, Refusal, Route, RoutingTable, is_background
from tests.fakes import bodies

BASE = '''
[[backends]]
id = "main"
kind = "anthropic"
base_url = "http://127.0.0.1:1"
auth = "none"

[[backends]]
id = "local"
kind = "openai"
base_url = "http://127.0.0.1:2/v1"
auth = "none"
models = ["qwen3-coder:30b", "small"]

[[backends]]
id = "big"
kind = "anthropic"
base_url = "http://127.0.0.1:3"
auth = "none"

[active]
backend = "main"
'''

ALL_RULES = BASE + '''
[routes]
background = "local,small"
think = "big,claude-opus-think"
long_context = "big,gemini-long"
long_context_threshold = 3000
web_search = "main,claude-search"
image = "local"
fallback = ["big", "local,qwen3-coder:30b"]
'''


def table(text: str = ALL_RULES) -> RoutingTable:
    return RoutingTable.from_config(parse_config(text))


def route(body: dict[str, Any], *, t: RoutingTable | None = None, subagent: bool = False, session: str | None = None,
          pin_header: str | None = None) -> Route:
    r = (t or table()).resolve(body["model"], session, pin_header, body=body, subagent=subagent)
    assert isinstance(r, Route), r
    return r


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"model": "claude-sonnet-5-5", "max_tokens": 8000,
                         "messages": [{"role": "user", "content": "hello"}],
                         "tools": [{"name": "Read", "description": "read", "input_schema": {"type": "object"}}]}
    for k, v in kw.items():
        if v is None:
            b.pop(k, None)
        else:
            b[k] = v
    return b


WEB = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
IMAGE_MSG = [{"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}]}]}]
LONG_MSG = [{"role": "user", "content": "word " * 5000}]


# --------------------------------------------------------------------------- each rule


@pytest.mark.parametrize("b, rule, backend, model", [
    (body(), "active", "main", "claude-sonnet-5-5"),
    (body(tools=WEB), "web_search", "main", "claude-search"),
    (body(messages=LONG_MSG), "long_context", "big", "gemini-long"),
    (body(tools=None, max_tokens=512), "background", "local", "small"),
    (body(thinking={"type": "enabled", "budget_tokens": 4000}), "think", "big", "claude-opus-think"),
    (body(thinking={"type": "disabled"}), "active", "main", "claude-sonnet-5-5"),
    (body(messages=IMAGE_MSG), "image", "local", "qwen3-coder:30b"),  # no model: the backend's first
])
def test_each_rule_routes_to_its_target_and_is_recorded(b: dict[str, Any], rule: str, backend: str, model: str):
    r = route(b)
    assert (r.rule, r.backend, r.model, r.requested_model) == (rule, backend, model, b["model"])


def test_precedence_pin_then_the_rules_in_order_then_explicit():
    t = table().with_pin("s1", Pin("local", "small"))
    everything = body(tools=WEB + [{"name": "x", "input_schema": {}}], messages=LONG_MSG + IMAGE_MSG,
                      thinking={"type": "enabled", "budget_tokens": 2000}, max_tokens=100,
                      model="claude-haiku-5-5")
    # a pinned client keeps its explicit model (a pin switches the rules off)
    assert route(dict(everything, model="big,m1"), t=t, session="s1", pin_header="local").rule == "explicit"
    assert route(dict(everything, model="big,m1"), t=t, session="s1").rule == "explicit"
    assert route(everything, t=t, session="s1", pin_header="big").rule == "pin"
    r = route(everything, t=t, session="s1")
    assert (r.rule, r.backend, r.model) == ("pin", "local", "small")
    assert route(everything, t=t).rule == "web_search"
    everything["tools"] = []
    assert route(everything, t=t).rule == "long_context"
    everything["messages"] = IMAGE_MSG
    assert route(everything, t=t).rule == "background"  # no tools, small max_tokens, haiku
    everything["max_tokens"] = 9000
    everything["model"] = "claude-opus-5-5"
    everything["tools"] = [{"name": "Read", "input_schema": {}}]
    assert route(everything, t=t).rule == "think"
    everything.pop("thinking")
    assert route(everything, t=t).rule == "image"


def test_an_explicit_model_replaces_the_main_model_only():
    """`/model big,m1` (which Claude Code keeps as the default for new sessions) leaves every
    [routes] rule on: only the requests no rule takes go to big,m1."""
    t = table()
    for b, rule, backend, model in [
        (body(tools=WEB), "web_search", "main", "claude-search"),
        (body(messages=LONG_MSG), "long_context", "big", "gemini-long"),
        (body(tools=None, max_tokens=512), "background", "local", "small"),
        (body(thinking={"type": "enabled", "budget_tokens": 4000}), "think", "big", "claude-opus-think"),
        (body(messages=IMAGE_MSG), "image", "local", "qwen3-coder:30b"),
        (body(), "explicit", "big", "m1"),
    ]:
        r = route(dict(b, model="big,m1"), t=t)
        assert (r.rule, r.backend, r.model, r.requested_model) == (rule, backend, model, "big,m1")
    t = table(BASE + '[routes]\nsubagent = "big"\n')
    r = route(dict(body(), model="local,small"), t=t, subagent=True)
    # a rule target without a model gets the explicit model's name, never the "backend,model" spec
    assert (r.rule, r.backend, r.model) == ("subagent", "big", "small")
    assert route(dict(body(), model="local,small"), t=t).rule == "explicit"


def test_an_unknown_explicit_backend_is_refused_even_with_rules():
    r = table().resolve("nowhere,x", None, None, body=body(model="nowhere,x", tools=WEB))
    assert isinstance(r, Refusal) and r.status == 400 and "'nowhere'" in r.message


def test_only_an_image_in_the_turn_being_answered_routes_to_image():
    """[routes] image is not sticky: after one screenshot the session goes back where it was."""
    shot = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
    t = table(BASE + '[routes]\nimage = "local"\n')
    history = [{"role": "user", "content": [shot, {"type": "text", "text": "what is this?"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}]
    assert route(body(messages=history[:1]), t=t).rule == "image"
    assert route(body(messages=history + [{"role": "user", "content": "and now?"}]), t=t).rule == "active"
    loop = history + [
        {"role": "user", "content": "take a screenshot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [shot]}]}]
    assert route(body(messages=loop), t=t).rule == "image"  # the tool's screenshot is in this turn
    later = loop + [{"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "Read", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "text"}]}]
    assert route(body(messages=later), t=t).rule == "active"


def test_a_rule_without_a_target_is_skipped():
    t = table(BASE + '[routes]\nimage = "local"\n')
    assert route(body(tools=WEB, thinking={"type": "adaptive"}, messages=LONG_MSG)).rule == "web_search"
    assert route(body(tools=WEB, thinking={"type": "adaptive"}, messages=LONG_MSG), t=t).rule == "active"
    assert route(body(tools=WEB, messages=IMAGE_MSG), t=t).rule == "image"
    assert route(body(tools=None, max_tokens=1), t=table(BASE)).rule == "active"


def test_long_context_uses_the_threshold():
    t = table(BASE + '[routes]\nlong_context = "big"\nlong_context_threshold = 1500\n')
    assert route(body(messages=[{"role": "user", "content": "word " * 1000}]), t=t).rule == "active"
    assert route(body(messages=[{"role": "user", "content": "word " * 3000}]), t=t).rule == "long_context"


def test_fallbacks_follow_the_list_without_the_route_that_failed():
    t = table()
    r = route(body())
    assert [(f.rule, f.backend, f.model) for f in t.fallbacks(r)] == [
        ("fallback:1", "big", "claude-sonnet-5-5"), ("fallback:2", "local", "qwen3-coder:30b")]
    failed = Route("big", "claude-sonnet-5-5", "active", "claude-sonnet-5-5")
    assert [f.rule for f in t.fallbacks(failed)] == ["fallback:2"]


# --------------------------------------------------------------------------- background, clause by clause


@pytest.mark.parametrize("b, subagent, expected", [
    # two hints: background
    (body(tools=None, max_tokens=512), False, True),                     # no tools + small max_tokens
    (body(tools=None, model="claude-haiku-5-5"), False, True),           # no tools + haiku
    (body(tools=None), True, True),                                      # no tools + subagent
    (body(max_tokens=200, model="claude-haiku-4-5-20251001"), False, True),  # small max_tokens + haiku
    (body(max_tokens=300), True, True),                                  # small max_tokens + subagent
    (body(model="claude-haiku-5-5"), True, True),                        # haiku subagent (Explore)
    # one hint: not background
    (body(tools=None), False, False),                                    # e.g. a conversation summary
    (body(tools=[]), False, False),                                      # an empty tool list is no tools
    (body(max_tokens=512), False, False),
    (body(max_tokens=513, tools=None), False, False),                    # 513 is not small
    (body(model="claude-haiku-5-5"), False, False),                      # the main loop on --model haiku
    (body(), True, False),                                               # a main-model subagent with tools
    (body(), False, False),
])
def test_background_needs_two_of_four_hints(b: dict[str, Any], subagent: bool, expected: bool):
    assert is_background(b, subagent) is expected


@pytest.mark.parametrize("make, subagent, rule", [
    (bodies.main_turn, False, "active"),          # the main agent: tools, thinking adaptive (no explicit ask)
    (bodies.title_request, False, "background"),
    (bodies.quota_check, False, "background"),
    (bodies.explore_subagent, True, "background"),
    (bodies.haiku_main_loop, False, "active"),
    (bodies.compact_summary, False, "active"),
    (bodies.classifier_request, False, "active"),  # the safety classifier: never the cheap model
    (bodies.classifier_second_stage, False, "active"),
])
def test_claude_code_shaped_requests_classify_right(make: Any, subagent: bool, rule: str):
    t = table(BASE + '[routes]\nbackground = "local,small"\nthink = "big"\nlong_context = "big"\n'
                     'long_context_threshold = 60000\n')
    assert route(make(), t=t, subagent=subagent).rule == rule


def test_a_huge_claude_code_turn_goes_to_long_context():
    t = table(BASE + '[routes]\nthink = "big"\nlong_context = "local"\nlong_context_threshold = 60000\n')
    assert route(bodies.main_turn(60), t=t).rule == "active"
    assert route(bodies.main_turn(320), t=t).rule == "long_context"


# --------------------------------------------------------------------------- [routes] in the config


def test_routes_parse():
    routes = parse_config(ALL_RULES).routes
    assert routes.background == RouteTarget("local", "small")
    assert routes.image == RouteTarget("local", None)
    assert routes.fallback == (RouteTarget("big"), RouteTarget("local", "qwen3-coder:30b"))
    assert routes.long_context_threshold == 3000
    assert parse_config(BASE).routes.long_context_threshold == 60000
    assert routes.to_table()["fallback"] == ["big", "local,qwen3-coder:30b"]


@pytest.mark.parametrize("section, needles", [
    ('[routes]\nthink = "nope,model-x"\n', ["line 25", "routes.think names the backend 'nope'", "big, local, main"]),
    ('[routes]\nfallback = ["big", "gone"]\n', ["line 25", "routes.fallback names the backend 'gone'"]),
    ('[routes]\nbackground = ",small"\n', ["line 25", "routes.background is ',small'", '"<backend>,<model>"']),
    ('[routes]\nfallback = 3\n', ["line 25", "routes.fallback is 3", "Write a list"]),
    ('[routes]\nlong_context_threshold = "big"\n', ["line 25", "whole number"]),
    ('[routes]\nlong_context_threshold = 0\n', ["line 25", "positive number of input tokens"]),
    ('[routes]\nbakground = "local"\n', ["line 25", "unknown key routes.bakground"]),
    ('[routes]\nbreaker_failures = 0\n', ["line 25", "breaker_failures >= 1"]),
])
def test_broken_routes_say_where_and_what_to_write(section: str, needles: list[str]):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + "\n" + section)
    for n in needles:
        assert n in str(info.value), (n, str(info.value))


# --------------------------------------------------------------------------- the breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_n_failures_then_half_open_lets_one_trial_through():
    b = Breaker(threshold=3, base_cooldown_s=30, max_cooldown_s=100)
    for _i in range(2):
        assert b.acquire(0)
        b.failure("500", 0)
        assert b.state == "closed" and b.health == "failing"
    b.failure("500 again", 0)
    assert (b.state, b.health, b.open_until, b.last_error) == ("open", "open", 30, "500 again")
    assert not b.acquire(29.9)
    assert b.acquire(30) and b.state == "half_open"  # the trial
    assert not b.acquire(31)  # only one at a time
    b.failure("still down", 31)
    assert (b.state, b.cooldown_s, b.open_until) == ("open", 60, 91)  # twice as long
    assert b.acquire(91)
    b.failure("down", 91)
    assert b.cooldown_s == 100  # capped
    assert b.acquire(191)
    b.success()
    assert (b.state, b.health, b.failures, b.last_error) == ("closed", "ok", 0, None)
    b.failure("x", 200)
    assert b.state == "closed"  # counting starts again


def test_a_trial_without_verdict_frees_the_slot():
    b = Breaker(threshold=1, base_cooldown_s=5)
    b.failure("x", 0)
    assert b.acquire(5)
    b.release()
    assert b.state == "half_open" and b.acquire(6)


def test_health_board_publishes_changes_and_a_snapshot():
    clock, wall = Clock(), Clock()
    wall.now = 1_800_000_000.0
    seen: list[Any] = []
    board = HealthBoard(seen.append, clock=clock, wall=wall)
    board.configure(2, 10.0, 40.0)
    assert board.acquire("a") and board.snapshot == {}
    board.failure("a", "502 could not connect")
    assert seen[-1].state == "failing" and seen[-1].failures == 1
    board.failure("a", "502 could not connect")
    h = board.snapshot["a"]
    assert (h.state, h.failures, h.open_until, h.last_error) == ("open", 2, wall.now + 10, "502 could not connect")
    assert not board.acquire("a")
    clock.now += 10
    assert board.acquire("a") and board.snapshot["a"].trial
    board.success("a")
    assert board.snapshot["a"].state == "ok" and seen[-1].state == "ok"
    n = len(seen)
    board.success("a")  # nothing changed: nothing published
    assert len(seen) == n
    board.forget({"b"})
    assert "a" not in board.snapshot
