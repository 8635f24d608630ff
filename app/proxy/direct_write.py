"""Writing a streamed answer's bytes to the client's socket from a protocol callback.

A stream relayed by push (app/proxy/relay.py) translates and forwards each upstream read inside
the upstream connection's ``data_received``; going through the ASGI ``send`` there would need a
task to await it. ``DirectWriter`` writes the chunk to the client's transport as uvicorn's
httptools protocol would (``RequestResponseCycle.send`` for a body message of a chunked answer),
and only while that needs no waiting: the client reads as fast as we write, is still there, and
the answer is open and chunked. Otherwise ``ready`` says no and the caller awaits ``send``.
"""

from __future__ import annotations

from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["DirectWriter", "direct_writer"]


class DirectWriter:
    """The client side of one uvicorn httptools request (see the module docstring)."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    def ready(self) -> bool:
        """A body chunk can be written now, as ``send`` would, without waiting."""
        c = self._cycle
        return c.chunked_encoding is True and not c.flow.write_paused and not c.disconnected and \
            not c.response_complete

    def write(self, data: bytes) -> None:
        """One chunk of the answer's body (only after ``ready`` said yes)."""
        self._cycle.transport.write(b"%x\r\n%s\r\n" % (len(data), data))


def direct_writer(send: Callable[..., Any]) -> DirectWriter | None:
    """The direct writer of an ASGI ``send``, when it is uvicorn's httptools one; else None."""
    cycle = getattr(send, "__self__", None)
    if type(cycle) is RequestResponseCycle and hasattr(cycle, "flow") and hasattr(cycle, "transport"):
        return DirectWriter(cycle)
    return None
