"""Issue 15 item 8: a session that streams shows what is known of it (its request, the output so
far and that output's price, marked as estimates), and tokens/s only while it streams."""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream
from tests.gui.conftest import wait_for

TEXT = "streaming words " * 40  # 640 characters, ≈ 160 tokens


def _cell(model: Any, row: int, name: str) -> tuple[str, str]:
    col = next(i for i, c in enumerate(model.columns) if c.title == name)
    idx = model.index(row, col)
    from PySide6.QtCore import Qt

    return str(model.data(idx, Qt.ItemDataRole.DisplayRole)), str(model.data(idx, Qt.ItemDataRole.ToolTipRole) or "")


def test_a_streaming_session_counts_its_request_tokens_and_cost(start_app, config_file, upstreams, qtbot) -> None:
    alpha, _beta = upstreams
    alpha.enqueue(AnthropicStream(anthropic_text_events(TEXT, pieces=40, usage=(1000, 170)), delay_s=0.06))
    r = start_app(config_file)
    done = threading.Event()

    def slow() -> None:
        with r.client("s-live").messages.stream(model="claude-fake", max_tokens=400,
                                                messages=[{"role": "user", "content": "go"}]) as s:
            s.get_final_message()
        done.set()

    threading.Thread(target=slow, daemon=True).start()
    live = r.bridge.live
    wait_for(qtbot, lambda: (v := live.session("s-live")) is not None and v.in_flight and v.output_tokens >= 40)
    v = live.session("s-live")
    assert v.requests == 1 and v.in_flight == 1  # was "0 (+1)"
    assert v.estimated and v.output_tokens > 0
    assert v.cost_usd > 0  # $15 per million output tokens, on what streamed so far
    assert v.tokens_per_s > 0

    dash = r.window.page("dashboard")
    wait_for(qtbot, lambda: dash.sessions_model.find("s-live") >= 0)
    row = dash.sessions_model.find("s-live")
    wait_for(qtbot, lambda: _cell(dash.sessions_model, row, "Requests")[0] == "1 (1 live)")
    tokens, tip = _cell(dash.sessions_model, row, "Tokens")
    assert tokens.startswith("≈") and "estimated" in tip
    cost, _ = _cell(dash.sessions_model, row, "Cost")
    assert cost.startswith("≈$") and cost != "≈$0.00"

    qtbot.waitUntil(done.is_set, timeout=15000)
    wait_for(qtbot, lambda: not live.session("s-live").in_flight)
    v = live.session("s-live")
    # the upstream's own count replaces the estimate: 1000 in, 170 out at $3 / $15 per million
    assert (v.requests, v.input_tokens, v.output_tokens, v.estimated) == (1, 1000, 170, False)
    assert abs(v.cost_usd - (1000 * 3 + 170 * 15) / 1e6) < 1e-12
    assert v.tokens_per_s == 0.0  # no stale rate once nothing streams
    row = dash.sessions_model.find("s-live")
    dash.refresh()
    assert _cell(dash.sessions_model, row, "Tok/s")[0] == "—"
    assert _cell(dash.sessions_model, row, "Requests")[0] == "1"
    assert not _cell(dash.sessions_model, row, "Tokens")[0].startswith("≈")
