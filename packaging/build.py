"""Build Patchbay's installer for the system this runs on, from the one PyInstaller recipe.

    python packaging/build.py                  # macOS: .dmg   Windows: .msi   Linux: .tar.gz
    python packaging/build.py --selftest       # ... then run the built app's --selftest
    python packaging/build.py --bundle-only    # just the PyInstaller bundle (dist/Patchbay)
    python packaging/build.py --menu-bar-only  # macOS: no Dock icon, the app lives in the menu bar

Needs the ``packaging`` extra (``pip install -e '.[packaging]'``). Per platform:

- macOS: ``hdiutil`` (built in). Signing and notarisation run when their variables are set,
  and are skipped with a message when not:
  ``PATCHBAY_CODESIGN_IDENTITY`` ("Developer ID Application: Your Name (TEAMID)"), then for
  notarisation either ``PATCHBAY_NOTARY_PROFILE`` (a ``xcrun notarytool store-credentials``
  profile) or ``PATCHBAY_NOTARY_APPLE_ID`` + ``PATCHBAY_NOTARY_TEAM_ID`` +
  ``PATCHBAY_NOTARY_PASSWORD`` (an app-specific password).
- Windows: the WiX Toolset 5 command line (``dotnet tool install --global wix --version 5.0.2``).
- Linux: nothing more; the tarball holds the bundle, a ``.desktop`` file, the icon and an
  ``install.sh`` that installs them for the current user. (No AppImage: its runtime and
  ``appimagetool`` are downloads from outside any package registry, so they cannot be built
  offline here.)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import make_icons  # noqa: E402 (packaging/ is not a package)


class BuildError(Exception):
    """The build cannot go on. ``str()`` says why and what to do."""


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])


def _run(cmd: list[str], **kw: object) -> None:
    print("+ " + " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise BuildError(f"{cmd[0]} is not installed; see packaging/build.py for what each platform needs.") from None
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{' '.join(cmd[:2])} failed with exit code {exc.returncode} (its output is above).") from None


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


# --------------------------------------------------------------------------- the bundle


def icons(work: Path) -> Path:
    out = work / "icons"
    pngs = make_icons.render_pngs(out)
    make_icons.write_installer_icons({int(p.stem.rsplit("-", 1)[1]): p for p in pngs}, out)
    return out


def bundle(dist: Path, work: Path, *, menu_bar_only: bool = False) -> Path:
    """Run PyInstaller on packaging/patchbay.spec; returns dist/Patchbay (or dist/Patchbay.app)."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise BuildError("PyInstaller is not installed. Run `pip install -e '.[packaging]'` first.") from None
    env = dict(os.environ, PATCHBAY_ICON_DIR=str(icons(work)), PATCHBAY_VERSION=version(),
               PATCHBAY_MENU_BAR_ONLY="1" if menu_bar_only else "0")
    _run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", str(dist),
          "--workpath", str(work / "pyinstaller"), str(PACKAGING / "patchbay.spec")], env=env, cwd=ROOT)
    out = dist / ("Patchbay.app" if sys.platform == "darwin" else "Patchbay")
    if not out.exists():
        raise BuildError(f"PyInstaller finished but {out} is not there.")
    return out


def executable(bundle_dir: Path) -> Path:
    if sys.platform == "darwin":
        return bundle_dir / "Contents" / "MacOS" / "Patchbay"
    if sys.platform == "win32":
        return bundle_dir / "Patchbay.exe"
    return bundle_dir / "patchbay"


def selftest(bundle_dir: Path) -> None:
    exe = executable(bundle_dir)
    print(f"+ {exe} --selftest", flush=True)
    proc = subprocess.run([str(exe), "--selftest"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=180)
    report = proc.stdout
    if not report.strip() and sys.platform == "win32":  # a windowed .exe writes its report to a file
        report = (Path(tempfile.gettempdir()) / "patchbay-selftest.txt").read_text(encoding="utf-8", errors="replace")
    print(report, end="", flush=True)
    if proc.returncode != 0:
        raise BuildError(f"The built app's self-test failed (exit code {proc.returncode}); see its report above.")


# --------------------------------------------------------------------------- Linux


def linux_tarball(bundle_dir: Path, dist: Path) -> Path:
    """Patchbay-<version>-linux-<arch>.tar.gz: the bundle plus patchbay.desktop, the icon and
    install.sh, all under one Patchbay/ folder."""
    arch = platform.machine().lower() or "x86_64"
    out = dist / f"Patchbay-{version()}-linux-{arch}.tar.gz"
    extras = {
        "patchbay.desktop": PACKAGING / "linux" / "patchbay.desktop",
        "patchbay.png": ROOT / "app" / "resources" / "icons" / "patchbay-256.png",
        "install.sh": PACKAGING / "linux" / "install.sh",
    }
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(bundle_dir, arcname="Patchbay")
        for name, src in extras.items():
            tar.add(src, arcname=f"Patchbay/{name}")
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------- macOS


def macos_sign(app: Path) -> bool:
    identity = os.environ.get("PATCHBAY_CODESIGN_IDENTITY")
    if not identity:
        print("note: PATCHBAY_CODESIGN_IDENTITY is not set, so the app is not signed (Gatekeeper will ask users "
              "to open it with right-click > Open).", flush=True)
        return False
    _run(["codesign", "--force", "--deep", "--options", "runtime", "--timestamp", "--entitlements",
          str(PACKAGING / "macos" / "entitlements.plist"), "--sign", identity, str(app)])
    _run(["codesign", "--verify", "--deep", "--strict", "--verbose=2", str(app)])
    return True


def macos_dmg(app: Path, dist: Path, work: Path) -> Path:
    out = dist / f"Patchbay-{version()}-macos-{platform.machine() or 'universal'}.dmg"
    stage = work / "dmg"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copytree(app, stage / app.name, symlinks=True)
    (stage / "Applications").symlink_to("/Applications")  # drag-to-install
    out.unlink(missing_ok=True)
    _run(["hdiutil", "create", "-volname", "Patchbay", "-srcfolder", str(stage), "-fs", "HFS+", "-format", "UDZO",
          "-ov", str(out)])
    return out


def macos_notarize(dmg: Path) -> None:
    identity = os.environ.get("PATCHBAY_CODESIGN_IDENTITY")
    if not identity:
        return
    _run(["codesign", "--force", "--timestamp", "--sign", identity, str(dmg)])
    profile = os.environ.get("PATCHBAY_NOTARY_PROFILE")
    creds = [os.environ.get(k) for k in ("PATCHBAY_NOTARY_APPLE_ID", "PATCHBAY_NOTARY_TEAM_ID",
                                          "PATCHBAY_NOTARY_PASSWORD")]
    if profile:
        auth = ["--keychain-profile", profile]
    elif all(creds):
        auth = ["--apple-id", creds[0], "--team-id", creds[1], "--password", creds[2]]  # type: ignore[list-item]
    else:
        print("note: no notarisation credentials (PATCHBAY_NOTARY_PROFILE, or PATCHBAY_NOTARY_APPLE_ID + "
              "PATCHBAY_NOTARY_TEAM_ID + PATCHBAY_NOTARY_PASSWORD), so the .dmg is signed but not notarised.",
              flush=True)
        return
    _run(["xcrun", "notarytool", "submit", str(dmg), "--wait", *auth])
    _run(["xcrun", "stapler", "staple", str(dmg)])


# --------------------------------------------------------------------------- Windows


def windows_msi(bundle_dir: Path, dist: Path, icon_dir: Path) -> Path:
    out = dist / f"Patchbay-{version()}-windows-x64.msi"
    _run(["wix", "build", str(PACKAGING / "windows" / "patchbay.wxs"), "-arch", "x64",
          "-d", f"Version={version()}", "-d", f"SourceDir={bundle_dir}", "-d", f"IconFile={icon_dir / 'patchbay.ico'}",
          "-o", str(out)])
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the results go (default: dist/)")
    ap.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller's work folder (default: build/)")
    ap.add_argument("--bundle-only", action="store_true", help="stop after the PyInstaller bundle")
    ap.add_argument("--selftest", action="store_true", help="run the built app's --selftest; fail if it fails")
    ap.add_argument("--menu-bar-only", action="store_true",
                    help="macOS: run as a menu-bar-only app (LSUIElement: no Dock icon, no app menu)")
    args = ap.parse_args(argv)
    dist, work = args.dist.resolve(), args.work.resolve()
    t0 = time.monotonic()
    try:
        app = bundle(dist, work, menu_bar_only=args.menu_bar_only)
        built = time.monotonic() - t0
        print(f"bundle: {app} ({size_mb(app):.0f} MB, built in {built:.0f} s)", flush=True)
        if args.selftest:
            selftest(app)
        if args.bundle_only:
            return 0
        if sys.platform == "darwin":
            macos_sign(app)
            artefact = macos_dmg(app, dist, work)
            macos_notarize(artefact)
        elif sys.platform == "win32":
            artefact = windows_msi(app, dist, work / "icons")
        else:
            artefact = linux_tarball(app, dist)
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    print(f"installer: {artefact} ({size_mb(artefact):.0f} MB, {time.monotonic() - t0:.0f} s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
