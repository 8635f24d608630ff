"""How a gateway process gets its listening socket when ``patchbay serve --workers N`` runs several.

Each worker binds the same host and port with ``SO_REUSEPORT`` (``PATCHBAY_REUSEPORT=1``, set by the
supervisor in ``app/cli/serve_workers.py``): the kernel then spreads new connections over the workers'
sockets (on Linux by a hash of the connection, so evenly), and one worker that is busy or restarting
does not hold up the others' accepts. Without the variable a gateway binds alone, as before.
"""

from __future__ import annotations

import os
import socket

REUSE_ENV = "PATCHBAY_REUSEPORT"


def reuse_port() -> bool:
    """This process is one of several workers sharing its port."""
    return os.environ.get(REUSE_ENV) == "1" and hasattr(socket, "SO_REUSEPORT")


def allow_reuse(sock: socket.socket) -> None:
    """Let other workers bind the same address (call before ``bind``)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
