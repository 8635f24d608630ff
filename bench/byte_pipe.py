"""A byte-copy TCP proxy on uvloop: the floor under any gateway's per-chunk cost.

    .venv/bin/python bench/byte_pipe.py LISTEN_PORT UPSTREAM_PORT

Each client connection gets its own upstream connection, and whatever one side sends is written
to the other as it arrives: one wake-up, one read and one write per chunk, and no parsing.
``bench/peers.py --floor`` runs it beside the gateways (its requests go to the upstream in the
upstream's own format), so the table shows what a paced chunk costs before any gateway work.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop


class _Side(asyncio.Protocol):
    """One end of a proxied connection; writes what it receives to its peer (buffered until the
    peer is connected)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of asyncio's
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        if peer.transport is None:
            peer.pending.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()


async def serve(listen: int, upstream: int) -> None:
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[object]] = set()

    def accept() -> _Side:
        client, up = _Side(), _Side()
        client.peer, up.peer = up, client
        task = loop.create_task(loop.create_connection(lambda: up, "127.0.0.1", upstream))
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    server = await loop.create_server(accept, "127.0.0.1", listen)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
