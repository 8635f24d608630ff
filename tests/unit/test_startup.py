"""The check before Qt starts (app/desktop/startup.py): a display, and the system libraries Qt's window plugin
links. The library lookup is a parameter (``resolver``), so "absent" is a resolver that does not find
them; the real loader and ``python -m app`` in a controlled environment are tested as well."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.selftest import SelftestFailure, check_window_libraries
from app.desktop import startup

REPO = Path(__file__).resolve().parents[2]
DEBIAN = {"ID": "debian", "VERSION_ID": "12"}
ALL = {**startup.COMMON_LIBS, **startup.XCB_LIBS, **startup.WAYLAND_LIBS}


def without(*sonames: str) -> startup.Resolver:
    return lambda so: so not in sonames


def present(so: str) -> bool:
    return True


def x_answers(display: str) -> bool:
    return True


def test_everything_present_with_a_display_is_ok() -> None:
    v = startup.check_window({"DISPLAY": ":0"}, platform="linux", resolver=present, probe=x_answers,
                             os_release=DEBIAN)
    assert v.ok and v.message == "" and v.missing == () and v.env == {}


def test_the_issue_case_names_the_two_missing_libraries_and_one_apt_line() -> None:
    v = startup.check_window({"DISPLAY": ":0"}, platform="linux", probe=x_answers, os_release=DEBIAN,
                             resolver=without("libxcb-icccm.so.4", "libxcb-keysyms.so.1"), serve="./patchbay serve")
    assert not v.ok
    assert v.missing == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    assert v.install == "sudo apt install libxcb-icccm4 libxcb-keysyms1"
    assert "\n    sudo apt install libxcb-icccm4 libxcb-keysyms1\n" in v.message
    assert "libxcb-cursor" not in v.message  # Qt's own abort blamed the one that was installed
    assert "./patchbay serve" in v.message


@pytest.mark.parametrize(("os_release", "line"), [
    ({"ID": "ubuntu", "ID_LIKE": "debian"}, "sudo apt install libxcb-icccm4 libxcb-keysyms1"),
    ({"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}, "sudo apt install libxcb-icccm4 libxcb-keysyms1"),
    ({"ID": "fedora"}, "sudo dnf install xcb-util-wm xcb-util-keysyms"),
    ({"ID": "rocky", "ID_LIKE": "rhel centos fedora"}, "sudo dnf install xcb-util-wm xcb-util-keysyms"),
    ({"ID": "arch"}, "sudo pacman -S --needed xcb-util-wm xcb-util-keysyms"),
    ({"ID": "endeavouros", "ID_LIKE": "arch"}, "sudo pacman -S --needed xcb-util-wm xcb-util-keysyms"),
    ({"ID": "opensuse-tumbleweed", "ID_LIKE": "opensuse suse"}, "sudo zypper install libxcb-icccm4 libxcb-keysyms1"),
])
def test_one_install_line_per_distribution(os_release: dict[str, str], line: str) -> None:
    v = startup.check_window({"DISPLAY": ":0"}, platform="linux", probe=x_answers, os_release=os_release,
                             resolver=without("libxcb-icccm.so.4", "libxcb-keysyms.so.1"))
    assert (v.ok, v.install) == (False, line)
    assert v.message.count("sudo ") == 1


def test_an_unknown_distribution_gets_the_file_names_and_no_guessed_command() -> None:
    v = startup.check_window({"DISPLAY": ":0"}, platform="linux", probe=x_answers, os_release={"ID": "gentoo"},
                             resolver=without("libxcb-cursor.so.0"))
    assert not v.ok and v.install == "" and "sudo" not in v.message
    assert "libxcb-cursor.so.0" in v.message and "provide these files" in v.message


def test_packages_shared_by_several_libraries_are_named_once() -> None:
    assert startup.install_line(["libxcb-randr.so.0", "libxcb-shape.so.0", "libxcb-xkb.so.1"], "dnf") == \
        "sudo dnf install libxcb"
    assert startup.install_line(["libxcb-randr.so.0"], None) == ""


@pytest.mark.parametrize("env", [{}, {"XDG_SESSION_TYPE": "x11"}, {"QT_QPA_PLATFORM": "xcb"}])
def test_no_display_says_so_and_suggests_serve(env: dict[str, str]) -> None:
    v = startup.check_window(env, platform="linux", resolver=present, probe=x_answers, os_release=DEBIAN,
                             serve="./patchbay serve")
    assert not v.ok
    assert v.message.startswith("There is no display to open the window on")
    assert v.message.endswith("run the gateway without a window: ./patchbay serve")
    only_x = env.get("QT_QPA_PLATFORM") == "xcb"
    assert ("(DISPLAY is not set)" if only_x else "(neither DISPLAY nor WAYLAND_DISPLAY is set)") in v.message


def test_a_display_nobody_serves_is_named() -> None:
    v = startup.check_window({"DISPLAY": ":42"}, platform="linux", resolver=present, probe=lambda d: False,
                             os_release=DEBIAN, serve="patchbay serve")
    assert not v.ok and v.message.startswith("No X server answers on DISPLAY=:42.") and "patchbay serve" in v.message


def test_wayland_session_needs_only_the_wayland_libraries() -> None:
    xcb_gone = without(*startup.XCB_LIBS)
    v = startup.check_window({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, platform="linux",
                             resolver=xcb_gone, probe=x_answers, os_release=DEBIAN)
    assert v.ok and v.env == {}
    v = startup.check_window({"WAYLAND_DISPLAY": "wayland-0"}, platform="linux", os_release=DEBIAN,
                             resolver=without("libwayland-cursor.so.0"), probe=x_answers)
    assert not v.ok and v.install == "sudo apt install libwayland-cursor0" and "Wayland plugin" in v.message


def test_x11_first_but_unusable_pins_wayland_and_says_why() -> None:
    v = startup.check_window({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, platform="linux", probe=x_answers,
                             resolver=without("libxcb-icccm.so.4"), os_release=DEBIAN)
    assert v.ok and v.env == {"QT_QPA_PLATFORM": "wayland"}
    assert v.note.startswith("using Wayland: ") and "libxcb-icccm.so.4" in v.note


def test_a_platform_the_user_chose_is_left_alone() -> None:
    def never(so: str) -> bool:
        raise AssertionError("no library lookup for offscreen")

    for env in ({"QT_QPA_PLATFORM": "offscreen"}, {"QT_QPA_PLATFORM": "vnc:size=800x600"}):
        assert startup.check_window(env, platform="linux", resolver=never, probe=x_answers, os_release=DEBIAN).ok
    assert startup.check_window({}, platform="win32", resolver=never).ok
    assert startup.check_window({}, platform="darwin", resolver=never).ok
    assert startup.check_window({"PATCHBAY_SKIP_GUI_CHECK": "1"}, platform="linux", resolver=never).ok


def test_os_release_is_read_with_quotes_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "os-release"
    f.write_text('# comment\nNAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n\nVERSION_ID=\'22\'\n')
    osr = startup.read_os_release(f)
    assert osr == {"NAME": "Linux Mint", "ID": "linuxmint", "ID_LIKE": "ubuntu debian", "VERSION_ID": "22"}
    assert startup.package_manager(osr) == "apt"
    assert startup.read_os_release(tmp_path / "absent") == {}
    assert startup.package_manager({}) is None


def test_the_real_loader_finds_libc_and_not_a_made_up_library(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the dynamic loader lookup is for Linux")
    find = startup.loader_resolver(extra_dirs=[tmp_path])
    assert find("libc.so.6")
    assert not find("libpatchbay-no-such-thing.so.7")
    (tmp_path / "libpatchbay-no-such-thing.so.7").write_bytes(b"")  # a bundle's own copy counts
    assert find("libpatchbay-no-such-thing.so.7")


# --------------------------------------------------------------------------- the list vs the wheel


def _needed(path: Path) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF file (what ``readelf -d`` lists as NEEDED)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: list[str] = []
    for _name, sh_type, _flags, _addr, off, size, link, _info, _align, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_off = sections[link][4]
        for j in range(0, size, entsize):
            tag, val = struct.unpack_from("<qQ", data, off + j)
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab_off + val)
                out.append(data[strtab_off + val:end].decode())
    return out


def test_the_table_covers_every_system_library_the_installed_plugins_link() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the xcb plugin exists on Linux only")
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    assert spec is not None and spec.submodule_search_locations
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt"
    files = [qt / "plugins/platforms/libqxcb.so", qt / "lib/libQt6XcbQpa.so.6", qt / "lib/libQt6Gui.so.6",
             qt / "plugins/platforms/libqwayland.so"]
    system = {n for f in files for n in _needed(f)
              if not n.startswith(("libQt6", "libc.so", "libm.so", "libstdc++", "libgcc_s", "ld-linux", "libz.so"))}
    assert len(system) > 20
    assert sorted(system - set(ALL)) == []


def test_every_library_has_a_package_for_every_manager() -> None:
    for so, pkgs in ALL.items():
        assert len(pkgs) == len(startup.MANAGERS) and all(pkgs), so


# --------------------------------------------------------------------------- the self-test's GUI check


def test_selftest_fails_on_missing_x11_libraries_even_without_a_display() -> None:
    with pytest.raises(SelftestFailure) as exc:
        check_window_libraries({}, resolver=without("libxcb-keysyms.so.1"))
    assert "libxcb-keysyms.so.1" in str(exc.value)
    if startup.package_manager(startup.read_os_release()) == "apt":
        assert "sudo apt install libxcb-keysyms1" in str(exc.value)
    assert check_window_libraries({}, resolver=present) == "X11 libraries present"
    assert check_window_libraries({"WAYLAND_DISPLAY": "w"}, resolver=without("libxcb-icccm.so.4")).startswith(
        "Wayland libraries present")


# --------------------------------------------------------------------------- python -m app, for real


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PATCHBAY_", "QT_QPA")) and k not in ("DISPLAY", "WAYLAND_DISPLAY", "LD_LIBRARY_PATH")}
    env.update(PATCHBAY_HOME=str(tmp_path / "home"), HOME=str(tmp_path), **extra)
    return env


def test_python_m_app_without_a_display_says_so_instead_of_qts_abort(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "app"], cwd=REPO, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("patchbay: There is no display to open the window on (neither DISPLAY nor "
                                   "WAYLAND_DISPLAY is set). Start Patchbay from a desktop session, or run the "
                                   "gateway without a window: ./patchbay serve")
    assert proc.stdout == ""


def _ldconfig_sonames() -> set[str]:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def test_python_m_app_with_a_dead_display_names_the_real_problem(tmp_path: Path) -> None:
    """Whichever holds on this machine (checked with ldconfig, not with our loader lookup): the missing
    libraries and their install line, or no X server on the display. Never Qt's abort."""
    if not sys.platform.startswith("linux") or not Path("/etc/ld.so.cache").exists():
        pytest.skip("needs a Linux ld.so cache to tell which libraries this machine has")
    display = next(f":{n}" for n in range(93, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    proc = subprocess.run([sys.executable, "-m", "app"], cwd=REPO, env=_env(tmp_path, DISPLAY=display),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "qt.qpa" not in proc.stderr and "Aborted" not in proc.stderr
    have = _ldconfig_sonames()
    missing = [so for so in {**startup.COMMON_LIBS, **startup.XCB_LIBS} if so not in have]
    if missing:
        assert "patchbay: The window cannot open: Qt's X11 plugin needs the system" in proc.stderr
        assert all(so in proc.stderr for so in missing), (missing, proc.stderr)
    else:
        assert proc.stderr.startswith(f"patchbay: No X server answers on DISPLAY={display}."), proc.stderr
    assert "./patchbay serve" in proc.stderr
