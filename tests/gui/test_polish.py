"""Small things a new user notices: the toolbar's spend and gateway state run together."""

from __future__ import annotations

from PySide6.QtGui import QTextDocument

from tests.gui.conftest import wait_for


def test_the_toolbar_state_keeps_its_space_from_todays_spend(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    wait_for(qtbot, lambda: "Running" in r.window.state_label.text())
    doc = QTextDocument()
    doc.setHtml(r.window.state_label.text())  # as the label renders it: plain spaces collapse in rich text
    text = doc.toPlainText().replace("\xa0", " ")
    assert text.startswith("  ● Running"), repr(text)  # was "$0.050● Running"
