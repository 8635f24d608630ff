"""The Team page: hidden in single-user mode; in team mode the keys (created here and by the CLI,
revoked here) and the audit trail, read from the ledger database the gateway uses. Renders
docs/team.png (offscreen) when PATCHBAY_SCREENSHOTS is set."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from app.__main__ import main as cli
from tests.gui.conftest import wait_for

TEAM = '''
[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
models = ["claude-*"]

[[team.groups]]
name = "research"
members = ["group:research"]
'''


def test_the_team_page_issues_and_revokes_keys_the_gateway_honours(start_app, config_file: Path, qtbot, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv("PATCHBAY_TOKEN", "tok")
    running = start_app(config_file)
    nav = running.window.nav
    assert nav.item(nav.count() - 1).text() == "Team" and nav.item(nav.count() - 1).isHidden()
    running.app.quit()

    config_file.write_text(config_file.read_text() + TEAM)
    assert cli(["team", "key", "create", "bob@lab.example", "--group", "research"]) == 0
    capsys.readouterr()
    running = start_app(config_file)
    win = running.window
    assert not win.nav.item(win.nav.count() - 1).isHidden()
    win.show_page("team")
    page = win.page("team")
    assert page.keys.rowCount() == 1 and page.keys.item(0, 1).text() == "bob@lab.example"
    page.email.setText("alice@corp.example")
    page.group.setCurrentText("eng")
    page.create_button.click()
    wait_for(qtbot, lambda: page.keys.rowCount() == 2)
    secret = page.secret.text()
    assert secret.startswith("pbk_") and page.secret.isVisible()
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=running.url, timeout=10) as http:
        ok = http.post("/v1/messages", json=body, headers={"x-api-key": secret})
        assert ok.status_code == 200, ok.text

        def spent() -> bool:
            page.team.refresh()
            return page.by_user.rowCount() == 1 and page.by_user.item(0, 0).text() == "alice@corp.example"

        wait_for(qtbot, spent)
        assert page.by_group.item(0, 0).text() == "eng" and page.by_group.item(0, 1).text() == "1"
        page.keys.selectRow(0)  # newest first: alice's
        assert page.keys.item(0, 1).text() == "alice@corp.example" and page.revoke_button.isEnabled()
        page.revoke_button.click()
        wait_for(qtbot, lambda: page.keys.item(0, 3).text() == "revoked")
        wait_for(qtbot, lambda: http.post("/v1/messages", json=body, headers={"x-api-key": secret}).status_code
                 == 401, timeout=3)
    actions = [page.audit.item(r, 2).text() for r in range(page.audit.rowCount())]
    assert actions == ["key.revoked", "key.created", "config.loaded", "key.created"]
    assert all(secret not in page.audit.item(r, 4).text() for r in range(page.audit.rowCount()))
    page.email.setText("not an address")
    page.create_button.click()
    assert page.keys.rowCount() == 2
    if os.environ.get("PATCHBAY_SCREENSHOTS"):
        page.secret.setVisible(False)
        page.secret_note.setVisible(False)
        page.email.clear()
        win.resize(1240, 800)
        qtbot.wait(200)
        win.grab().save(str(Path(__file__).resolve().parents[2] / "docs" / "team.png"))
