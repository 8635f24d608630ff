"""The log file: owner-only, scrubbed of credentials, and quiet when the disk refuses it.

A full or read-only disk must not print a logging traceback to stderr for every line; the
handler says so once and stops writing until the next start.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path
from typing import Any, cast

from app.logs.oneline import OneLineFilter
from app.logs.scrub import ScrubFilter
from app.paths import make_private_dir


class PrivateLogHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file readable by its owner alone (0600 in a 0700 folder)."""

    def __init__(self, path: Path, **kw: Any) -> None:
        make_private_dir(path.parent)
        self._failed = False
        super().__init__(path, **kw)
        self.addFilter(ScrubFilter())
        self.addFilter(OneLineFilter())

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fchmod(fd, 0o600)  # a file from an older Patchbay was 0644
        except (OSError, AttributeError):  # AttributeError: no fchmod on Windows
            pass
        return cast(io.TextIOWrapper, os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors))

    def emit(self, record: logging.LogRecord) -> None:
        if not self._failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self._failed:
            return
        self._failed = True
        exc = sys.exc_info()[1]
        reason = getattr(exc, "strerror", None) or exc or "unknown error"
        try:
            sys.stderr.write(f"patchbay: cannot write the log file {self.baseFilename} ({reason}); it gets no more "
                             "lines until Patchbay starts again. Free some disk space or fix the folder's "
                             "permissions.\n")
        except Exception:
            pass


def stderr_handler(verbose: bool) -> logging.Handler:
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(logging.WARNING if not verbose else logging.INFO)
    sh.setFormatter(logging.Formatter("patchbay: %(message)s"))
    sh.addFilter(ScrubFilter())
    sh.addFilter(OneLineFilter())
    return sh
