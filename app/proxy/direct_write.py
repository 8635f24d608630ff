"""Writing a streamed answer's bytes to the client's socket from a protocol callback.

A stream relayed by push (app/proxy/relay.py) translates and forwards each upstream read inside
the upstream connection's ``data_received``; going through the ASGI ``send`` there would need a
task to await it. ``DirectWriter`` writes the chunk to the client's transport as uvicorn's
httptools protocol would (``RequestResponseCycle.send`` for a body message of a chunked answer),
and only while that needs no waiting: the client reads as fast as we write, is still there, and
the answer is open and chunked. Otherwise ``ready`` says no and the caller awaits ``send``.

``held_head`` makes the response head and the first body bytes one write (one segment, one
wake-up of the client): the head uvicorn writes for ``http.response.start`` waits for them. Every
write to a loopback socket costs a syscall and a wake-up of the reader (~0.1 ms on the
development VM), and the time to first byte waits on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


    @contextmanager
    def held_head(self) -> Iterator[None]:
        """Inside: the head uvicorn writes is held and sent with the first body bytes written
        after it (``send`` or ``write``); on leaving, a head still held goes out alone."""
        c = self._cycle
        real = c.transport
        shim = _HeadHeld(c, real)
        c.transport = shim  # type: ignore[assignment]
        try:
            yield
        finally:
            if c.transport is shim:
                c.transport = real
            if shim.head:
                real.write(shim.head)
                shim.head = b""


class _HeadHeld:
    """Stands in for uvicorn's transport while a head is held (see ``DirectWriter.held_head``):
    its first write (the head of ``http.response.start``) is held, the next goes out with it."""

    def __init__(self, cycle: RequestResponseCycle, real: Any) -> None:
        self._cycle = cycle
        self._real = real
        self._held = False
        self.head = b""

    def write(self, data: bytes) -> None:
        if not self._held:
            self._held = True
            self.head = data
            return
        self._cycle.transport = self._real
        head, self.head = self.head, b""
        self._real.write(head + data)

    def __getattr__(self, name: str) -> Any:  # anything else goes to the real transport
        return getattr(self._real, name)


def direct_writer(send: Callable[..., Any]) -> DirectWriter | None:
    """The direct writer of an ASGI ``send``, when it is uvicorn's httptools one; else None."""
    cycle = getattr(send, "__self__", None)
    if type(cycle) is RequestResponseCycle and hasattr(cycle, "flow") and hasattr(cycle, "transport"):
        return DirectWriter(cycle)
    return None
