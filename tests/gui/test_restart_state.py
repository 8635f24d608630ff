"""Issue 26 item 3: what a user set up survives a restart of the app: a session's pin (lost, the session
silently moved to the active backend, often a dearer model), each session's current backend (not its
first one), the window's size and page."""

from __future__ import annotations

from tests.gui.conftest import ask, wait_for


def test_pins_current_backends_window_size_and_page_survive_a_restart(start_app, config_file, upstreams,
                                                                      qtbot) -> None:
    _alpha, beta = upstreams
    r = start_app(config_file)
    ask(r, qtbot, "hi", session="s-pinned")
    assert r.bridge.live.pin_session("s-pinned", "beta", "gpt-fake")
    ask(r, qtbot, "first on alpha", session="s-moved")
    r.bridge.backends.switch("beta", "gpt-other")
    ask(r, qtbot, "then on beta", session="s-moved")
    # both requests finished in the live view: the model shown is then the one the upstream reported
    wait_for(qtbot, lambda: (s := r.bridge.live.session("s-moved")) is not None and s.requests == 2
             and not s.in_flight)
    assert r.bridge.live.session("s-moved").backend == "beta"
    was = r.bridge.live.session("s-moved")
    r.bridge.backends.switch("alpha", None)  # the active backend again: what the pinned one must not get
    r.window.resize(1010, 690)
    r.window.show_page("spend")
    r.app.quit()

    r2 = start_app(config_file)
    assert r2.bridge.live.pins() == {"s-pinned": ("beta", "gpt-fake")}
    assert (r2.window.width(), r2.window.height()) == (1010, 690)
    assert r2.window.current_page() == "spend"
    wait_for(qtbot, lambda: r2.bridge.live.session("s-moved") is not None)  # seeded from the ledger
    moved = r2.bridge.live.session("s-moved")
    assert (moved.backend, moved.model) == ("beta", was.model)  # its latest backend, not its first
    before = len(beta.requests_to("/chat/completions"))
    ask(r2, qtbot, "still pinned?", session="s-pinned")
    assert len(beta.requests_to("/chat/completions")) == before + 1  # went to beta, not to the active alpha
    pinned = r2.bridge.live.session("s-pinned")
    assert (pinned.pinned_backend, pinned.pinned_model) == ("beta", "gpt-fake")
