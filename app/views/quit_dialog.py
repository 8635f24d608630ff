"""The question Quit asks while Claude Code points at this gateway: quitting alone would leave Claude Code
failing with "ECONNREFUSED … a firewall or proxy may be blocking it", nothing pointing at Patchbay."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QMessageBox, QWidget

DISCONNECT = "disconnect"  # put settings.json back, then quit: Claude Code talks to Anthropic again
BACKGROUND = "background"  # keep the gateway running without a window (`patchbay serve`), then quit
CANCEL = "cancel"

BUTTONS = (
    (BACKGROUND, "Keep serving in the background", QMessageBox.ButtonRole.AcceptRole),
    (DISCONNECT, "Disconnect Claude Code and quit", QMessageBox.ButtonRole.DestructiveRole),
    (CANCEL, "Cancel", QMessageBox.ButtonRole.RejectRole),
)


def ask(parent: QWidget | None, url: str) -> tuple[str, bool]:
    """Ask what Quit should do; returns (choice, remember)."""
    box = QMessageBox(parent)
    box.setObjectName("quitQuestion")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Quit Patchbay")
    box.setText("Claude Code is connected to this gateway.")
    box.setInformativeText(
        f"Claude Code sends its requests to {url}. If nothing answers there, it fails with "
        "“ECONNREFUSED”.\n\n"
        "Keep serving in the background: the window closes, the gateway goes on without it (the next start "
        "of Patchbay takes it back).\n"
        "Disconnect Claude Code and quit: Claude Code's settings are put back as they were before Connect; "
        "sessions already open need a restart.")
    remember = QCheckBox("Don't ask again")
    box.setCheckBox(remember)
    buttons = {key: box.addButton(text, role) for key, text, role in BUTTONS}
    box.setDefaultButton(buttons[BACKGROUND])
    box.setEscapeButton(buttons[CANCEL])
    box.exec()
    clicked = box.clickedButton()
    choice = next((k for k, b in buttons.items() if b is clicked), CANCEL)
    return choice, remember.isChecked() and choice != CANCEL
