"""A Claude subscription in the window and the tray: its 5-hour and weekly windows live, its
requests' price as API-equivalent value (muted), and nothing at all without subscription traffic."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes.subscription import OAUTH_BETA, OAUTH_TOKEN, SubscriptionAPI
from tests.gui.conftest import send_in_thread, wait_for
from tests.serve_config import client_config


@pytest.fixture
def plan() -> Any:
    with SubscriptionAPI() as api:
        yield api


def _config(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(client_config(url), encoding="utf-8")
    return path


def _ask_with_plan(r: Any, qtbot: Any) -> None:
    """One streamed request with the subscription's token (off the GUI thread; ``qtbot`` None: on this thread)."""
    def call() -> Any:
        c = anthropic.Anthropic(base_url=r.url, auth_token=OAUTH_TOKEN, max_retries=0, timeout=20.0,
                                default_headers={"anthropic-beta": OAUTH_BETA, "X-Claude-Code-Session-Id": "plan-s"})
        with c.messages.stream(model="claude-fake", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
            return s.get_final_message()

    if qtbot is None:
        call()
        return
    send_in_thread(qtbot, call)


def test_the_plans_windows_show_in_the_tray_and_the_dashboard(start_app, patchbay_home: Path, plan: SubscriptionAPI,
                                                              qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    r = start_app(_config(patchbay_home / "config.toml", plan.url))
    tray = r.app.tray
    dash = r.window.page("dashboard")
    spend = r.window.page("spend")
    spend.live = True  # follow new requests although another page is showing
    # no subscription traffic yet: nothing shown anywhere
    assert not tray.plan_action.isVisible() and "Claude plan" not in tray.tooltip()
    assert dash.plan is not None and dash.plan.isHidden()

    _ask_with_plan(r, qtbot)
    reset = time.strftime("%H:%M", time.localtime(plan.windows.five_hour_reset))
    line = f"5 h window 63 % · resets {reset} · week 21 %"
    wait_for(qtbot, tray.plan_action.isVisible)
    assert tray.plan_action.text() == f"Claude plan: {line}"
    assert tray.menu.actions().index(tray.plan_action) == tray.menu.actions().index(tray.spend_action) + 1
    assert tray.tooltip().endswith(f"\nClaude plan: {line}")
    assert not dash.plan.isHidden()
    assert dash.plan.bars["5 h window"].value() == 63 and dash.plan.bars["week"].value() == 21
    assert f"5 h resets {reset}" in dash.plan.resets.text()

    # the request's price is value, not spend: muted, named API-equivalent, and spend stays $0
    wait_for(qtbot, lambda: dash.sessions_model.find("plan-s") >= 0)
    dash.select_session("plan-s")
    wait_for(qtbot, lambda: dash.recent_model.rowCount() == 1)
    value = (12_000 * 3.0 + 800 * 15.0) / 1e6
    cost_item = dash.recent_model.item(0, 6)
    assert cost_item.text() == "$0.048 API-equiv."
    assert cost_item.foreground().color().name() == "#8c8c8c"
    session = dash.sessions_model.row(dash.sessions_model.find("plan-s"))
    assert session.cost_usd == 0.0 and session.api_equiv_usd == pytest.approx(value)
    assert dash.sessions_model.item(dash.sessions_model.find("plan-s"), 7).text() == "$0.048 API-equiv."
    wait_for(qtbot, lambda: dash.summary.text().endswith("· $0.00 so far · $0.048 API-equiv. on the Claude plan"))

    # the Spend page: nothing spent, the plan's value said apart
    wait_for(qtbot, lambda: spend.data is not None and spend.data.plan_requests == 1)
    assert spend.data.total_cost == 0.0
    assert spend.totals.text().endswith("· $0.048 API-equiv. paid by the Claude plan (1 request, not spent)")

    # a later answer moves the windows at once
    plan.windows.five_hour = 0.91
    _ask_with_plan(r, qtbot)
    wait_for(qtbot, lambda: dash.plan.bars["5 h window"].value() == 91)
    assert tray.plan_action.text().startswith("Claude plan: 5 h window 91 %")


def test_a_streaming_subscription_request_is_not_estimated_as_spend(start_app, patchbay_home: Path,
                                                                     plan: SubscriptionAPI, qtbot,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    r = start_app(_config(patchbay_home / "config.toml", plan.url))
    dash = r.window.page("dashboard")
    plan.delay_s = 0.25  # the answer streams for a few seconds
    worker = threading.Thread(target=_ask_with_plan, args=(r, None), daemon=True)
    worker.start()
    wait_for(qtbot, lambda: (s := r.bridge.live.session("plan-s")) is not None and s.in_flight and s.output_tokens > 0)
    streaming = r.bridge.live.session("plan-s")
    assert streaming.estimated and streaming.cost_usd == 0.0  # its output so far costs the user nothing
    wait_for(qtbot, lambda: not worker.is_alive())
    wait_for(qtbot, lambda: dash.sessions_model.find("plan-s") >= 0
             and dash.sessions_model.item(dash.sessions_model.find("plan-s"), 7).text() == "$0.048 API-equiv.")
