"""One desktop app per user and data folder: a second launch raises the first window and ends.

The first app listens on a local socket (a Unix socket / Windows named pipe) named after the data
folder, so a ``PATCHBAY_HOME`` of its own is another instance; a later launch connects, says "show",
and exits. A socket left by a crashed app is removed and taken over.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

WAIT_MS = 500


def instance_key(data_dir: Path) -> str:
    return "patchbay-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


class SingleInstance(QObject):
    activated = Signal()  # another launch asked this one to show its window

    def __init__(self, key: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self._server: QLocalServer | None = None

    def claim(self) -> bool:
        """True: this is the first app (it now listens). False: another runs and was asked to show itself."""
        sock = QLocalSocket()
        sock.connectToServer(self.key)
        if sock.waitForConnected(WAIT_MS):
            sock.write(b"show\n")
            sock.waitForBytesWritten(WAIT_MS)
            sock.disconnectFromServer()
            return False
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)  # this user only
        if not server.listen(self.key):
            QLocalServer.removeServer(self.key)  # left by an app that crashed
            if not server.listen(self.key):
                return True  # no socket to be had: run anyway rather than not at all
        server.newConnection.connect(self._on_connection)
        self._server = server
        return True

    def _on_connection(self) -> None:
        server = self._server
        while server is not None and server.hasPendingConnections():
            conn = server.nextPendingConnection()
            conn.readyRead.connect(lambda c=conn: self._read(c))
            conn.disconnected.connect(conn.deleteLater)

    def _read(self, conn: QLocalSocket) -> None:
        if b"show" in bytes(conn.readAll().data()):
            self.activated.emit()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
