"""Switching from the tray and the toolbar, and pinning one session, through the real gateway."""

from __future__ import annotations

import threading

from app.config.disk import load_config
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream
from tests.gui.conftest import ask, send_in_thread, wait_for


def generations(up):  # type: ignore[no-untyped-def]
    return [r for r in up.requests if r.method == "POST" and "count_tokens" not in r.path]


def test_tray_click_switches_backend_and_the_next_request_goes_there(start_app, config_file, upstreams, qtbot):
    alpha, beta = upstreams
    r = start_app(config_file)
    tray = r.app.tray
    assert set(tray.backend_actions) == {"alpha", "beta"}
    assert tray.backend_actions["alpha"].isChecked()

    ask(r, qtbot, "before the switch")
    assert len(generations(alpha)) == 1 and not generations(beta)

    tray.backend_actions["beta"].trigger()  # one click in the tray menu

    assert tray.backend_actions["beta"].isChecked() and not tray.backend_actions["alpha"].isChecked()
    assert r.bridge.backends.active() == ("beta", None)
    assert r.window.backend_combo.currentData() == "beta"  # the toolbar follows
    msg = ask(r, qtbot, "after the switch")
    assert msg.content[0].text
    assert len(generations(alpha)) == 1
    sent = generations(beta)
    assert len(sent) == 1 and sent[0].path == "/v1/chat/completions"
    assert load_config(config_file).active.backend == "beta"  # survives a restart


def test_tray_model_submenu_lists_the_backends_models_and_picks_one(start_app, config_file, upstreams, qtbot):
    alpha, beta = upstreams
    r = start_app(config_file)
    tray = r.app.tray
    tray.backend_actions["beta"].trigger()
    tray.models_menu.aboutToShow.emit()  # opening the submenu asks the backend what it has right now
    assert "gpt-listed" not in tray.model_actions  # not in the config: only the backend knows it
    wait_for(qtbot, lambda: "gpt-listed" in tray.model_actions and None in tray.model_actions)
    assert any(r.path.endswith("/models") for r in beta.requests)
    tray.model_actions["gpt-other"].trigger()
    assert r.bridge.backends.active() == ("beta", "gpt-other")
    assert tray.model_actions["gpt-other"].isChecked()
    ask(r, qtbot, "which model?")
    assert generations(beta)[-1].json["model"] == "gpt-other"
    cfg = load_config(config_file)
    assert (cfg.active.backend, cfg.active.model) == ("beta", "gpt-other")


def test_toolbar_switch_applies_to_the_next_request(start_app, config_file, upstreams, qtbot):
    alpha, beta = upstreams
    r = start_app(config_file)
    combo = r.window.backend_combo
    combo.setCurrentIndex(combo.findData("beta"))
    combo.activated.emit(combo.currentIndex())  # what a user's pick emits
    assert r.bridge.backends.active()[0] == "beta"
    assert r.app.tray.backend_actions["beta"].isChecked()  # the tray follows the toolbar
    ask(r, qtbot)
    assert len(generations(beta)) == 1 and not generations(alpha)


def test_switch_does_not_cut_a_request_in_flight(start_app, config_file, upstreams, qtbot):
    alpha, beta = upstreams
    alpha.enqueue(AnthropicStream(anthropic_text_events("slow answer " * 10, pieces=10), delay_s=0.08))
    r = start_app(config_file)
    result: dict[str, str] = {}

    def slow() -> None:
        with r.client("s-slow").messages.stream(model="claude-fake", max_tokens=64,
                                                messages=[{"role": "user", "content": "go"}]) as s:
            result["text"] = s.get_final_message().content[0].text

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_for(qtbot, lambda: (r.bridge.live.session("s-slow") or None) and r.bridge.live.session("s-slow").in_flight)
    r.app.tray.backend_actions["beta"].trigger()
    ask(r, qtbot, "while the other streams")  # goes to beta at once
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=15000)
    assert result["text"] == "slow answer " * 10  # the stream in flight finished where it started
    assert len(generations(alpha)) == 1 and len(generations(beta)) == 1


def test_pinning_a_session_routes_only_that_session(start_app, config_file, upstreams, qtbot):
    alpha, beta = upstreams
    r = start_app(config_file)
    ask(r, qtbot, "first of s1", session="s1")
    ask(r, qtbot, "first of s2", session="s2")
    dash = r.window.page("dashboard")
    wait_for(qtbot, lambda: dash.sessions_model.find("s1") >= 0 and dash.sessions_model.find("s2") >= 0)

    dash.select_session("s1")
    assert dash.selected == "s1"
    dash._fill_pin_menu(dash.pin_menu, "s1")  # what opening "Pin session to…" shows
    beta_menu = next(a.menu() for a in dash.pin_menu.actions() if a.text() == "beta")
    next(a for a in beta_menu.actions() if a.text() == "gpt-other").trigger()
    assert r.bridge.live.pins() == {"s1": ("beta", "gpt-other")}

    ask(r, qtbot, "second of s1", session="s1")
    ask(r, qtbot, "second of s2", session="s2")
    ask(r, qtbot, "no session at all")
    assert [g.json["model"] for g in generations(beta)] == ["gpt-other"]
    assert len(generations(alpha)) == 4
    wait_for(qtbot, lambda: r.bridge.live.session("s1").requests == 2)
    dash.refresh()
    row = dash.sessions_model.find("s1")
    assert dash.sessions_model.row(row).pinned_backend == "beta"
    assert "beta" in dash.sessions_model.index(row, 2).data()
    assert dash.unpin_button.isEnabled()

    dash.unpin_button.click()
    assert r.bridge.live.pins() == {}
    ask(r, qtbot, "third of s1", session="s1")
    assert len(generations(alpha)) == 5 and len(generations(beta)) == 1


def test_requests_through_the_app_reach_the_gateway_from_a_thread(start_app, config_file, upstreams, qtbot):
    # many clients at once while the GUI thread keeps spinning
    alpha, _ = upstreams
    r = start_app(config_file)

    def many() -> int:
        threads = [threading.Thread(target=lambda i=i: r.client(f"c{i % 3}").messages.create(
            model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "x"}])) for i in range(9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(threads)

    assert send_in_thread(qtbot, many) == 9
    wait_for(qtbot, lambda: sum(s.requests for s in r.bridge.live.sessions()) == 9)
    assert {s.session_id for s in r.bridge.live.sessions()} == {"c0", "c1", "c2"}
