"""Notice when the settings file changes on disk (a hand edit, another tool, a sync client).

A watcher on the file and on its folder (editors save by writing a new file and renaming it over
the old one, which ends a watch on the file itself), plus a cheap stat every few seconds for
file systems without change notification. Several writes in a row are one change: ``changed``
fires once the file has been quiet for ``SETTLE_MS``. The bridge decides what to do with it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

SETTLE_MS = 300  # an editor's save is often a truncate and a write, or a write and a rename
POLL_MS = 3000
Stamp = tuple[int, int, int] | None  # mtime (ns), size, inode; None: no file


def _stamp(path: Path) -> Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigWatch(QObject):
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._path: Path | None = None
        self._stamp: Stamp = None
        self._watcher = QFileSystemWatcher(self)
        self._watcher.fileChanged.connect(lambda _p: self._touched())
        self._watcher.directoryChanged.connect(lambda _p: self._touched())
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._settled)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._touched)

    def watch(self, path: Path) -> None:
        """Watch ``path`` from now on (its current content counts as seen)."""
        if self._path != path:
            self._path = path
            self._stamp = _stamp(path)
        self._rewatch()
        self._poll.start()

    def stop(self) -> None:
        self._poll.stop()
        self._settle.stop()
        paths = self._watcher.files() + self._watcher.directories()
        if paths:
            self._watcher.removePaths(paths)
        self._path = None

    def seen(self) -> None:
        """The file as it is now was written by us: no change to report."""
        if self._path is not None:
            self._stamp = _stamp(self._path)

    def _rewatch(self) -> None:
        if self._path is None:
            return
        w = self._watcher
        wanted = [str(p) for p in (self._path, self._path.parent) if p.exists()]
        have = w.files() + w.directories()
        stale = [p for p in have if p not in wanted]
        if stale:
            w.removePaths(stale)
        missing = [p for p in wanted if p not in have]
        if missing:
            w.addPaths(missing)

    def _touched(self) -> None:
        if self._path is None:
            return
        self._rewatch()  # a rename over the file ended the watch on it
        if _stamp(self._path) != self._stamp:
            self._settle.start()  # (re)start: report once the writes stop

    def _settled(self) -> None:
        if self._path is None:
            return
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is not None:  # a deleted file is not an edit; the next save brings it back
            self.changed.emit()
