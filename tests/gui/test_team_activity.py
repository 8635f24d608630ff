"""The Team page's Claude Code tab: each person's sessions, lines changed, tool decisions and API
errors, from OTLP exports the team gateway kept (decoded and stored by the gateway's own code in
a real SQLite ledger), read as the bridge reads them. docs/team-activity.png is this page."""

from __future__ import annotations

import os
import time
from pathlib import Path

from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.bridge.team import Team
from app.config import parse_config
from app.team.otlp import parse
from app.team.telemetry_store import TelemetryStore
from app.views.team import ACTIVITY_COLUMNS, TABS, TeamPage
from app.views.theme import STATE_COLORS
from tests.gateway.conftest import config_text
from tests.gui.conftest import team_view
from tests.team.test_telemetry import events, metrics

TEAM = '''
[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
'''
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_claude_code_tab_sums_each_persons_telemetry(tmp_path: Path, qtbot) -> None:
    cfg = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9",
                                     "auth": "none", "local": False}], active="anthropic") + TEAM)
    ledger_file = tmp_path / "usage.sqlite3"
    now = time.time()
    team_view(cfg, ledger_file, [], now)  # makes the ledger at the current schema
    store = TelemetryStore(path=ledger_file)
    sent = {  # person: their exports (session, lines added, removed, decisions, API errors)
        "alice@corp.example": [("a1", 120, 30, ("accept", "accept", "reject"), 0), ("a2", 8, 0, ("accept",), 1)],
        "bob@corp.example": [("b1", 40, 12, ("reject",), 2)],
        "a-very-long-name.of-someone@research.corp.example": [("c1", 0, 0, (), 0)],
    }
    for user, sessions in sent.items():
        for session, added, removed, decisions, errors in sessions:
            store.insert(user, ("eng",), parse("metrics", "application/x-protobuf", metrics(session, added, removed)),
                         at=now - 3600)
            store.insert(user, ("eng",), parse("logs", "application/x-protobuf",
                                               events(session, *decisions, errors=errors).SerializeToString()),
                         at=now - 3600)
    store.insert("old@corp.example", (), parse("metrics", "application/x-protobuf", metrics("o", 5, 5)),
                 at=now - 40 * 86400)  # before the tab's 30 days
    store.close()

    view, problem = team_view(cfg, ledger_file, [], now)
    assert problem is None
    page = TeamPage(Team(Jobs(), Notices()))
    qtbot.addWidget(page)
    page.show_view(view)
    t = page.activity
    assert [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())] == list(ACTIVITY_COLUMNS)
    rows = [[t.item(r, c).text() for c in range(7)] for r in range(t.rowCount())]
    assert rows == [
        ["alice@corp.example", "2", "128", "30", "3", "1", "1"],
        ["bob@corp.example", "1", "40", "12", "0", "1", "2"],
        ["a-very-long-name.of-someone@research.corp.example", "1", "0", "0", "0", "0", "0"],
    ]
    assert t.item(1, 6).foreground().color().name() == STATE_COLORS["error"]
    assert page.tabs.tabText(4) == TABS[4]

    page.resize(900, 520)
    page.tabs.setCurrentIndex(4)
    page.show()
    qtbot.waitExposed(page)
    shot = page.grab()
    assert not shot.isNull() and shot.width() >= 900
    out = Path(os.environ.get("PATCHBAY_SHOT_DIR", tmp_path)) / "team-activity.png"
    assert shot.save(str(out))
