"""Reading a body by push (``UpstreamBody.pump``, app/proxy/upstream_body.py): each read handed to a sink from
the connection's ``data_received``, outside any task; the task back in charge when the sink asks;
the read timeout still per gap."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.proxy.upstream_body import stream_of
from tests.fakes.upstreams import FakeUpstream, OpenAIStream
from tests.unit.test_transport import BODY, CHUNKS, Runner, client, run, stream_bytes, up  # noqa: F401

URL = "/v1/chat/completions"


def test_pump_hands_each_read_over_outside_any_task(run: Runner, up: FakeUpstream) -> None:  # noqa: F811
    up.enqueue(OpenAIStream(CHUNKS, delay_s=0.005))
    got: list[bytes] = []
    tasks: list[object] = []

    def sink(data: bytes) -> bool:
        got.append(data)
        tasks.append(asyncio.current_task())
        return True

    async def go() -> int:
        async with client() as c:
            async with c.stream("POST", up.url + URL, content=b"{}") as r:
                body = stream_of(r)
                assert body is not None
                pumps = 0
                while not body.ended:
                    got.append(body.take())  # what came with the head, before the pump
                    tasks.append("task")
                    await body.pump(sink)
                    pumps += 1
                return pumps

    pumps = run(go)
    assert b"".join(got) == BODY
    assert pumps == 1
    assert tasks.count(None) > len(CHUNKS) // 2  # paced: about a read per chunk, each from the protocol callback


def test_a_sink_that_asks_for_its_task_gets_the_rest_in_order(run: Runner, up: FakeUpstream) -> None:  # noqa: F811
    up.enqueue(OpenAIStream(CHUNKS, delay_s=0.003))
    got: list[bytes] = []

    def sink(data: bytes) -> bool:
        got.append(data)
        return len(got) % 3 != 0  # every third read: the task takes over

    async def go() -> int:
        async with client() as c:
            async with c.stream("POST", up.url + URL, content=b"{}") as r:
                body = stream_of(r)
                assert body is not None
                handovers = 0
                while True:
                    data = body.take()
                    if data:
                        got.append(data)
                        continue
                    if body.ended:
                        return handovers
                    await asyncio.sleep(0.01)  # the task is busy: reads queue meanwhile
                    await body.pump(sink)
                    handovers += 1

    handovers = run(go)
    assert b"".join(got) == BODY
    assert handovers > 2


def test_the_read_timeout_holds_while_pumping(run: Runner, up: FakeUpstream) -> None:  # noqa: F811
    up.enqueue(OpenAIStream(CHUNKS[:12], delay_s=0.05))  # gaps shorter than the timeout
    up.enqueue(OpenAIStream(CHUNKS[:3], delay_s=0.6))  # a gap longer than it

    async def go() -> None:
        async with client(timeout=httpx.Timeout(5.0, read=0.2)) as c:
            got: list[bytes] = []
            async with c.stream("POST", up.url + URL, content=b"{}") as r:
                body = stream_of(r)
                assert body is not None
                while not body.ended:
                    got.append(body.take())
                    await body.pump(lambda d: got.append(d) is None)
            assert b"".join(got) == stream_bytes(CHUNKS[:12])
            with pytest.raises(httpx.ReadTimeout):
                async with c.stream("POST", up.url + URL, content=b"{}") as r:
                    body = stream_of(r)
                    assert body is not None
                    while not body.ended:
                        body.take()
                        await body.pump(lambda d: True)
            up.enqueue(OpenAIStream(CHUNKS[:3]))
            await c.post(up.url + URL, content=b"{}")

    run(go)
    assert up.connections == 2  # the timed-out connection is never reused


def test_whole_is_offered_each_read_that_is_one_piece_and_what_it_leaves_goes_to_the_sink(
        run: Runner, up: FakeUpstream) -> None:  # noqa: F811
    """The body's ``whole``: offered a read's piece only when the read brought that piece and
    nothing else and nothing waits in the queue; what it takes never reaches the sink, what it
    leaves does, and together they are the body, in order. The read timeout counts from each
    piece it takes."""
    up.enqueue(OpenAIStream(CHUNKS, delay_s=0.004))  # a read per chunk, 0.17 s in all
    up.enqueue(OpenAIStream(CHUNKS, split="one"))  # all in one read, with the end of the body
    frames = {OpenAIStream.frame(c) for c in CHUNKS} | {b"data: [DONE]\n\n"}
    order: list[tuple[str, bytes]] = []
    offers = 0

    def whole(piece: bytes) -> bool:
        nonlocal offers
        offers += 1
        if offers in (2, 5):  # these two left for the sink
            order.append(("left", piece))
            return False
        order.append(("whole", piece))
        return True

    def sink(data: bytes) -> bool:
        order.append(("sink", data))
        return True

    async def go(read_s: float) -> None:
        async with client(timeout=httpx.Timeout(5.0, read=read_s)) as c:
            async with c.stream("POST", up.url + URL, content=b"{}") as r:
                body = stream_of(r)
                assert body is not None
                while not body.ended:
                    order.append(("take", body.take()))
                    await body.pump(sink, whole)

    run(lambda: go(0.05))  # taken pieces for longer than the read timeout: no timeout
    assert b"".join(d for how, d in order if how != "left") == BODY
    assert sum(how == "whole" for how, _ in order) > len(CHUNKS) // 2
    assert all(d in frames for how, d in order if how in ("whole", "left"))  # one whole piece each
    assert [how for how, _ in order].count("left") == 2
    for i, (how, d) in enumerate(order):  # a piece left is the sink's very next read
        if how == "left":
            assert order[i + 1] == ("sink", d)
    order.clear()
    run(lambda: go(5.0))
    assert not any(how in ("whole", "left") for how, _ in order)  # many chunks in one read: the sink's
    assert b"".join(d for _, d in order) == BODY
