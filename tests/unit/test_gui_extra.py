"""A server install (``pip install patchbay``, no ``[gui]``): ``patchbay`` says how to get the app,
and ``--selftest`` reports the GUI as not installed rather than failing the gateway's checks.

The child interpreter hides PySide6 the way a missing package looks to ``importlib``
(``sys.modules[name] = None``); everything else is the real install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HIDE = "import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None; "


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY")} | {
        "PATCHBAY_HOME": str(tmp_path / "home"), "PATCHBAY_TOKEN": "tok-gui-extra"}
    return subprocess.run([sys.executable, "-c", HIDE + code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_patchbay_without_the_gui_libraries_says_how_to_get_them(tmp_path: Path) -> None:
    p = run("from app.__main__ import main; sys.exit(main([]))", tmp_path)
    assert p.returncode == 2, p.stderr
    assert 'pip install "patchbay[gui]"' in p.stderr and "patchbay serve" in p.stderr
    assert "Traceback" not in p.stderr


def test_selftest_without_the_gui_reports_it_not_installed_and_passes(tmp_path: Path) -> None:
    p = run("from app.__main__ import main; sys.exit(main(['--selftest']))", tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    gui = next(line for line in p.stdout.splitlines() if "GUI stack" in line)
    assert "not installed" in gui and 'pip install "patchbay[gui]"' in gui and "FAIL" not in gui
    assert "ok   gateway" in p.stdout
