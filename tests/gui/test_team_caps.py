"""The Team page's Caps tab: every per-person cap says where it came from (config or Admin API); an
admin sets a cap there, the app's own team gateway applies it (a request past it refused 429) and
the audit trail names the desktop user; deleting it gives the config's default back."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.gui.conftest import wait_for
from tests.gui.test_team_page import EACH_USER, TEAM

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_the_caps_tab_shows_where_each_cap_came_from_and_sets_one_the_gateway_enforces(
        start_app, config_file: Path, qtbot, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", "tok")
    config_file.write_text(config_file.read_text() + TEAM + EACH_USER)
    running = start_app(config_file)
    win = running.window
    win.show_page("team")
    page = win.page("team")
    tab = page.caps_tab
    page.tabs.setCurrentWidget(tab)
    wait_for(qtbot, lambda: tab.table.rowCount() == 1)
    assert [tab.table.item(0, c).text() for c in (0, 1, 2, 4)] == ["each-user", "monthly", "$50.00", "config"]
    assert not tab.delete_button.isEnabled()  # a config budget is changed in the config file
    page.email.setText("alice@corp.example")
    page.create_button.click()
    wait_for(qtbot, lambda: page.secret.text().startswith("pbk_"))
    secret = page.secret.text()

    tab.scope.setCurrentIndex(2)  # everyone (each person)
    tab.period.setCurrentText("monthly")
    tab.amount.setText("0")
    tab.set_button.click()
    wait_for(qtbot, lambda: tab.table.rowCount() == 2)
    api = [tab.table.item(0, c).text() for c in range(6)]
    assert api == ["organization (each person)", "monthly", "$0.00", "block", "Admin API", ""]
    assert tab.table.item(1, 5).text() == "replaced by the Admin API's limit"
    assert "@" in tab.table.item(0, 6).text()  # the desktop user@host
    page.tabs.setCurrentWidget(tab)
    tab.table.selectRow(0)
    assert tab.delete_button.isEnabled()
    grab = tab.grab()
    assert grab.save(str(tmp_path / "caps.png"))

    with httpx.Client(base_url=running.url, timeout=10) as http:
        def refused() -> bool:
            r = http.post("/v1/messages", json=BODY, headers={"x-api-key": secret})
            return r.status_code == 429 and r.json()["error"]["type"] == "billing_error"

        wait_for(qtbot, refused, timeout=3)
        tab.delete_button.click()
        wait_for(qtbot, lambda: tab.table.rowCount() == 1)
        wait_for(qtbot, lambda: http.post("/v1/messages", json=BODY, headers={"x-api-key": secret}).status_code
                 == 200, timeout=3)
    page.team.refresh()
    wait_for(qtbot, lambda: page.audit.rowCount() > 0 and page.audit.item(0, 2).text() == "spend_limit.delete")
