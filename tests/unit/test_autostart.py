"""Start at login: the XDG file for real (in a temp XDG_CONFIG_HOME), the macOS LaunchAgent and the
Windows Run value by what they would write."""

from __future__ import annotations

import configparser
import plistlib
import re
import sys
from pathlib import Path

import pytest

from app.desktop import autostart
from app.desktop.autostart import LaunchAgent, RunEntry, XdgAutostart, for_platform, launch_command


class DictRegistry:
    """The HKCU Run key as a dict: what the Windows variant would write there."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def _desktop_exec_argv(exec_line: str) -> list[str]:
    """Exec= as a desktop environment reads it (Desktop Entry Specification, "The Exec key"):
    the string escapes first, then the quoting, then ``%%``."""
    line = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), exec_line)
    argv: list[str] = []
    cur: str | None = None
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if quoted and c == "\\" and i + 1 < len(line) and line[i + 1] in '"`$\\':
            cur = (cur or "") + line[i + 1]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
            cur = cur or ""
        elif c == " " and not quoted:
            if cur is not None:
                argv.append(cur)
            cur = None
        else:
            cur = (cur or "") + c
        i += 1
    assert not quoted, f"unbalanced quotes in {exec_line!r}"
    if cur is not None:
        argv.append(cur)
    return [a.replace("%%", "%") for a in argv]


def test_command_is_python_from_source_and_the_bundle_executable_when_frozen(tmp_path):
    cfg = tmp_path / "my config.toml"
    assert launch_command(cfg, frozen=False, executable="/usr/bin/python3", environ={}) == [
        "/usr/bin/python3", "-m", "app", "--config", str(cfg.resolve())]
    assert launch_command(None, frozen=True, executable="/opt/Patchbay/patchbay", environ={}) == [
        "/opt/Patchbay/patchbay"]
    # an AppImage's own path, not the temporary mount it runs from
    assert launch_command(None, frozen=True, executable="/tmp/.mount_x/patchbay",
                          environ={"APPIMAGE": "/home/u/Patchbay.AppImage"}) == ["/home/u/Patchbay.AppImage"]


def test_xdg_entry_is_created_and_removed_for_real(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PATCHBAY_HOME", raising=False)
    if not sys.platform.startswith("linux"):
        pytest.fail("this test checks the XDG variant on the machine it runs on: run it on Linux")
    cfg = tmp_path / "dir with space" / "config.toml"
    entry = tmp_path / "xdg" / "autostart" / "patchbay.desktop"
    assert not autostart.is_enabled()

    autostart.set_enabled(True, cfg)
    assert autostart.is_enabled() and entry.is_file()
    desk = configparser.ConfigParser(interpolation=None)
    desk.read_string(entry.read_text(encoding="utf-8"))
    d = desk["Desktop Entry"]
    assert d["Type"] == "Application" and d["Name"] == "Patchbay" and d["Terminal"] == "false"
    assert _desktop_exec_argv(d["Exec"]) == [sys.executable, "-m", "app", "--config", str(cfg.resolve())]

    autostart.set_enabled(False)
    assert not entry.exists() and not autostart.is_enabled()
    autostart.set_enabled(False)  # turning it off twice is fine


def test_xdg_entry_carries_patchbay_home_and_quotes_odd_characters(tmp_path):
    x = XdgAutostart(tmp_path)
    text = x.content(["/opt/Pa tch$bay/patchbay", "--config", "/c/50%.toml", "C:\\odd"],
                     {"PATCHBAY_HOME": "/h/my home"})
    line = next(ln for ln in text.splitlines() if ln.startswith("Exec="))
    assert line == ('Exec=env "PATCHBAY_HOME=/h/my home" "/opt/Pa tch\\\\$bay/patchbay" --config /c/50%%.toml '
                    '"C:\\\\\\\\odd"')
    assert _desktop_exec_argv(line[5:]) == ["env", "PATCHBAY_HOME=/h/my home", "/opt/Pa tch$bay/patchbay",
                                            "--config", "/c/50%.toml", "C:\\odd"]


def test_xdg_entry_that_cannot_be_written_says_so(tmp_path, monkeypatch):
    blocker = tmp_path / "xdg"
    blocker.write_text("a file where the config folder should be")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    with pytest.raises(autostart.AutostartError) as err:
        autostart.set_enabled(True, None)
    assert "patchbay.desktop" in str(err.value)


def test_launch_agent_plist(tmp_path):
    agent = for_platform("darwin", {"HOME": str(tmp_path)})
    assert isinstance(agent, LaunchAgent)
    assert agent.path == tmp_path / "Library" / "LaunchAgents" / "app.patchbay.plist"
    cmd = ["/Applications/Patchbay.app/Contents/MacOS/Patchbay", "--config", "/Users/a/<odd> & co.toml"]
    plist = plistlib.loads(agent.content(cmd, {"PATCHBAY_HOME": "/Users/a/pb"}).encode())
    assert plist == {"Label": "app.patchbay", "ProgramArguments": cmd, "RunAtLoad": True,
                     "ProcessType": "Interactive", "EnvironmentVariables": {"PATCHBAY_HOME": "/Users/a/pb"}}
    assert "EnvironmentVariables" not in plistlib.loads(agent.content(cmd, {}).encode())
    agent.enable(cmd, {})
    assert agent.enabled() and plistlib.loads(agent.path.read_bytes())["ProgramArguments"] == cmd
    agent.disable()
    assert not agent.enabled()


def test_windows_run_value():
    reg = DictRegistry()
    run = for_platform("win32", {}, registry=reg)
    assert isinstance(run, RunEntry) and not run.enabled()
    cmd = [r"C:\Users\A B\AppData\Local\Programs\Patchbay\Patchbay.exe", "--config", r"C:\cfg\x.toml"]
    run.enable(cmd, {})
    assert reg.values == {"Patchbay": r'"C:\Users\A B\AppData\Local\Programs\Patchbay\Patchbay.exe" '
                                      r"--config C:\cfg\x.toml"}
    assert run.enabled()
    run.disable()
    assert reg.values == {} and not run.enabled()


def test_platform_choice():
    xdg = for_platform("linux", {"HOME": "/home/u"})
    assert isinstance(xdg, XdgAutostart) and xdg.path == Path("/home/u/.config/autostart/patchbay.desktop")
    assert for_platform("sunos5", {}) is None
