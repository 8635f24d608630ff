"""``patchbay --selftest`` from a checkout: the same checks the built bundles run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_selftest_from_source_passes_and_leaves_no_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHBAY_", "QT_QPA"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_DATA_HOME=str(tmp_path / "data"), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run([sys.executable, "-m", "app", "--selftest"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert [ln.split()[0:2] for ln in lines[1:6]] == [["ok", "price"], ["ok", "icons"], ["ok", "gateway"],
                                                       ["ok", "cloud"], ["ok", "GUI"]]
    assert "/health ok" in proc.stdout and "21 in / 9 out tokens" in proc.stdout
    assert lines[-1] == "Self-test passed: all 5 checks."
    # it used a throwaway home and cleaned it up: nothing in the user's folders or the temp dir
    assert not (tmp_path / "home").exists() and not (tmp_path / "cfg").exists()
    assert list((tmp_path / "tmp").iterdir()) == []
