"""Whether the desktop app's libraries (the ``gui`` extra: PySide6, pyqtgraph, qasync) are
installed. ``pip install patchbay`` is the gateway alone, for a server; ``patchbay[gui]`` adds
the app; ``./patchbay`` and ``scripts/test`` install both."""

from __future__ import annotations

import importlib.util

GUI_MODULES = ("PySide6", "pyqtgraph", "qasync")
GUI_PIP = 'pip install "patchbay[gui]"'


def missing_gui_modules() -> list[str]:
    return [m for m in GUI_MODULES if importlib.util.find_spec(m) is None]


def no_gui_message(missing: list[str]) -> str:
    return (f"The desktop app's libraries are not installed ({', '.join(missing)} missing): this is a server "
            f"install. Run `{GUI_PIP}` for the app, or `patchbay serve` for the gateway alone.")
