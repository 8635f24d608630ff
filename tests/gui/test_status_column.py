"""Issue 26 item 6: the numbers are never hidden. At the 900×600 minimum, with a dark palette and a
larger desktop font, the dashboard's Status column stays on screen, and a request Patchbay refused says
why (paused, budget) instead of reading "0 → 0 $0.00"."""

from __future__ import annotations

import anthropic
import pytest
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import ask, wait_for, write_config

BUDGET = """
[[budgets]]
scope = "all"
period = "day"
limit_usd = 0.0001
warn_at = 0.9
action = "block"
"""


@pytest.fixture
def dark_desktop(qapp):  # type: ignore[no-untyped-def]
    """What a dark GTK style gives Qt: a dark palette and an 11-point font."""
    old_palette, old_font = qapp.palette(), qapp.font()
    pal = QPalette()
    for role, color in ((QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.Base, "#1e1e1e"),
                        (QPalette.ColorRole.Text, "#eeeeee"), (QPalette.ColorRole.WindowText, "#eeeeee"),
                        (QPalette.ColorRole.Button, "#353535"), (QPalette.ColorRole.ButtonText, "#eeeeee")):
        pal.setColor(role, QColor(color))
    QApplication.setPalette(pal)
    font = QFont(old_font)
    font.setPointSize(11)
    QApplication.setFont(font)
    yield
    QApplication.setPalette(old_palette)
    QApplication.setFont(old_font)


def _refused(r, qtbot) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(anthropic.APIStatusError) as err:
        ask(r, qtbot, "again", session="s-one", stream=False)
    return err.value.status_code


def test_status_stays_at_the_minimum_size_in_a_dark_style_and_refusals_say_why(
        dark_desktop, start_app, patchbay_home, upstreams, qtbot) -> None:
    a, b = upstreams
    r = start_app(write_config(patchbay_home / "config.toml", a.url, b.url, extra=BUDGET))
    w = r.window
    w.resize(900, 600)
    codes: list[int] = []
    for _ in range(8):  # spend up to the $0.0001 limit; the budget then refuses (the gateway may stop one answer)
        try:
            ask(r, qtbot, "spend it all", session="s-one", stream=False)
        except anthropic.APIStatusError as exc:
            codes.append(exc.status_code)
            if exc.status_code == 429 and "Patchbay budget" in str(exc.message):
                break
    assert 429 in codes
    r.bridge.set_paused(True)
    assert _refused(r, qtbot) == 503
    r.bridge.set_paused(False)
    dash = w.page("dashboard")
    w.show_page("dashboard")
    wait_for(qtbot, lambda: dash.sessions_model.find("s-one") >= 0)
    dash.select_session("s-one")
    model = dash.recent_model
    col = {c.title: i for i, c in enumerate(model.columns)}
    wait_for(qtbot, lambda: model.rowCount() >= 3)
    qtbot.wait(100)
    view, header = dash.recent_view, dash.recent_view.horizontalHeader()
    assert not view.isColumnHidden(col["Status"])
    assert header.sectionViewportPosition(col["Status"]) + header.sectionSize(col["Status"]) <= view.viewport().width()
    statuses = {model.index(i, col["Status"]).data() for i in range(model.rowCount())}
    assert {"429 budget", "503 paused"} <= statuses
    tokens = {model.index(i, col["Status"]).data(): model.index(i, col["Tokens"]).data()
              for i in range(model.rowCount())}
    assert tokens["429 budget"] == tokens["503 paused"] == "refused"  # not "0 → 0"
