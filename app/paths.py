"""Where Patchbay keeps its files. ``PATCHBAY_HOME=DIR`` puts everything under DIR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "Patchbay"
# the price table and the icons: package data, so a wheel carries them (pyproject.toml)
RESOURCES = Path(__file__).resolve().parent / "resources"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def ledger_file(self) -> Path:
        return self.data_dir / "usage.sqlite3"

    @property
    def token_file(self) -> Path:
        """Fallback home of the gateway token where no OS keychain exists."""
        return self.data_dir / "gateway-token"

    def ensure(self) -> None:
        """Create the folders; data and logs (the ledger, captured bodies, the token file) owner-only.
        Raises ``PathError`` with a sentence for the user."""
        for d in (self.config_dir, self.data_dir, self.log_dir):
            try:
                if d == self.config_dir:
                    d.mkdir(parents=True, exist_ok=True)
                else:
                    make_private_dir(d, tighten=True)
            except OSError as exc:
                raise PathError(
                    f"Patchbay cannot create its folder {d} ({exc.strerror or exc}). Make the folder above it "
                    "writable, free some disk space, or point PATCHBAY_HOME at a folder you can write."
                ) from None


class PathError(OSError):
    """A folder Patchbay needs cannot be made. ``str()`` is the message for the user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "a folder cannot be made"


def make_private_dir(path: Path, *, tighten: bool = False) -> None:
    """Create ``path`` (and parents) owner-only (0700). An existing folder is made owner-only only with
    ``tighten``, for Patchbay's own data and log folders: a folder the user named for a file (a log at
    /dev/full, a ledger in their home or /tmp) is theirs, and its mode is not ours to change."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if tighten and os.name == "posix" and (path.stat().st_mode & 0o077):
        os.chmod(path, 0o700)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty if missing; make it owner-only (0600)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def default_paths() -> Paths:
    home = os.environ.get("PATCHBAY_HOME")
    if home:
        base = Path(home).expanduser()
        return Paths(base, base / "data", base / "logs")
    import platformdirs

    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
    )
