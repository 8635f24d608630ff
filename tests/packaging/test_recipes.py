"""What the installers are made of, checked here where they cannot be built: the release
workflow against GitHub's workflow schema (check-jsonschema ships it), the WiX source's
upgrade and per-user settings, and the macOS bundle's menu-bar switch."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ruamel.yaml import YAML  # check-jsonschema's own YAML reader

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
WXS = REPO / "packaging" / "windows" / "patchbay.wxs"
W = "{http://wixtoolset.org/schemas/v4/wxs}"


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)


def test_release_workflow_is_valid_and_builds_the_three_installers(tmp_path: Path) -> None:
    proc = _lint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout
    wf = YAML(typ="safe").load(WORKFLOW.read_text())
    assert wf["on"]["push"]["tags"] == ["v*"]
    build = wf["jobs"]["build"]
    assert sorted(build["strategy"]["matrix"]["os"]) == ["macos-latest", "ubuntu-latest", "windows-latest"]
    runs = [s.get("run", "") for s in build["steps"]]
    assert "python packaging/build.py --selftest" in runs
    assert any("pip install -e \".[packaging]\"" in r for r in runs)
    uploaded = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert set(uploaded["with"]["path"].split()) == {"dist/*.dmg", "dist/*.msi", "dist/*.tar.gz"}
    assert "gh release create" in wf["jobs"]["release"]["steps"][-1]["run"]

    # the lint is not a formality: a workflow with a job that runs on nothing is refused
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("    runs-on: ${{ matrix.os }}\n", ""))
    bad = _lint(broken)
    assert bad.returncode != 0 and "runs-on" in bad.stdout


def test_wix_source_installs_per_user_and_upgrades_in_place() -> None:
    root = ET.parse(WXS).getroot()
    pkg = root.find(f"{W}Package")
    assert pkg is not None and pkg.get("Scope") == "perUser"
    uuid.UUID(pkg.get("UpgradeCode"))  # a fixed GUID, never generated: that is what makes upgrades replace
    assert pkg.get("Version") == "$(var.Version)"
    assert pkg.find(f"{W}MajorUpgrade") is not None
    install = root.find(f".//{W}StandardDirectory[@Id='LocalAppDataFolder']//{W}Directory[@Id='INSTALLFOLDER']")
    assert install is not None and install.get("Name") == "Patchbay"
    files = root.find(f".//{W}ComponentGroup[@Directory='INSTALLFOLDER']/{W}Files")
    assert files is not None and files.get("Include") == r"$(var.SourceDir)\**"
    shortcut = root.find(f".//{W}StandardDirectory[@Id='ProgramMenuFolder']//{W}Shortcut")
    assert shortcut is not None and shortcut.get("Target") == "[INSTALLFOLDER]Patchbay.exe"
    # the spec names the Windows executable the shortcut points at
    spec = (REPO / "packaging" / "patchbay.spec").read_text()
    assert re.search(r'name="Patchbay" if sys.platform != "linux" else "patchbay"', spec)
    # the start-at-login value the app writes is removed on uninstall (not on upgrade)
    action = root.find(f".//{W}CustomAction[@Id='RemoveRunEntry']")
    assert action is not None and r"CurrentVersion\Run /v Patchbay" in action.get("ExeCommand", "")
    seq = root.find(f".//{W}InstallExecuteSequence/{W}Custom[@Action='RemoveRunEntry']")
    assert seq is not None and seq.get("Condition") == 'REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE'


@pytest.mark.parametrize("menu_bar_only", [False, True])
def test_macos_bundle_plist_follows_the_menu_bar_switch(menu_bar_only: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # run the spec as PyInstaller would on a Mac, its build steps (PyInstaller's) recording their arguments
    recorded: dict[str, dict[str, object]] = {}

    def step(name: str):  # type: ignore[no-untyped-def]
        def call(*args: object, **kw: object) -> object:
            recorded[name] = kw
            return type(name, (), {"pure": [], "scripts": [], "binaries": [], "datas": []})()
        return call

    ns = {n: step(n) for n in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")}
    ns["SPECPATH"] = str(REPO / "packaging")
    monkeypatch.setenv("PATCHBAY_MENU_BAR_ONLY", "1" if menu_bar_only else "0")
    monkeypatch.setenv("PATCHBAY_VERSION", "1.2.3")
    monkeypatch.setattr(sys, "platform", "darwin")
    exec(compile((REPO / "packaging" / "patchbay.spec").read_text(), "patchbay.spec", "exec"), ns)
    monkeypatch.undo()
    plist = recorded["BUNDLE"]["info_plist"]
    assert plist["LSUIElement"] is menu_bar_only  # type: ignore[index]
    assert plist["CFBundleShortVersionString"] == "1.2.3"  # type: ignore[index]
    assert recorded["BUNDLE"]["bundle_identifier"] == "app.patchbay"
    assert str(recorded["EXE"]["icon"]).endswith("patchbay.icns")
    assert recorded["EXE"]["console"] is False  # a windowed app on macOS
    assert "PySide6.QtWebEngineCore" in recorded["Analysis"]["excludes"]  # type: ignore[operator]
