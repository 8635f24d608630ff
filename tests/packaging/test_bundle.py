"""The Linux build, made and run here: ``packaging/build.py`` builds the PyInstaller bundle and
the tarball, the built binary passes its ``--selftest`` with nothing from this checkout or its
virtual environment in reach, the tarball installs with its ``install.sh``, and the bundle holds
what the app needs and none of the Qt modules it does not use.

The build (about a minute) is cached in ``build/test-bundle/<key>``, the key being a hash of
everything that goes into it: the app, resources, the recipe, pyproject.toml and the installed
package versions. A fresh checkout (CI) always builds.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "test-bundle"


@dataclass(frozen=True)
class LinuxBuild:
    bundle: Path
    tarball: Path
    seconds: float | None  # None: taken from the cache
    log: str


def _inputs_key() -> str:
    h = hashlib.sha256()
    files = [REPO / "pyproject.toml"]
    for folder in ("app", "packaging"):
        files += sorted(p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    h.update("\n".join([sys.version, *dists]).encode())
    return h.hexdigest()[:16]


def _clean_env(home: Path) -> dict[str, str]:
    """What a user's desktop session would give the app: no PYTHONPATH, no venv, no Qt settings."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": os.environ.get("LANG", "C.UTF-8")}
    for k in ("TMPDIR",):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


@pytest.fixture(scope="module")
def linux_build() -> LinuxBuild:
    if not sys.platform.startswith("linux"):
        pytest.fail("This test builds and runs the Linux bundle; run it on Linux (the other builds run in "
                    ".github/workflows/release.yml).")
    where = CACHE / _inputs_key()
    dist = where / "dist"
    done = where / "built.ok"
    if done.exists():
        return LinuxBuild(dist / "Patchbay", next(dist.glob("Patchbay-*-linux-*.tar.gz")), None, done.read_text())
    if CACHE.exists():  # older builds: each is a few hundred MB
        shutil.rmtree(CACHE)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "packaging" / "build.py"), "--dist", str(dist),
                           "--work", str(where / "work")],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        pytest.fail(f"packaging/build.py failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}", pytrace=False)
    shutil.rmtree(where / "work", ignore_errors=True)  # PyInstaller's intermediate files
    tarballs = list(dist.glob("Patchbay-*-linux-*.tar.gz"))
    assert len(tarballs) == 1, proc.stdout[-3000:]
    done.write_text(proc.stdout[-3000:])
    return LinuxBuild(dist / "Patchbay", tarballs[0], seconds, proc.stdout)


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def test_built_binary_passes_its_selftest(linux_build: LinuxBuild, tmp_path: Path) -> None:
    exe = linux_build.bundle / "patchbay"
    proc = subprocess.run([str(exe), "--selftest"], env=_clean_env(tmp_path), cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert "Self-test passed: all 5 checks." in out
    assert "ok   cloud backends" in out  # botocore's trimmed data still holds the credential chain's models
    # every resource came from the bundle, not from this checkout
    assert f"{linux_build.bundle}/_internal/app/resources/prices.toml" in out
    assert f"{linux_build.bundle}/_internal/app/resources/icons" in out
    assert "libqxcb.so" in out and "libqoffscreen.so" in out
    print(f"\nbundle {_size_mb(linux_build.bundle):.0f} MB, tarball {linux_build.tarball.stat().st_size / 1e6:.0f} MB, "
          f"build {'cached' if linux_build.seconds is None else f'{linux_build.seconds:.0f} s'}\n{out}")


def test_bundle_holds_what_the_app_needs_and_not_what_it_does_not(linux_build: LinuxBuild) -> None:
    internal = linux_build.bundle / "_internal"
    names = [str(p.relative_to(internal)) for p in internal.rglob("*")]
    for needed in ("app/resources/prices.toml", "app/resources/icons/patchbay-256.png",
                   "app/resources/icons/patchbay-16.png",
                   "PySide6/Qt/plugins/platforms/libqxcb.so", "PySide6/Qt/plugins/platforms/libqoffscreen.so",
                   "PySide6/Qt/plugins/platforms/libqwayland.so", "PySide6/Qt/lib/libQt6XcbQpa.so.6"):
        assert needed in names, f"{needed} is not in the bundle"
    # of botocore's ~400 service models only the credential chain's stay (packaging/patchbay.spec)
    models = {n.split("/")[2] for n in names if n.startswith("botocore/data/") and n.count("/") >= 3}
    assert models == {"sts", "sso", "sso-oidc"}, sorted(models)[:20]
    unused = ("WebEngine", "Qml", "Quick", "Qt63D", "Multimedia", "Pdf", "Designer", "Charts", "tkinter",
              "libQt6Sql", "libQt6Test", "QtWebChannel", "PyQt5", "PyQt6", "PySide2", "/PIL/")
    found = sorted(n for n in names for u in unused if u in "/" + n)
    assert not found, f"the bundle holds modules the app does not use: {found[:20]}"


def test_tarball_installs_for_the_user_and_uninstalls(linux_build: LinuxBuild, tmp_path: Path) -> None:
    with tarfile.open(linux_build.tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {"Patchbay/patchbay", "Patchbay/patchbay.desktop", "Patchbay/patchbay.png",
                "Patchbay/install.sh"} <= members.keys()
        assert all(n == "Patchbay" or n.startswith("Patchbay/") for n in members)
        assert members["Patchbay/install.sh"].mode & 0o111 and members["Patchbay/patchbay"].mode & 0o111
        tar.extractall(tmp_path / "unpacked", filter="tar")
    desk = configparser.ConfigParser(interpolation=None)
    desk.read_string((tmp_path / "unpacked" / "Patchbay" / "patchbay.desktop").read_text())
    entry = desk["Desktop Entry"]
    assert (entry["Type"], entry["Name"], entry["Exec"], entry["Icon"]) == ("Application", "Patchbay", "patchbay",
                                                                          "patchbay")

    home = tmp_path / "home"
    env = _clean_env(home)
    proc = subprocess.run(["sh", str(tmp_path / "unpacked" / "Patchbay" / "install.sh")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    installed = home / ".local" / "opt" / "Patchbay" / "patchbay"
    menu = home / ".local" / "share" / "applications" / "patchbay.desktop"
    assert (home / ".local" / "bin" / "patchbay").resolve() == installed
    assert f'Exec="{installed}"' in menu.read_text()
    assert (home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "patchbay.png").is_file()
    check = subprocess.run([str(home / ".local" / "bin" / "patchbay"), "--help"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
    assert check.returncode == 0 and "--selftest" in check.stdout, check.stdout

    proc = subprocess.run(["sh", str(home / ".local" / "opt" / "Patchbay" / "install.sh"), "--uninstall"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert not installed.exists() and not menu.exists() and not (home / ".local" / "bin" / "patchbay").exists()
