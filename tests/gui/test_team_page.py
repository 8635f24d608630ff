"""The Team page: hidden in single-user mode; in team mode spend per day by user and group, this
month's totals, each person's and group's budget state, the keys (created here and by the CLI,
revoked here) and the audit trail, read from the ledger database the gateway uses (off the GUI
thread). docs/team.png comes from `scripts/screenshots.py --case team`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx

from app.__main__ import main as cli
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.bridge.team import Team
from app.config import parse_config
from app.events import Usage, finished_request
from app.views.team import BUDGET_COLUMNS, TeamPage
from app.views.team_spend import EMPTY
from app.views.theme import STATE_COLORS
from tests.gateway.conftest import config_text
from tests.gui.conftest import halfway_today, team_view, wait_for

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

EACH_USER = '''
[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 50
'''


def test_the_team_page_issues_and_revokes_keys_the_gateway_honours(start_app, config_file: Path, qtbot, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv("PATCHBAY_TOKEN", "tok")
    running = start_app(config_file)
    nav = running.window.nav
    assert nav.item(nav.count() - 1).text() == "Team" and nav.item(nav.count() - 1).isHidden()
    running.app.quit()

    config_file.write_text(config_file.read_text() + TEAM + EACH_USER)
    assert cli(["team", "key", "create", "bob@lab.example", "--group", "research"]) == 0
    capsys.readouterr()
    running = start_app(config_file)
    win = running.window
    assert not win.nav.item(win.nav.count() - 1).isHidden()
    win.show_page("team")
    page = win.page("team")
    wait_for(qtbot, lambda: page.keys.rowCount() == 1)
    assert page.keys.item(0, 1).text() == "bob@lab.example"
    # no request yet: the chart says so, and no budget rows
    assert page.chart.shown() == {} and page.chart.empty.scene() is not None
    assert page.chart.empty.textItem.toPlainText() == EMPTY and page.budgets.rowCount() == 0
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
        # the gateway enforces the each-user budget; the page shows alice's state under it
        assert page.budgets.rowCount() == 1 and page.budgets.item(0, 0).text() == "alice@corp.example"
        assert page.budgets.item(0, 1).text() == "each user / month $50.00"
        cost = page.chart.shown()["alice@corp.example"]
        assert list(page.chart.shown()) == ["alice@corp.example"] and cost > 0
        assert page.chart.empty.scene() is None
        page.chart.by.setCurrentIndex(1)  # by group
        assert page.chart.shown() == {"eng": cost}
        assert page.chart.by_user is not None and page.chart.by_user.series[0].costs[-1] == cost  # today's bar
        page.tabs.setCurrentIndex(2)  # Keys
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


LONG = "alexandra.konstantinopoulou-vasilakis@research-and-development.corp.example"
BUDGETS = '''
[[budgets]]
scope = "all"
period = "month"
limit_usd = 1000

[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 10
warn_at = 0.8
action = "downgrade:anthropic,claude-haiku-4-5"

[[budgets]]
scope = "user:bob@lab.example"
period = "day"
limit_usd = 8

[[budgets]]
scope = "group:research"
period = "month"
limit_usd = 100
action = "warn"
'''


def _spend(user: str, groups: tuple[str, ...], dollars: float, at: float):
    """A request costing ``dollars`` (claude-sonnet-4-5 output: $15 per million tokens)."""
    e = finished_request(f"r-{user}-{at}", at, model="claude-sonnet-4-5", usage=Usage(0, round(dollars / 15e-6)))
    return dataclasses.replace(e, user=user, groups=groups, identity_source="keys")


def test_budget_states_many_users_and_long_emails_on_the_team_page(tmp_path: Path, qtbot):
    """Each user's budget state from the real ledger (read_team, as the bridge runs it), shown by
    the page: every user seen this month under the each-user budget, the states in words and
    colour; twelve users fold into seven and "others"; a long e-mail fits the smallest window."""
    cfg = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9",
                                     "auth": "none", "local": False}], active="anthropic") + TEAM + BUDGETS)
    ledger_file = tmp_path / "usage.sqlite3"
    now = time.time()
    at = halfway_today(now)
    spends = [_spend("alice@corp.example", ("eng",), 12.0, at),       # over its $10: downgraded
              _spend("bob@lab.example", ("research",), 8.4, at),      # past 80 %; bob's own $8/day: blocked
              _spend("carol@corp.example", ("eng",), 3.0, at),        # ok
              _spend(LONG, ("research",), 0.9, at),
              *[_spend(f"dev{i:02d}@corp.example", ("eng",), 0.1 * (i + 1), at) for i in range(8)]]
    view, problem = team_view(cfg, ledger_file, spends, now)
    assert problem is None
    page = TeamPage(Team(Jobs(), Notices()))
    qtbot.addWidget(page)
    page.show_view(view)

    table = page.budgets
    assert [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())] == list(BUDGET_COLUMNS)
    rows = [[table.item(r, c).text() for c in range(6)] for r in range(table.rowCount())]
    # the org-wide budget first (config order): every request this month counts
    assert rows.pop(0) == ["everyone", "all / month $1,000", "$27.90", "$1,000", "3%", "ok"]
    assert rows[:4] == [
        ["alice@corp.example", "each user / month $10.00", "$12.00", "$10.00", "120%", "downgraded"],
        ["bob@lab.example", "each user / month $10.00", "$8.40", "$10.00", "84%", "warn"],
        ["carol@corp.example", "each user / month $10.00", "$3.00", "$10.00", "30%", "ok"],
        [LONG, "each user / month $10.00", "$0.90", "$10.00", "9%", "ok"],
    ]
    assert len(rows) == 12 + 2  # every user seen this month, then bob's own and the group's
    assert rows[-2][:6] == ["bob@lab.example", "user / day $8.00", "$8.40", "$8.00", "105%", "blocked"]
    assert rows[-1][:6] == ["research", "group / month $100", "$9.30", "$100", "9%", "ok"]
    assert table.item(1, 5).toolTip() == "at the limit: requests go to anthropic · claude-haiku-4-5 until it resets"
    assert table.item(1, 5).foreground().color().name() == STATE_COLORS["error"]
    assert table.item(2, 5).foreground().color().name() == STATE_COLORS["warn"]
    assert table.item(3, 5).foreground().color().name() == STATE_COLORS["ok"]
    assert table.item(4, 0).toolTip() == LONG
    assert "2 at the limit" in page.budget_summary.text() and "1 past the warn line" in page.budget_summary.text()
    assert page.tabs.tabText(1) == "Budgets (2 at the limit)"

    shown = page.chart.shown()
    assert list(shown)[:3] == ["alice@corp.example", "bob@lab.example", "carol@corp.example"]
    assert len(shown) == 8 and list(shown)[-1] == "5 other users"
    assert sum(shown.values()) == sum(s.total_usd for s in view.spend_by_user.series) == view.spend_by_user.total_usd
    assert "…" in page.chart.legend.text() and LONG in page.chart.legend.toolTip()
    page.chart.by.setCurrentIndex(1)
    assert page.chart.shown().keys() == {"eng", "research"}
    # the window's 900x600 minimum, less the navigation: nothing on the page asks for more
    hint = page.minimumSizeHint()
    assert hint.width() <= 740 and hint.height() <= 560, hint
