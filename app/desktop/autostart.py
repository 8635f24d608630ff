"""Start Patchbay at login: a macOS LaunchAgent, a Windows ``Run`` registry value, or an XDG
autostart ``.desktop`` file. No Qt here; the bridge calls :func:`is_enabled` / :func:`set_enabled`.

Each platform is one small class with the same three methods (``enabled``, ``enable``,
``disable``) and a pure ``content``/``value`` method that says what it would write, so the
macOS and Windows variants are tested on any system by what they would write, and the XDG one
for real. The command points at the installed program: the bundle's executable when running
frozen (PyInstaller's ``sys.frozen``; an AppImage's ``$APPIMAGE``), else ``python -m app``.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from app.config import ConfigError
from app.config.disk import atomic_write

LABEL = "app.patchbay"  # the LaunchAgent's label and file name
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "Patchbay"
DESKTOP_NAME = "patchbay.desktop"


class AutostartError(OSError):
    """Start at login could not be changed. ``str()`` is a sentence for the user."""


def launch_command(config_path: Path | None = None, *, frozen: bool | None = None,
                   executable: str | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The command that starts the desktop app the way it is installed now."""
    env = os.environ if environ is None else environ
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    exe = executable or sys.executable
    if env.get("APPIMAGE"):  # the mounted copy of an AppImage vanishes at exit: start the image itself
        cmd = [env["APPIMAGE"]]
    elif frozen:
        cmd = [exe]
    else:
        cmd = [exe, "-m", "app"]
    if config_path is not None:
        cmd += ["--config", str(Path(config_path).expanduser().resolve())]
    return cmd


def _carried_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Variables the login-started app must see to find the same files (a portable install)."""
    return {k: environ[k] for k in ("PATCHBAY_HOME",) if environ.get(k)}


# --------------------------------------------------------------------------- XDG (Linux, BSD)


def _desktop_quote(arg: str) -> str:
    """One Exec argument, quoted as the Desktop Entry Specification says (not as a shell would)."""
    arg = arg.replace("%", "%%")
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`='):
        return arg
    quoted = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    return quoted.replace("\\", "\\\\")  # the file's string escape applies on top of the quoting


class _EntryFile:
    """An autostart mechanism that is one file: it is on while the file exists."""

    path: Path

    def content(self, command: list[str], env: Mapping[str, str]) -> str:
        raise NotImplementedError

    def enabled(self) -> bool:
        return self.path.is_file()

    def enable(self, command: list[str], env: Mapping[str, str]) -> None:
        atomic_write(self.path, self.content(command, env))

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)


class XdgAutostart(_EntryFile):
    def __init__(self, config_home: Path) -> None:
        self.path = config_home / "autostart" / DESKTOP_NAME

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> XdgAutostart:
        base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
        return cls(Path(base))

    def content(self, command: list[str], env: Mapping[str, str]) -> str:
        exec_line = " ".join(_desktop_quote(a) for a in command)
        if env:
            exec_line = "env " + " ".join(_desktop_quote(f"{k}={v}") for k, v in env.items()) + " " + exec_line
        return ("[Desktop Entry]\nType=Application\nName=Patchbay\nComment=Local gateway for Claude Code\n"
                f"Exec={exec_line}\nIcon=patchbay\nTerminal=false\nX-GNOME-Autostart-enabled=true\n")


# --------------------------------------------------------------------------- macOS


class LaunchAgent(_EntryFile):
    def __init__(self, home: Path) -> None:
        self.path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def content(self, command: list[str], env: Mapping[str, str]) -> str:
        plist: dict[str, object] = {"Label": LABEL, "ProgramArguments": list(command), "RunAtLoad": True,
                                    "ProcessType": "Interactive"}
        if env:
            plist["EnvironmentVariables"] = dict(env)
        return plistlib.dumps(plist, fmt=plistlib.FMT_XML).decode("utf-8")


# --------------------------------------------------------------------------- Windows


class Registry(Protocol):
    """The string values of one registry key (HKCU\\...\\Run on Windows)."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


class WinRegistry:
    """``HKEY_CURRENT_USER\\<key>`` through ``winreg`` (Windows only)."""

    def __init__(self, key: str = RUN_KEY) -> None:
        self.key = key

    def get(self, name: str) -> str | None:
        if sys.platform != "win32":  # winreg exists only there (mypy checks what follows as Windows code)
            raise OSError("The Windows registry exists only on Windows.")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.key) as k:
                return str(winreg.QueryValueEx(k, name)[0])
        except FileNotFoundError:
            return None

    def set(self, name: str, value: str) -> None:
        if sys.platform != "win32":  # winreg exists only there (mypy checks what follows as Windows code)
            raise OSError("The Windows registry exists only on Windows.")
        import winreg

        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, self.key, 0, winreg.KEY_SET_VALUE) as k:
            winreg.SetValueEx(k, name, 0, winreg.REG_SZ, value)

    def delete(self, name: str) -> None:
        if sys.platform != "win32":  # winreg exists only there (mypy checks what follows as Windows code)
            raise OSError("The Windows registry exists only on Windows.")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.key, 0, winreg.KEY_SET_VALUE) as k:
                winreg.DeleteValue(k, name)
        except FileNotFoundError:
            pass


class RunEntry:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def value(self, command: list[str], env: Mapping[str, str]) -> str:
        # A Run value is one command line: no place for environment variables, so a portable
        # install (PATCHBAY_HOME) should also pass --config; the app's files follow the config.
        return subprocess.list2cmdline(command)

    def enabled(self) -> bool:
        return self.registry.get(RUN_VALUE) is not None

    def enable(self, command: list[str], env: Mapping[str, str]) -> None:
        self.registry.set(RUN_VALUE, self.value(command, env))

    def disable(self) -> None:
        self.registry.delete(RUN_VALUE)


# --------------------------------------------------------------------------- choosing one


class Autostart(Protocol):
    def enabled(self) -> bool: ...
    def enable(self, command: list[str], env: Mapping[str, str]) -> None: ...
    def disable(self) -> None: ...


def for_platform(platform: str | None = None, environ: Mapping[str, str] | None = None,
                 registry: Registry | None = None) -> Autostart | None:
    """The mechanism this system uses; None where Patchbay knows none."""
    platform = platform or sys.platform
    env = os.environ if environ is None else environ
    if platform == "darwin":
        return LaunchAgent(Path(env.get("HOME") or Path.home()))
    if platform == "win32":
        return RunEntry(registry or WinRegistry())
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return XdgAutostart.from_env(env)
    return None


def supported() -> bool:
    return for_platform() is not None


def is_enabled() -> bool:
    mech = for_platform()
    try:
        return bool(mech and mech.enabled())
    except OSError:
        return False


def set_enabled(enabled: bool, config_path: Path | None = None) -> None:
    """Install or remove the login entry. Raises :class:`AutostartError` with a sentence."""
    mech = for_platform()
    if mech is None:
        raise AutostartError(f"Patchbay does not know how to start at login on this system ({sys.platform}).")
    try:
        if enabled:
            mech.enable(launch_command(config_path), _carried_env(os.environ))
        else:
            mech.disable()
    except ConfigError as exc:  # atomic_write's sentence names the file and the reason
        raise AutostartError(str(exc)) from None
    except OSError as exc:
        where = getattr(mech, "path", f"HKEY_CURRENT_USER\\{RUN_KEY}")
        raise AutostartError(f"Start at login could not be {'turned on' if enabled else 'turned off'}: "
                             f"{where} could not be changed ({exc.strerror or exc}).") from None


