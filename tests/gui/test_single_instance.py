"""Issue 26 item 11: a second launch of the desktop app raises the first window and ends, instead of a
second app fighting over the port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.desktop.single_instance import SingleInstance, instance_key
from app.paths import default_paths

REPO = Path(__file__).resolve().parents[2]


def test_a_second_launch_raises_the_first_window(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)
    first = SingleInstance(instance_key(default_paths().data_dir))
    assert first.claim()
    first.activated.connect(r.app.show_window)
    r.window.hide()
    try:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_API="pyside6")
        second = subprocess.Popen([sys.executable, "-m", "app", "--config", str(config_file)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        qtbot.waitUntil(lambda: second.poll() is not None, timeout=60_000)
        err = second.stderr.read() if second.stderr else ""
        assert second.returncode == 0, err
        assert "already running" in err
        qtbot.waitUntil(r.window.isVisible, timeout=5_000)  # the first one came to the front
    finally:
        first.release()
    assert SingleInstance(instance_key(default_paths().data_dir)).claim()  # free again once the first ends
