"""Where Patchbay keeps its files. ``PATCHBAY_HOME=DIR`` puts everything under DIR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "Patchbay"
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


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
        for d in (self.config_dir, self.data_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)


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
