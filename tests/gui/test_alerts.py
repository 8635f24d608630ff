"""Issue 26 item 4: alerts that tell the truth. The budget banner reads as a sentence and goes when the
limit is raised (it must not contradict the toolbar); informational banners replace each other and close
by themselves; "Today $0.00" is not red at first start (only a budget colours it)."""

from __future__ import annotations

import socket
from dataclasses import replace

from app.gui import App
from tests.gui.conftest import ask, wait_for, write_config

BUDGET = """
[[budgets]]
scope = "all"
period = "day"
limit_usd = 0.0001
warn_at = 0.5
action = "warn"
"""


def _budget_cards(r) -> list:  # type: ignore[no-untyped-def]
    return [m for m in r.window.messages() if (m.key or "").startswith("budget:")]


def test_the_budget_banner_reads_right_and_goes_when_the_limit_is_raised(start_app, patchbay_home, upstreams,
                                                                         qtbot) -> None:
    a, b = upstreams
    r = start_app(write_config(patchbay_home / "config.toml", a.url, b.url, extra=BUDGET))
    ask(r, qtbot, "spend it all")  # $0.000105 of $0.0001: a "warn" budget lets it through
    wait_for(qtbot, lambda: _budget_cards(r))
    wait_for(qtbot, lambda: any(m.title.startswith("Budget reached") for m in _budget_cards(r)))
    text = next(m for m in _budget_cards(r) if m.title.startswith("Budget reached")).text
    assert " warn " not in text and "spent. Requests go on: this budget only warns. It resets " in text
    wait_for(qtbot, lambda: "color" in r.window.spend_label.text())  # the toolbar says "limit" too
    raised = [replace(bc, limit_usd=10.0) for bc in r.bridge.engine.config.budgets]
    assert r.bridge.settings.save_budgets(raised)
    wait_for(qtbot, lambda: not _budget_cards(r))  # gone: the limit is no longer reached
    wait_for(qtbot, lambda: "color" not in r.window.spend_label.text() and "of $10.00" in r.window.spend_label.text())


def test_informational_banners_replace_each_other_and_close_by_themselves(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    r.window.banner.info_timeout_ms = 300
    for n in range(3):
        r.bridge.notices.say("info", f"Note {n}", "Something worth knowing.", key=f"note-{n}")
    r.bridge.notices.say("error", "Trouble", "Stays until its cause goes.", key="trouble")
    assert [m.title for m in r.window.messages()] == ["Note 2", "Trouble"]  # no pile
    wait_for(qtbot, lambda: [m.title for m in r.window.messages()] == ["Trouble"], timeout=3)


def test_today_is_not_red_at_first_start(qtbot, qasync_loop, patchbay_home, upstreams) -> None:
    with socket.socket() as s:  # an active backend nobody answers: the tray is red, spending is not
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    app = App(write_config(patchbay_home / "config.toml", dead, upstreams[1].url), use_system_tray=False)
    qtbot.addWidget(app.window)
    try:
        assert app.bridge.tray_state() == "error"  # before the gateway started
        label = app.window.spend_label.text()
        assert label == "Today $0.00" and "color" not in label
        app.start()
        app.window._update_spend()
        assert "color" not in app.window.spend_label.text()
    finally:
        app.quit()
