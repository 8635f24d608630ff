"""Reading a body by push (``_Body.pump``, app/proxy/relay.py): each read handed to a sink from
the connection's ``data_received``, outside any task; the task back in charge when the sink asks;
the read timeout still per gap."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.proxy.transport import stream_of
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
