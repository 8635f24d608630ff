"""The Team page says which requests were priced at a fallback: a team gateway charges a model the
price table does not know at a stated fallback (app/catalog/prices.py), and the admin reading the
spend should know which numbers rest on it. From a real ledger file, read as the bridge reads it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.bridge.team import Team
from app.config import parse_config
from app.events import Usage, finished_request
from app.views.team import TeamPage
from tests.gateway.conftest import config_text
from tests.gui.conftest import halfway_today, team_view

TEAM = '''
[team]
identity = ["keys"]
'''


def test_rows_priced_by_fallback_get_a_note_on_the_team_page(tmp_path: Path, qtbot) -> None:
    cfg = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9",
                                     "auth": "none", "local": False}], active="anthropic") + TEAM)
    ledger_file = tmp_path / "usage.sqlite3"
    now = time.time()
    at = halfway_today(now)
    events = [dataclasses.replace(finished_request(f"r{i}", at, model=model, usage=Usage(0, 10_000)),
                                  user="alice@corp.example", identity_source="keys")
              for i, model in enumerate(["claude-mystery-9", "claude-mystery-9", "claude-sonnet-4-5"])]
    view, problem = team_view(cfg, ledger_file, events, now)
    assert problem is None
    # Opus's $75 a million output tokens, the dearest the table knows for Anthropic, twice
    assert view.fallback_priced == (("claude-mystery-9", "the dearest known price on anthropic (claude-opus-4-1)",
                                     2, 1.5),)
    page = TeamPage(Team(Jobs(), Notices()))
    qtbot.addWidget(page)
    page.show_view(view)
    assert not page.fallback_note.isHidden()
    text = page.fallback_note.text()
    assert text.startswith("Priced by fallback this month") and "claude-mystery-9: 2 at the dearest known price on " \
        "anthropic (claude-opus-4-1), $1.50" in text
    assert "claude-sonnet-4-5" not in text
