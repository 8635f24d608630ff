"""A finished request shows up in the dashboard (with its stream) and in the Spend plot's data."""

from __future__ import annotations

import time

from app.bridge import coalesce
from app.events import ContentDelta
from app.units import fmt_money_exact
from tests.fakes.chunks import anthropic_text_events, anthropic_tool_use_events
from tests.fakes.upstreams import AnthropicStream
from tests.gui.conftest import ask, wait_for


def test_finished_request_appears_in_dashboard_and_spend_plot(start_app, config_file, upstreams, qtbot):
    alpha, _ = upstreams
    alpha.enqueue(AnthropicStream(anthropic_text_events(
        "The answer is forty-two.", pieces=4, thinking="Let me weigh the options first.",
        usage=(1200, 300, 0, 0))))
    r = start_app(config_file)
    dash = r.window.page("dashboard")
    spend = r.window.page("spend")
    spend.live = True  # follow new requests although another page is showing

    ask(r, qtbot, "What is the answer?", session="sess-1")

    wait_for(qtbot, lambda: dash.sessions_model.find("sess-1") >= 0
             and dash.sessions_model.row(dash.sessions_model.find("sess-1")).requests == 1
             and not dash.sessions_model.row(dash.sessions_model.find("sess-1")).in_flight)  # finished, not started
    s = dash.sessions_model.row(dash.sessions_model.find("sess-1"))
    assert (s.backend, s.model, s.input_tokens, s.output_tokens) == ("alpha", "claude-fake", 1200, 300)
    expected_cost = (1200 * 3.0 + 300 * 15.0) / 1e6
    assert abs(s.cost_usd - expected_cost) < 1e-9
    assert s.label == "What is the answer?"  # the first prompt names a session without a cwd

    dash.select_session("sess-1")
    text = dash.stream.toPlainText()
    assert "Let me weigh the options first." in text and "The answer is forty-two." in text
    assert text.index("Thinking") < text.index("Let me weigh") < text.index("The answer")
    assert "→ alpha · claude-fake" in text and "first token" in text
    rec = dash.recent_model.row(0)
    assert rec.ttft_ms is not None and rec.status == 200 and not rec.in_flight

    wait_for(qtbot, lambda: spend.plot_series().get("alpha"))
    points = spend.plot_series()["alpha"]
    assert len(points) == 1 and abs(points[0][1] - expected_cost) < 1e-9
    assert spend.data is not None and spend.data.total_requests == 1
    assert sum(i + o for _, i, o in spend.data.tokens_per_minute) == 1500
    assert spend.top_model.rowCount() == 1 and spend.top_model.row(0).session_id == "sess-1"


def test_stream_view_shows_tool_calls_with_their_inputs_as_they_arrive(start_app, config_file, upstreams, qtbot):
    alpha, _ = upstreams
    alpha.enqueue(AnthropicStream(anthropic_tool_use_events(
        [("Read", {"file_path": "/src/app.py"})], text="I will read the file.", pieces=3), delay_s=0.01))
    r = start_app(config_file)
    dash = r.window.page("dashboard")
    ask(r, qtbot, "open app.py", session="tools")
    dash.select_session("tools")
    wait_for(qtbot, lambda: "⚙ Read" in dash.stream.toPlainText())
    text = dash.stream.toPlainText()
    assert "I will read the file." in text
    assert '⚙ Read {"file_path":"/src/app.py"}' in text.replace(": ", ":")


def test_stream_of_the_selected_session_follows_live(start_app, config_file, upstreams, qtbot):
    alpha, _ = upstreams
    r = start_app(config_file)
    dash = r.window.page("dashboard")
    ask(r, qtbot, "one", session="a")
    ask(r, qtbot, "two", session="b")
    wait_for(qtbot, lambda: dash.sessions_model.find("b") >= 0)
    dash.select_session("a")
    before = dash.stream.toPlainText()
    alpha.enqueue(AnthropicStream(anthropic_text_events("only for b", pieces=2)))
    ask(r, qtbot, "three", session="b")
    wait_for(qtbot, lambda: r.bridge.live.session("b").requests == 2)
    qtbot.wait(100)
    assert dash.stream.toPlainText() == before  # b's tokens do not leak into a's view
    alpha.enqueue(AnthropicStream(anthropic_text_events("now for a", pieces=2), delay_s=0.02))
    ask(r, qtbot, "four", session="a")
    wait_for(qtbot, lambda: "now for a" in dash.stream.toPlainText())


def test_coalesce_merges_deltas_per_block_in_order() -> None:
    ds = [ContentDelta("r1", "s", 0, "thinking", "a"), ContentDelta("r2", "t", 0, "text", "x"),
          ContentDelta("r1", "s", 0, "thinking", "b"), ContentDelta("r1", "s", 1, "text", "c"),
          ContentDelta("r2", "t", 0, "text", "y"), ContentDelta("r1", "s", 1, "text", "d")]
    out = coalesce(ds)
    assert [(p.request_id, p.index, p.kind, p.text) for p in out] == [
        ("r1", 0, "thinking", "ab"), ("r2", 0, "text", "xy"), ("r1", 1, "text", "cd")]


def test_dashboard_copes_with_a_flood_of_sessions(start_app, config_file, qtbot):
    r = start_app(config_file)
    dash = r.window.page("dashboard")
    from app.events import RequestStarted

    t = time.time()
    for i in range(50):
        r.bridge.engine.events.put(RequestStarted(f"req{i}", t, f"flood-{i}", "test", "active", "alpha",
                                                  "claude-fake", "claude-fake", True, cwd=f"/home/u/p{i}"))
    wait_for(qtbot, lambda: sum(1 for s in r.bridge.live.sessions() if s.session_id.startswith("flood")) == 50)
    dash.refresh()
    assert dash.sessions_model.rowCount() == 50
    assert dash.sessions_model.row(dash.sessions_model.find("flood-7")).label == "p7"


def test_hovering_the_cost_plot_shows_exact_values(start_app, config_file, upstreams, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QToolTip

    alpha, _ = upstreams
    alpha.enqueue(AnthropicStream(anthropic_text_events("ok", usage=(1000, 200, 0, 0))))
    r = start_app(config_file)
    spend = r.window.page("spend")
    r.window.show_page("spend")
    ask(r, qtbot, "price me", session="hover")
    wait_for(qtbot, lambda: spend.plot_series().get("alpha"))
    start, cost = spend.plot_series()["alpha"][0]
    vb = spend.cost_plot.getPlotItem().vb
    # inside the bar and inside the plotted range (in the first half of an hour, the bar's middle is still ahead)
    x = start + min(spend.data.bucket_seconds, spend.data.until - start) / 2
    pos = vb.mapViewToScene(QPointF(x, cost / 2))
    spend._hover_cost(pos)
    tip = QToolTip.text()
    assert f"alpha: {fmt_money_exact(cost)}" in tip and "1 request ·" in tip and "1.2k tokens" in tip
