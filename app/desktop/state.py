"""What the desktop app remembers between runs that is not configuration: the window's size and page,
the answer to "what should Quit do", session pins and each session's current backend.

One small JSON file, ``desktop-state.json`` in the data folder. A missing or broken file is an empty
state (the app starts as new); writes replace the file whole, so a crash never leaves half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE_NAME = "desktop-state.json"


class DesktopState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._data = loaded
        except (OSError, ValueError):
            pass

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            if key not in self._data:
                return
            self._data.pop(key)
        elif self._data.get(key) == value:
            return
        else:
            self._data[key] = value
        self._write()

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # remembering is a courtesy: a read-only disk must not break the app
