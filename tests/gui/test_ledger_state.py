"""The window says how the team ledger stands while PostgreSQL is away: the status bar counts the
usage rows waiting in the local spool and says what budgets do meanwhile ([ledger] on_unreachable),
the banner says it in a sentence (and so patchbay.log), the tray turns amber; all of it clears once
the database is back and the spool drained. A real PostgreSQL (tests/pg.py), stopped mid-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gui.conftest import ask, wait_for, write_config
from tests.pg import PgServer, free_port

BUDGET = """
[[budgets]]
scope = "all"
period = "day"
limit_usd = 5.0
action = "block"
"""



def _ledger_messages(running: Any) -> list[Any]:
    return [m for m in running.window.banner.messages() if m.key == "ledger-degraded"]


def test_status_bar_and_banner_count_the_spooled_rows_while_postgres_is_away(
        own_pg: PgServer, patchbay_home: Path, upstreams: Any, start_app: Any, qtbot: Any) -> None:
    a, b = upstreams
    url = own_pg.create_db()
    cfg = write_config(patchbay_home / "config.toml", a.url, b.url,
                       extra=BUDGET + f'\n[ledger]\nurl = "{url}"\npassword = "none"\non_unreachable = "open"\n')
    running = start_app(cfg)
    label = running.window.status_ledger
    ask(running, qtbot)
    eng = running.bridge.engine
    assert eng.ledger.flush(5) and eng.ledger.spooled == 0
    running.bridge.ledger.tick()
    assert label.isHidden() and not _ledger_messages(running)  # all well: nothing said

    own_pg.stop()  # a crash: nothing answers
    ask(running, qtbot)  # budgets cannot be checked: "open" lets it through
    ask(running, qtbot)
    wait_for(qtbot, lambda: eng.ledger.spooled == 2, timeout=15)
    wait_for(qtbot, lambda: "2 rows in the spool" in label.text(), timeout=5)
    assert label.isVisible()
    assert "Ledger offline" in label.text() and "budgets open" in label.text()
    assert "PostgreSQL" in label.toolTip()
    msgs = _ledger_messages(running)
    assert len(msgs) == 1 and msgs[0].level == "warn"
    assert "usage rows wait in the local spool" in msgs[0].text and 'on_unreachable = "open"' in msgs[0].text
    assert running.bridge.tray_state() == "warn"
    assert not [m for m in running.window.banner.messages() if m.key == "ledger-write"]  # kept, so not "not recorded"

    own_pg.restart()
    wait_for(qtbot, lambda: eng.ledger.spooled == 0, timeout=20)
    wait_for(qtbot, lambda: "in the spool" not in label.text(), timeout=5)
    for _ in range(20):  # a request checks the budgets again (at most every RETRY_S): admission learns it is back
        ask(running, qtbot)
        running.bridge.ledger.tick()
        if label.isHidden():
            break
        qtbot.wait(500)
    assert label.isHidden(), label.text()
    msgs = _ledger_messages(running)
    assert len(msgs) == 1 and msgs[0].level == "info" and "answers again" in msgs[0].title
    assert running.bridge.tray_state() == "ok"


def test_closed_budgets_show_as_refusing(patchbay_home: Path, upstreams: Any, start_app: Any, qtbot: Any) -> None:
    a, b = upstreams
    nobody = free_port()  # nothing listens here
    cfg = write_config(patchbay_home / "config.toml", a.url, b.url,
                       extra=BUDGET + f'\n[ledger]\nurl = "postgresql://patchbay@127.0.0.1:{nobody}/patchbay"\n'
                       'password = "none"\non_unreachable = "closed"\n')
    running = start_app(cfg)
    label = running.window.status_ledger
    with pytest.raises(Exception) as info:
        ask(running, qtbot)
    assert getattr(info.value, "status_code", None) == 503
    wait_for(qtbot, lambda: "budgets closed" in label.text(), timeout=5)
    assert "requests refused" in label.text()
    msgs = _ledger_messages(running)
    assert msgs and msgs[-1].level == "error" and 'on_unreachable = "closed"' in msgs[-1].text
    assert running.bridge.tray_state() == "error"
