"""Issue 26 item 8: a per-session cost cap. ``[[budgets]] scope = "session"`` caps every Claude Code
session, the Dashboard's "Cost cap…" one live session; a session past its cap is refused (429,
``x-should-retry: false``, a sentence naming the session cap) or downgraded, while other sessions go on."""

from __future__ import annotations

import anthropic
import pytest

from tests.gui.conftest import ask, wait_for, write_config

SESSION_CAP = """
[[budgets]]
scope = "session"
period = "day"
limit_usd = 0.0001
action = "{action}"
"""


def _refused(r, qtbot, session: str) -> anthropic.APIStatusError:  # type: ignore[no-untyped-def]
    with pytest.raises(anthropic.APIStatusError) as err:
        ask(r, qtbot, "more", session=session, stream=False)
    return err.value


def test_a_session_past_its_configured_cap_is_stopped_and_the_others_go_on(start_app, patchbay_home, upstreams,
                                                                           qtbot) -> None:
    a, b = upstreams
    r = start_app(write_config(patchbay_home / "config.toml", a.url, b.url,
                               extra=SESSION_CAP.format(action="block")))
    ask(r, qtbot, "spend it all", session="sess-dear")  # $0.000105 of the $0.0001 cap
    wait_for(qtbot, lambda: r.bridge.caps.session_cap("sess-dear")[0] > 0.0001)
    err = _refused(r, qtbot, "sess-dear")
    assert err.status_code == 429 and err.response.headers.get("x-should-retry") == "false"
    body = err.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "billing_error"
    assert "session cap reached" in body["error"]["message"] and "Other sessions go on" in body["error"]["message"]
    assert ask(r, qtbot, "hi", session="sess-other").content  # another session is not touched
    assert r.bridge.usage.state() == "ok"  # no day budget was made of it


def test_a_session_cap_can_downgrade_instead(start_app, patchbay_home, upstreams, qtbot) -> None:
    a, b = upstreams
    r = start_app(write_config(patchbay_home / "config.toml", a.url, b.url,
                               extra=SESSION_CAP.format(action="downgrade:beta,gpt-fake")))
    ask(r, qtbot, "spend it all", session="sess-dear")
    wait_for(qtbot, lambda: r.bridge.caps.session_cap("sess-dear")[0] > 0.0001)
    before = len(b.requests_to("/chat/completions"))
    ask(r, qtbot, "more", session="sess-dear", stream=False)
    assert len(b.requests_to("/chat/completions")) == before + 1  # went on, on the cheaper backend


def test_a_cap_set_in_the_app_for_one_live_session(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)  # no [[budgets]] at all
    ask(r, qtbot, "hi", session="sess-dear")
    ask(r, qtbot, "hi", session="sess-other")
    dash = r.window.page("dashboard")
    r.window.show_page("dashboard")
    wait_for(qtbot, lambda: dash.sessions_model.find("sess-dear") >= 0)
    dash.select_session("sess-dear")
    assert dash.cap_button.isEnabled() and dash.cap_button.text() == "Cost cap…"
    dash.set_cap_for_selected(0.0001)
    assert dash.cap_button.text() == "Cap $0.0001"
    err = _refused(r, qtbot, "sess-dear")
    assert err.response.headers.get("x-should-retry") == "false"
    assert "set for this session in the Patchbay window" in err.response.json()["error"]["message"]
    assert ask(r, qtbot, "hi", session="sess-other").content
    dash.set_cap_for_selected(None)
    assert ask(r, qtbot, "hi", session="sess-dear").content
