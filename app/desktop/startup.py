"""Before Qt starts: is there a display, and are the system libraries Qt's window plugin needs there?

Without this, a missing ``libxcb-icccm4`` or an unset ``DISPLAY`` ends the desktop app with Qt's own
abort ("could not load the Qt platform plugin xcb ... libxcb-cursor0 is needed"), which names the
wrong package and says nothing about ``patchbay serve``. ``check_window`` looks first and answers a
sentence with the one install line for the user's distribution. No Qt here: it runs before Qt loads.

The library list is what the PySide6 wheel's ``libqxcb.so``, ``libQt6XcbQpa.so``, ``libQt6Gui.so`` and
``libqwayland.so`` link from the system (``readelf -d``), less glibc and libstdc++;
tests/unit/test_startup.py compares it with the installed plugins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# soname -> the package that provides it, per package manager: apt (Debian, Ubuntu), dnf (Fedora,
# RHEL), pacman (Arch), zypper (openSUSE).
Packages = tuple[str, str, str, str]
MANAGERS = ("apt", "dnf", "pacman", "zypper")

COMMON_LIBS: dict[str, Packages] = {  # libQt6Gui: every window, whatever the platform
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd", "libGL1"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd", "libEGL1"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon", "libxkbcommon0"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig", "libfontconfig1"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2", "libfreetype6"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libglib-2_0-0"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libgthread-2_0-0"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus", "libdbus-1-3"),
}

XCB_LIBS: dict[str, Packages] = {  # the X11 plugin (libqxcb.so, libQt6XcbQpa.so)
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb", "libxcb1"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11", "libX11-6"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11", "libX11-xcb1"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor", "libxcb-cursor0"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm", "libxcb-icccm4"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util", "libxcb-util1"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image", "libxcb-image0"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms", "libxcb-keysyms1"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil",
                                "libxcb-render-util0"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb", "libxcb-randr0"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb", "libxcb-render0"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb", "libxcb-shape0"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb", "libxcb-shm0"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb", "libxcb-sync1"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb", "libxcb-xfixes0"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb", "libxcb-xkb1"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11", "libxkbcommon-x11-0"),
}

WAYLAND_LIBS: dict[str, Packages] = {  # the Wayland plugin (libqwayland.so)
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client", "wayland", "libwayland-client0"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor", "wayland", "libwayland-cursor0"),
}

Resolver = Callable[[str], bool]  # soname -> can the dynamic loader find it?
DisplayProbe = Callable[[str], bool]  # DISPLAY value -> does an X server answer there?


@dataclass(frozen=True)
class WindowCheck:
    """The verdict. ``ok`` False: ``message`` says what is wrong and what to do (print it, exit)."""

    ok: bool
    message: str = ""
    missing: tuple[str, ...] = ()  # sonames the loader could not find
    install: str = ""  # the one install line for this distribution ("" when unknown or nothing missing)
    env: dict[str, str] = field(default_factory=dict)  # environment to set before Qt starts
    note: str = ""  # ok, but worth a line on stderr


# --------------------------------------------------------------------------- finding libraries


def _bundle_dirs() -> list[Path]:
    """Where a built bundle or the PySide6 wheel keeps libraries of its own (not on the loader's path)."""
    dirs: list[Path] = []
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        dirs.append(Path(meipass))
    return dirs


def loader_resolver(extra_dirs: Iterable[Path] | None = None) -> Resolver:
    """Asks the dynamic loader itself (``dlopen``, so ``LD_LIBRARY_PATH`` and the ld.so cache count, as
    they will for Qt); then looks in ``extra_dirs`` (a bundle's own folder)."""
    dirs = list(_bundle_dirs() if extra_dirs is None else extra_dirs)

    def found(soname: str) -> bool:
        try:
            ctypes.CDLL(soname)
            return True
        except OSError:
            pass
        return any((d / soname).is_file() for d in dirs)

    return found


def x_server_answers(display: str) -> bool:
    """Connects to the X server named by ``display`` with libxcb and hangs up at once."""
    try:
        xcb = ctypes.CDLL(ctypes.util.find_library("xcb") or "libxcb.so.1")
    except OSError:
        return True  # cannot tell without libxcb; the missing library is reported on its own
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_connection_has_error.restype = ctypes.c_int
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    if not conn:
        return False
    try:
        return xcb.xcb_connection_has_error(conn) == 0
    finally:
        xcb.xcb_disconnect(conn)


# --------------------------------------------------------------------------- the distribution


def read_os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """``/etc/os-release`` as a dict (empty when it cannot be read); falls back to /usr/lib/os-release."""
    for p in (path, Path("/usr/lib/os-release")) if path == Path("/etc/os-release") else (path,):
        try:
            text = p.read_text(encoding="utf-8")
        except OSError:
            continue
        out: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                out[key.strip()] = value.strip().strip("\"'")
        return out
    return {}


def package_manager(os_release: Mapping[str, str]) -> str | None:
    """apt, dnf, pacman or zypper for this distribution (from ID and ID_LIKE), None when unknown."""
    ids = [os_release.get("ID", "").lower(), *os_release.get("ID_LIKE", "").lower().split()]
    families = (
        ("apt", ("debian", "ubuntu", "linuxmint", "pop", "elementary", "raspbian", "kali", "neon", "zorin")),
        ("dnf", ("fedora", "rhel", "centos", "rocky", "almalinux", "ol", "nobara")),
        ("pacman", ("arch", "manjaro", "endeavouros", "garuda", "artix")),
        ("zypper", ("opensuse", "opensuse-leap", "opensuse-tumbleweed", "suse", "sles", "sled")),
    )
    for i in ids:
        for manager, names in families:
            if i in names or (manager == "zypper" and i.startswith("opensuse")):
                return manager
    return None


def packages_for(sonames: Iterable[str], manager: str | None) -> list[str]:
    """The packages that provide ``sonames`` on a distribution using ``manager`` ([] when unknown)."""
    if manager not in MANAGERS:
        return []
    col = MANAGERS.index(manager)
    table = {**COMMON_LIBS, **XCB_LIBS, **WAYLAND_LIBS}
    pkgs: list[str] = []
    for so in sonames:
        if so in table and table[so][col] not in pkgs:
            pkgs.append(table[so][col])
    return pkgs


INSTALL_VERBS = {"apt": "sudo apt install", "dnf": "sudo dnf install", "pacman": "sudo pacman -S --needed",
                 "zypper": "sudo zypper install"}


def install_line(sonames: Iterable[str], manager: str | None) -> str:
    """One shell line installing the packages that provide ``sonames`` ("" for an unknown distribution)."""
    pkgs = packages_for(sonames, manager)
    return f"{INSTALL_VERBS[manager]} {' '.join(pkgs)}" if pkgs and manager else ""


# --------------------------------------------------------------------------- the check


def _platforms(value: str) -> list[str]:
    """QT_QPA_PLATFORM's names in order ("wayland;xcb", "xcb:option=1" -> ["wayland", "xcb"])."""
    return [part.split(":", 1)[0].strip().lower() for part in value.split(";") if part.strip()]


def missing_libs(platform: str, resolver: Resolver) -> list[str]:
    """The sonames a window on ``platform`` ("xcb" or "wayland") needs and the loader cannot find."""
    need = {**COMMON_LIBS, **(XCB_LIBS if platform == "xcb" else WAYLAND_LIBS)}
    return [so for so in need if not resolver(so)]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _missing_message(platform: str, missing: list[str], manager: str | None, serve: str) -> tuple[str, str]:
    line = install_line(missing, manager)
    what = "X11" if platform == "xcb" else "Wayland"
    libs = _and(missing)
    noun = "library" if len(missing) == 1 else "libraries"
    verb = "is" if len(missing) == 1 else "are"
    head = f"The window cannot open: Qt's {what} plugin needs the system {noun} {libs}, which {verb} not installed."
    if line:
        body = f"Install {'it' if len(missing) == 1 else 'them'} with:\n    {line}\nthen start Patchbay again."
    else:
        body = "Install the packages of your distribution that provide these files, then start Patchbay again."
    return f"{head}\n{body}\n{serve} runs the gateway without a window meanwhile.", line


def check_window(environ: Mapping[str, str] | None = None, *, platform: str | None = None,
                 resolver: Resolver | None = None, probe: DisplayProbe | None = None,
                 os_release: Mapping[str, str] | None = None, serve: str = "patchbay serve") -> WindowCheck:
    """Can a Qt window open here? Linux (and the BSDs) only; elsewhere always ok.

    ``resolver`` finds libraries (default: the dynamic loader), ``probe`` asks whether an X server
    answers on DISPLAY (default: connect with libxcb), ``serve`` is how the user runs the headless
    gateway (named in the messages)."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat.startswith(("win", "darwin", "cygwin")) or env.get("PATCHBAY_SKIP_GUI_CHECK"):
        return WindowCheck(True)
    wanted = _platforms(env.get("QT_QPA_PLATFORM", ""))
    if wanted and not any(p in ("xcb", "wayland", "wayland-egl") for p in wanted):
        return WindowCheck(True)  # offscreen, vnc, eglfs, ...: the user chose; Qt says what it needs
    resolve = resolver or loader_resolver()
    ask_x = probe or x_server_answers
    osr = read_os_release() if os_release is None else os_release
    manager = package_manager(osr)
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if not wanted:  # Qt's own choice: Wayland in a Wayland session, else X11
        wanted = (["wayland", "xcb"] if env.get("XDG_SESSION_TYPE") == "wayland" else ["xcb", "wayland"])
    usable = [p for p in wanted if (display if p == "xcb" else wayland)]
    if not usable:
        if "xcb" not in wanted:
            named = "WAYLAND_DISPLAY is not set"
        elif all(p == "xcb" for p in wanted):
            named = "DISPLAY is not set"
        else:
            named = "neither DISPLAY nor WAYLAND_DISPLAY is set"
        return WindowCheck(False, f"There is no display to open the window on ({named}). Start Patchbay from a "
                                  f"desktop session, or run the gateway without a window: {serve}")
    first_problem: WindowCheck | None = None
    for p in usable:
        name = "wayland" if p.startswith("wayland") else "xcb"
        missing = missing_libs(name, resolve)
        if missing:
            msg, line = _missing_message(name, missing, manager, serve)
            problem = WindowCheck(False, msg, tuple(missing), line)
        elif name == "xcb" and not ask_x(display):
            problem = WindowCheck(False, f"No X server answers on DISPLAY={display}. Start Patchbay from a desktop "
                                         f"session (or fix DISPLAY), or run the gateway without a window: {serve}")
        else:
            if first_problem is None:
                return WindowCheck(True)
            # the first choice cannot work but this one can: pin Qt to it, and say why
            return WindowCheck(True, env={"QT_QPA_PLATFORM": p}, missing=first_problem.missing,
                               install=first_problem.install,
                               note=f"using {'Wayland' if name == 'wayland' else 'X11'}: "
                                    + first_problem.message.split("\n")[0])
        first_problem = first_problem or problem
    assert first_problem is not None
    return first_problem


def serve_command() -> str:
    """How this user starts the headless gateway: ``./patchbay serve`` from a checkout's root,
    the script's path elsewhere, ``patchbay serve`` for a bundle or an installed package."""
    if getattr(sys, "frozen", False):
        return "patchbay serve"
    script = Path(__file__).resolve().parents[2] / "patchbay"
    if not script.is_file():
        return "patchbay serve"
    try:
        if script.parent.samefile(Path.cwd()):
            return "./patchbay serve"
    except OSError:
        pass
    return f"{script} serve"


def ensure_window_possible(err: Callable[[str], object] | None = None) -> bool:
    """For ``patchbay`` (the desktop app): check, print the verdict's sentences, set the environment.
    False: do not start Qt (the message has been printed)."""
    say = err or (lambda text: print(text, file=sys.stderr, flush=True))
    verdict = check_window(serve=serve_command())
    if not verdict.ok:
        say("patchbay: " + verdict.message)
        return False
    os.environ.update(verdict.env)
    if verdict.note:
        say("patchbay: note: " + verdict.note)
    return True


def missing_packages(manager: str, resolver: Resolver | None = None) -> list[str]:
    """The packages (for ``manager``) that would complete the X11 plugin's libraries here."""
    return packages_for(missing_libs("xcb", resolver or loader_resolver()), manager)


if __name__ == "__main__":  # scripts/test: python -m app.desktop.startup --missing-packages apt
    if sys.argv[1:2] == ["--missing-packages"] and len(sys.argv) == 3:
        print(" ".join(missing_packages(sys.argv[2])))
        sys.exit(0)
    verdict = check_window(serve=serve_command())
    print(verdict.message or "A window can open here.")
    sys.exit(0 if verdict.ok else 2)
