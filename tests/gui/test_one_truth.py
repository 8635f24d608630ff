"""Where two parts of the app used to disagree, they now read one source: a finished request is
priced once, at the time it started (the dashboard, the ledger and the budgets agree, off-peak
included), and a backend is "failing" exactly when the gateway's circuit breaker says so."""

from __future__ import annotations

import calendar

import anthropic
import pytest

from app.events import Usage, finished_request
from tests.fakes import anthropic_error
from tests.gui.conftest import ask, wait_for, write_config

OFF_PEAK = float(calendar.timegm((2026, 11, 25, 12, 0, 0)))  # a Wednesday, 12:00 UTC: DeepSeek's half price
PEAK_COST = 0.3 + 1.2 + 0.006  # deepseek-flash, a million tokens each of input, output and cache reads


def test_the_dashboard_prices_a_request_at_its_start_time_like_the_ledger(start_app, patchbay_home, upstreams,
                                                                          qtbot):
    a, b = upstreams
    cfg = write_config(patchbay_home / "config.toml", a.url, b.url, extra="""
[[backends]]
id = "deepseek"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
auth = "none"
models = ["deepseek-flash"]
local = false
""")
    r = start_app(cfg)
    ev = finished_request("req-offpeak", OFF_PEAK, backend="deepseek", model="deepseek-flash",
                          session_id="night-owl", usage=Usage(1_000_000, 1_000_000, 0, 1_000_000), ttft_ms=300.0)
    seen = []
    r.bridge.live.requestFinished.connect(seen.append)
    r.bridge.engine.hub.publish(ev)  # as the gateway publishes it: to the ledger, the budgets and the window
    wait_for(qtbot, lambda: seen)
    assert seen[0].cost_usd == pytest.approx(PEAK_COST / 2)
    assert r.bridge.live.session("night-owl").cost_usd == pytest.approx(PEAK_COST / 2)
    r.bridge.engine.ledger.flush()
    rows = r.bridge.engine.reader.requests(limit=10)
    assert [(x.request_id, x.cost_usd) for x in rows] == [("req-offpeak", pytest.approx(PEAK_COST / 2))]


def test_a_refused_key_does_not_turn_the_backend_red(start_app, config_file, upstreams, qtbot):
    """401 says nothing about whether the backend is up: the breaker does not count it, nor does the app."""
    a, _b = upstreams
    r = start_app(config_file)
    finished = []
    r.bridge.live.requestFinished.connect(finished.append)
    a.enqueue(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(anthropic.APIStatusError) as info:  # a key refused: 424, Claude Code stops (app/proxy/stops.py)
        ask(r, qtbot, "hello", stream=False)
    assert info.value.status_code == 424
    wait_for(qtbot, lambda: finished)
    qtbot.wait(200)  # a few ticks: any health change would have arrived by now
    assert r.bridge.tray_state() == "ok"
    assert not any(m.key == "health:alpha" for m in r.window.messages())
    assert next(v for v in r.bridge.backends.backends() if v.id == "alpha").health != "failing"


def test_a_rate_limited_backend_is_failing_everywhere_its_breaker_says_so(start_app, config_file, upstreams, qtbot):
    a, _b = upstreams
    r = start_app(config_file)
    a.enqueue(anthropic_error(429, "rate_limit_error", "Slow down."))
    with pytest.raises(anthropic.RateLimitError):
        ask(r, qtbot, "hello", stream=False)
    wait_for(qtbot, lambda: any(m.key == "health:alpha" for m in r.window.messages()))
    view = next(v for v in r.bridge.backends.backends() if v.id == "alpha")
    assert view.health == "failing" and view.failures == 1 and "Slow down" in (view.last_error or "")
    assert r.bridge.tray_state() == "error"  # the tray and the Backends page agree
    assert "⚠" in r.window.backend_combo.itemText(r.window.backend_combo.findData("alpha"))
    ask(r, qtbot, "again")  # the backend answers again: its breaker closes, and the red goes with it
    wait_for(qtbot, lambda: r.bridge.tray_state() == "ok")
    assert not any(m.key == "health:alpha" for m in r.window.messages())
