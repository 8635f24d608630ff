"""[routes] through the real gateway: rules pick the upstream, the budget applies to the backend
chosen, failover before the first byte (never after), one ledger row with the attempts, and
the circuit breaker (opens, skips, half-open trial, health published)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import BackendHealth, EventHub, EventQueue
from app.host.secrets import resolve_backend_key
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.proxy.server import ProxyRuntime
from tests.budget_engine import LedgerBudgets
from tests.fakes import (
    AnthropicJSON,
    AnthropicStream,
    Drop,
    FakeUpstream,
    Raw,
    anthropic_error,
    anthropic_message,
    anthropic_text_events,
    bodies,
)
from tests.gateway.conftest import TOKEN, Gateway, config_text

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def ups() -> Iterator[dict[str, FakeUpstream]]:
    with FakeUpstream(wire="anthropic") as a, FakeUpstream(wire="anthropic") as b, \
            FakeUpstream(wire="anthropic") as c:
        yield {"a": a, "b": b, "c": c}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(start_gateway: Any, ups: dict[str, FakeUpstream], routes: str, *, urls: dict[str, str] | None = None,
          extra: str = "") -> Gateway:
    urls = {k: u.url for k, u in ups.items()} | (urls or {})
    text = config_text([{"id": k, "kind": "anthropic", "base_url": u, "auth": "none"} for k, u in urls.items()],
                       active="a", extra=extra)
    return start_gateway(text + "\n\n[routes]\n" + routes)


def text_of(gw: Gateway, **kw: Any) -> str:
    headers = kw.pop("headers", None)
    client = gw.client(default_headers=headers) if headers else gw.client()
    kw.setdefault("max_tokens", 5000)
    kw.setdefault("messages", USER)
    kw.setdefault("model", "claude-sonnet-5-5")
    with client.messages.stream(**kw) as s:
        return s.get_final_text()


def answer(text: str) -> AnthropicStream:
    return AnthropicStream(anthropic_text_events(text, 2))


# --------------------------------------------------------------------------- rules


def test_rules_pick_the_upstream_and_the_rule_is_recorded(start_gateway, ups):
    gw = start(start_gateway, ups, 'background = "b,small-model"\nthink = "c,deep-model"\nimage = "b"\n'
                                   'web_search = "c"\n')
    ups["b"].enqueue(answer("background"))
    assert text_of(gw, tools=[], max_tokens=300) == "background"
    ups["c"].enqueue(answer("thinking"))
    assert text_of(gw, thinking={"type": "enabled", "budget_tokens": 2000}) == "thinking"
    ups["b"].enqueue(answer("image"))
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    assert text_of(gw, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "what is this?"}]}]) == "image"
    ups["c"].enqueue(answer("searching"))
    assert text_of(gw, tools=[{"type": "web_search_20250305", "name": "web_search"}]) == "searching"
    ups["a"].enqueue(answer("plain"))
    assert text_of(gw) == "plain"
    # a subagent with no tools, from Claude Code's header
    ups["b"].enqueue(answer("subagent"))
    assert text_of(gw, headers={"x-claude-code-agent-id": "agent-1"}) == "subagent"

    assert [r.json["model"] for r in ups["b"].requests] == ["small-model", "claude-sonnet-5-5", "small-model"]
    assert [r.json["model"] for r in ups["c"].requests] == ["deep-model", "claude-sonnet-5-5"]
    done = gw.finished(6)
    assert [(e.route, e.backend, e.attempts) for e in done] == [
        ("background", "b", 1), ("think", "c", 1), ("image", "b", 1), ("web_search", "c", 1), ("active", "a", 1),
        ("background", "b", 1)]


def test_claude_code_shaped_requests_route_end_to_end(start_gateway, ups):
    gw = start(start_gateway, ups, 'background = "b"\nlong_context = "c"\nlong_context_threshold = 60000\n')
    client = gw.client()
    for body, headers in ((bodies.title_request(), {}), (bodies.explore_subagent(), {"x-claude-code-agent-id": "x"}),
                          (bodies.main_turn(40), {}), (bodies.main_turn(320), {})):
        body = dict(body, stream=True)
        extra = {k: body.pop(k) for k in ("context_management", "output_config") if k in body}
        with client.messages.stream(**{k: v for k, v in body.items() if k != "stream"}, extra_body=extra,
                                    extra_headers=headers) as s:
            s.get_final_text()
    assert [(e.route, e.backend) for e in gw.finished(4)] == [
        ("background", "b"), ("background", "b"), ("active", "a"), ("long_context", "c")]


def test_the_budget_applies_to_the_backend_the_rule_chose(ups, tmp_path):
    text = config_text([{"id": k, "kind": "anthropic", "base_url": u.url, "auth": "none", "local": False}
                        for k, u in ups.items()], active="a")
    text += ('\n\n[[budgets]]\nscope = "backend:b"\nperiod = "day"\nlimit_usd = 0.01\naction = "block"\n'
             '\n[routes]\nbackground = "b"\n')
    cfg = parse_config(text)
    hub = EventHub()
    q = EventQueue()
    books = LedgerBudgets(cfg.budgets, PriceBook.load(cfg), tmp_path)  # the product's budget engine
    hub.add(books.sink)
    hub.add(q.put)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, admission=books.admission, keys=resolve_backend_key)
    rt.start()
    try:
        gw = Gateway(rt, q)
        # a whole answer: the budget engine stops a stream at the cap, but cannot stop this part-way
        ups["b"].enqueue(AnthropicJSON(anthropic_message("spent", usage=(1_000_000, 100_000),
                                                         model="claude-sonnet-4-5")))
        spent = gw.client().messages.create(tools=[], max_tokens=100, model="claude-sonnet-4-5", messages=USER)
        assert [b.text for b in spent.content if b.type == "text"] == ["spent"]
        gw.finished(1)
        with pytest.raises(anthropic.RateLimitError):  # the background rule chose b, and b is over its budget
            text_of(gw, tools=[], max_tokens=100, model="claude-sonnet-4-5")
        ups["a"].enqueue(answer("main is fine"))
        assert text_of(gw, model="claude-sonnet-4-5") == "main is fine"  # a is under no budget
        assert [(e.route, e.backend, e.status) for e in gw.finished(3)] == [
            ("background", "b", 200), ("background", "b", 429), ("active", "a", 200)]
    finally:
        rt.stop(timeout=5)
        books.close()


# --------------------------------------------------------------------------- failover


@pytest.mark.parametrize("failure", [
    anthropic_error(500, "api_error", "Internal server error"),
    anthropic_error(529, "overloaded_error", "Overloaded"),
    anthropic_error(429, "rate_limit_error", "Slow down"),
    Raw(503, {"content-type": "text/plain"}, "Service Unavailable"),
    Drop(),  # the connection closes with no answer
])
def test_a_failure_before_the_first_byte_fails_over_in_order(start_gateway, ups, failure):
    gw = start(start_gateway, ups, 'fallback = ["b,model-b", "c"]\n')
    ups["a"].enqueue(failure)
    ups["b"].enqueue(answer("served by b"))
    assert text_of(gw) == "served by b"
    assert len(ups["c"].requests) == 0
    (done,) = gw.finished(1)
    assert (done.backend, done.route, done.attempts, done.status, done.error_type) == ("b", "fallback:1", 2, 200, None)
    assert ups["b"].requests[0].json["model"] == "model-b"


def test_a_closed_port_and_a_second_failure_go_to_the_third(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b", "c"]\n', urls={"a": f"http://127.0.0.1:{closed_port()}"})
    ups["b"].enqueue(anthropic_error(529, "overloaded_error", "Overloaded"))
    ups["c"].enqueue(answer("served by c"))
    assert text_of(gw) == "served by c"
    (done,) = gw.finished(1)
    assert (done.backend, done.route, done.attempts) == ("c", "fallback:2", 3)


def test_when_every_backend_fails_the_client_gets_the_last_error(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\n')
    ups["a"].enqueue(anthropic_error(500, "api_error", "a is down"))
    ups["b"].enqueue(anthropic_error(529, "overloaded_error", "b is overloaded"))
    with pytest.raises(anthropic.APIStatusError) as err:
        text_of(gw)
    assert err.value.status_code == 529 and "b is overloaded" in str(err.value)
    (done,) = gw.finished(1)
    assert (done.backend, done.attempts, done.status) == ("b", 2, 529)


def test_a_client_error_is_not_retried(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\n')
    ups["a"].enqueue(anthropic_error(400, "invalid_request_error", "max_tokens: too large"))
    with pytest.raises(anthropic.BadRequestError):
        text_of(gw)
    assert len(ups["b"].requests) == 0
    assert gw.finished(1)[0].attempts == 1


def test_a_timeout_fails_over(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\n', extra="upstream_timeout_s = 0.3")
    ups["a"].enqueue(AnthropicStream(anthropic_text_events("too late", 2), ttfb_s=3.0))
    ups["b"].enqueue(answer("in time"))
    assert text_of(gw) == "in time"
    assert gw.finished(1)[0].attempts == 2


def test_a_silent_upstream_still_fails_over_when_pings_are_due(start_gateway, ups):
    # a ping opens the answer and rules failover out: while a fallback is left, none goes out
    text = config_text([{"id": k, "kind": "anthropic", "base_url": u.url, "auth": "none"} for k, u in ups.items()],
                       active="a", extra="upstream_timeout_s = 1.0")
    gw = start_gateway(text.replace("ping_interval_s = 10.0", "ping_interval_s = 0.2") +
                       '\n\n[routes]\nfallback = ["b"]\n')
    ups["a"].enqueue(AnthropicStream(anthropic_text_events("too late", 2), ttfb_s=3.0))
    ups["b"].enqueue(AnthropicStream(anthropic_text_events("in time", 2), ttfb_s=0.7))
    body = {"model": "claude-sonnet-5-5", "max_tokens": 100, "stream": True, "messages": USER}
    with gw.http() as http, http.stream("POST", "/v1/messages", json=body, headers={"x-api-key": TOKEN}) as resp:
        assert resp.status_code == 200
        events = [line.removeprefix("event: ") for line in resp.iter_lines() if line.startswith("event: ")]
    # the last candidate's own silence (0.7 s) is covered by pings again, before its answer
    assert events[0] == "ping" and "message_start" in events and events[-1] == "message_stop", events
    done = gw.finished(1)[0]
    assert (done.attempts, done.backend, done.status) == (2, "b", 200)
    assert done.usage.output_tokens > 0


def test_nothing_is_retried_after_bytes_reached_the_client(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\n')
    ups["a"].enqueue(AnthropicStream(anthropic_text_events("a long answer that breaks", 6), cut_after=4))
    with pytest.raises(anthropic.APIError) as err:
        text_of(gw)
    assert "broke mid-stream" in str(err.value) or "incomplete" in str(err.value)
    assert len(ups["b"].requests) == 0
    (done,) = gw.finished(1)
    assert (done.backend, done.attempts, done.status, done.error_type) == ("a", 1, 200, "api_error")


def test_one_ledger_row_per_request_with_its_attempts(tmp_path: Path, ups):
    cfg = parse_config(config_text([{"id": k, "kind": "anthropic", "base_url": u.url, "auth": "none"}
                                    for k, u in ups.items()], active="a") + '\n[routes]\nfallback = ["b", "c"]\n')
    ledger = Ledger(tmp_path / "usage.sqlite3", prices=PriceBook.load(cfg))
    ledger.start()
    hub = EventHub()
    hub.add(ledger.sink)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, keys=resolve_backend_key)
    rt.start()
    try:
        ups["a"].enqueue(anthropic_error(503, "api_error", "down"))
        ups["b"].enqueue(anthropic_error(529, "overloaded_error", "busy"))
        ups["c"].enqueue(answer("third time"))
        with anthropic.Anthropic(base_url=rt.url, api_key=TOKEN, max_retries=0).messages.stream(
                model="claude-x", max_tokens=10, messages=USER) as s:
            assert s.get_final_text() == "third time"
    finally:
        rt.stop(timeout=5)
        ledger.close()
    reader = LedgerReader(tmp_path / "usage.sqlite3")
    try:
        rows = reader.requests(limit=10)
    finally:
        reader.close()
    assert [(r.backend, r.route, r.attempts, r.status) for r in rows] == [("c", "fallback:2", 3, 200)]


# --------------------------------------------------------------------------- the circuit breaker


def health_events(gw: Gateway) -> list[BackendHealth]:
    return [e for e in gw.events() if isinstance(e, BackendHealth)]


def test_the_breaker_opens_skips_and_a_half_open_trial_recovers(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\nbreaker_failures = 2\nbreaker_cooldown_s = 0.3\n')
    for i in range(2):
        ups["a"].enqueue(anthropic_error(500, "api_error", f"a failed #{i}"))
        ups["b"].enqueue(answer("b serves"))
        assert text_of(gw) == "b serves"
    assert len(ups["a"].requests) == 2
    h = gw.runtime.health()["a"]
    assert (h.state, h.failures, h.last_error) == ("open", 2, "500 a failed #1")
    assert h.open_until is not None and h.open_until > time.time()
    assert [e.state for e in health_events(gw) if e.backend == "a"] == ["failing", "open"]

    # open: skipped without a try; the fallback serves in one attempt
    ups["b"].enqueue(answer("b again"))
    assert text_of(gw) == "b again"
    assert len(ups["a"].requests) == 2
    assert [(e.backend, e.route, e.attempts) for e in gw.finished(3)][-1] == ("b", "fallback:1", 1)

    # after the cooling period one trial goes to a; it succeeds and closes the breaker
    deadline = time.time() + 5
    while time.time() < h.open_until and time.time() < deadline:
        time.sleep(0.05)
    ups["a"].enqueue(answer("a is back"))
    assert text_of(gw) == "a is back"
    assert gw.runtime.health()["a"].state == "ok"
    assert [e.state for e in health_events(gw) if e.backend == "a"][-1] == "ok"
    assert [(e.backend, e.route, e.attempts) for e in gw.finished(4)][-1] == ("a", "active", 1)


def test_a_failed_trial_reopens_for_longer(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\nbreaker_failures = 1\nbreaker_cooldown_s = 0.2\n')
    ups["a"].enqueue(anthropic_error(500, "api_error", "down"))
    ups["b"].enqueue(answer("b"))
    text_of(gw)
    first = gw.runtime.health()["a"]
    time.sleep(max(0.0, first.open_until - time.time()) + 0.05)
    ups["a"].enqueue(anthropic_error(503, "api_error", "still down"))
    ups["b"].enqueue(answer("b"))
    assert text_of(gw) == "b"
    again = gw.runtime.health()["a"]
    assert again.state == "open" and again.last_error == "503 still down"
    assert again.open_until - time.time() > 0.25  # 0.4 s now: twice the first period


def test_with_nowhere_else_to_go_an_open_backend_is_still_tried(start_gateway, ups):
    gw = start(start_gateway, ups, 'breaker_failures = 1\nbreaker_cooldown_s = 60\n')
    ups["a"].enqueue(anthropic_error(500, "api_error", "down"))
    with pytest.raises(anthropic.InternalServerError):
        text_of(gw)
    assert gw.runtime.health()["a"].state == "open"
    ups["a"].enqueue(answer("up again"))
    assert text_of(gw) == "up again"
    assert gw.runtime.health()["a"].state == "ok"


def test_a_stream_that_breaks_counts_against_the_backend(start_gateway, ups):
    gw = start(start_gateway, ups, 'fallback = ["b"]\n')
    ups["a"].enqueue(AnthropicStream(anthropic_text_events("cut short", 6), cut_after=3))
    with pytest.raises(anthropic.APIError):
        text_of(gw)
    h = gw.runtime.health()["a"]
    assert (h.state, h.failures) == ("failing", 1) and "mid-stream" in (h.last_error or "")


def test_claude_code_hint_headers_route_through_the_gateway(start_gateway, ups):
    """Headers as Claude Code 2.1.332 sends them with CLAUDE_CODE_GATEWAY_HINT_HEADERS=1: a title on
    the main model with max_tokens 128000 goes to background, a subagent and /compact to their
    targets, a main turn with adaptive thinking stays on the active backend, and the ledger's
    route column says which rule decided."""
    gw = start(start_gateway, ups, 'background = "b,small-model"\nthink = "c,deep-model"\n'
                                   'subagent = "b,agent-model"\ncompaction = "c,summary-model"\n')
    title = {"x-claude-code-request-class": "auxiliary", "x-claude-1p-request-class": "summary-extraction"}
    ups["b"].enqueue(answer('{"title": "t"}'))
    assert text_of(gw, headers=title, max_tokens=128000, model="claude-opus-5-5",
                   extra_body={"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}) \
        == '{"title": "t"}'
    sub = {"x-claude-code-request-class": "subagent", "x-claude-1p-request-class": "blocking-subagent",
           "x-claude-code-agent-type": "general-purpose", "x-claude-code-agent-id": "a1"}
    ups["b"].enqueue(answer("agent"))
    assert text_of(gw, headers=sub, max_tokens=128000, thinking={"type": "adaptive"}) == "agent"
    compact = {"x-claude-code-request-class": "compaction", "x-claude-1p-request-class": "main",
               "x-claude-code-compaction": "manual"}
    ups["c"].enqueue(answer("summary"))
    assert text_of(gw, headers=compact, max_tokens=128000, thinking={"type": "adaptive"}) == "summary"
    main = {"x-claude-code-request-class": "main", "x-claude-1p-request-class": "main"}
    ups["a"].enqueue(answer("main"))
    assert text_of(gw, headers=main, max_tokens=128000, thinking={"type": "adaptive"}) == "main"
    assert [r.json["model"] for r in ups["b"].requests_to("/v1/messages")] == ["small-model", "agent-model"]
    assert [r.json["model"] for r in ups["c"].requests_to("/v1/messages")] == ["summary-model"]
    assert [e.route for e in gw.finished(4)] == ["background", "subagent", "compaction", "active"]
