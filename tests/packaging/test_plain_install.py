"""A plain install — ``pip install .`` with no extras, a wheel as a user or the container image
gets it — passes its own ``--selftest``, the cloud backends included. Not editable: a wheel must
carry the price table and the icons itself (package data), which an editable install reads from
the checkout and so once hid. The test extras pull in packages
(``packaging``) that the runtime needs too, which once hid a missing dependency: google-auth's
urllib3 transport, which Vertex uses, needs its ``urllib3`` extra."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_a_plain_install_passes_its_selftest(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("app",):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True,
                         timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    # none of the test extras came along
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            timeout=120).stdout.lower()
    assert "pytest" not in listed and "anthropic==" not in listed and "hypothesis" not in listed

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHBAY_", "QT_QPA", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_DATA_HOME=str(tmp_path / "data"), QT_QPA_PLATFORM="offscreen")
    patchbay = env_dir / "bin" / "patchbay"
    proc = subprocess.run([str(patchbay), "--selftest"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert any(ln.split()[:2] == ["ok", "cloud"] for ln in proc.stdout.splitlines()), proc.stdout
    # what the Vertex backend loads on its first request
    probe = subprocess.run([str(py), "-c", "from google.auth.transport.urllib3 import Request; import packaging"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert probe.returncode == 0, probe.stderr
