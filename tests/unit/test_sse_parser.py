"""SSEParser (app/proxy/sse.py) against a plain reading of the SSE rules, however the bytes are
cut: its fast paths (whole events in one read, one data line, an event line and a data line)
must give what the general parse gives."""

from __future__ import annotations

import random

import pytest

from app.proxy.sse import SSEParser


def reference(stream: bytes) -> list[tuple[bytes, bytes]]:
    if stream.endswith(b"\r"):  # a last CR may be half of a CRLF still to come: not a line end yet
        stream = stream[:-1]
    text = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    out = []
    for block in text.split(b"\n\n")[:-1]:  # the part after the last blank line is no event yet
        name, data = b"", None
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                value = line[5:][1:] if line[5:6] == b" " else line[5:]
                data = value if data is None else data + b"\n" + value
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if data is not None or name:
            out.append((name, data if data is not None else b""))
    return out


EVENTS = [
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
    b"data: [DONE]\n\n",
    b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n',
    b"event:  message_stop \ndata: {}\n\n",
    b"event: ping\n\n",
    b": keep-alive comment\n\n",
    b"data:no-space\n\n",
    b"data: line one\ndata: line two\n\n",
    b"id: 7\nretry: 10\ndata: x\n\n",
    b"event: e\ndata: a\r\n\r\n",
    b"data: cr only\r\r",
    b"data: \xe2\x98\x83 snow\n\n",
    b"event: x\ndata: y\nid: 1\n\n",
    b"data: \n\n",
    b"\n\n",
]


@pytest.mark.parametrize("seed", range(40))
def test_any_cut_of_any_stream_parses_as_the_rules_say(seed: int) -> None:
    rng = random.Random(seed)
    stream = b"".join(rng.choice(EVENTS) for _ in range(rng.randint(1, 30)))
    if rng.random() < 0.3:
        stream += b"data: unfinished"
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 12))))
    p = SSEParser()
    got: list[tuple[bytes, bytes]] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=False):
        got += p.feed(stream[a:b])
    assert got == reference(stream)


@pytest.mark.parametrize("event", EVENTS)
def test_each_event_read_whole(event: bytes) -> None:
    assert SSEParser().feed(event) == reference(event)
