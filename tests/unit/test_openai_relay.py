"""The OpenAI stream reader's short ways (a plain text chunk read by its skeleton or by its dict)
give what the general way gives: the same events, in the same order, and the same translator state
after, whatever the upstream sends, however its bytes are cut into reads."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.proxy.sse import SSEParser
from app.proxy.translate.openai_relay import OpenAIStreamReader
from app.proxy.translate.stream import OpenAIStreamTranslator, encode_events

BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1760000000, "model": "gpt-x",
        "system_fingerprint": "fp_1"}


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
plain = texts.map(lambda t: _chunk({"content": t}))
events = st.one_of(
    plain, plain, plain, plain,
    texts.map(lambda t: _chunk({"role": "assistant", "content": t, "reasoning_content": None, "tool_calls": None})),
    texts.map(lambda t: _chunk({"reasoning_content": t})),
    texts.map(lambda t: _chunk({"content": t, "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                             "function": {"name": "read", "arguments": "{}"}}]})),
    st.just(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]})),
    texts.map(lambda t: _chunk({"content": t}, "stop")),
    texts.map(lambda t: {**_chunk({"content": t}), "model": "another-model"}),
    st.just({**BASE, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
    st.just(_chunk({"content": ""})),
    st.just({"error": {"message": "overloaded", "type": "server_error"}}),
)
# how the upstream writes its JSON: compact, with spaces, with non-ASCII escaped
styles = st.sampled_from([
    lambda o: orjson.dumps(o),
    lambda o: json.dumps(o, ensure_ascii=False).encode(),
    lambda o: json.dumps(o).encode(),
])


def _frames(chunks: list[dict[str, Any]], dumps: Any, hostile: list[int]) -> list[bytes]:
    out = []
    for i, c in enumerate(chunks):
        raw = dumps(c)
        if i in hostile:  # a plain chunk's bytes around something that is not one string
            raw = raw.replace(b'"content":', b'"content":"x","tool_calls":[{"index":0,"id":"call_9","type":'
                              b'"function","function":{"name":"write","arguments":"{}"}}],"refusal":', 1)
        out.append(b"data: " + raw + b"\n\n")
    return out + [b"data: [DONE]\n\n"]


def _reads(frames: list[bytes], cuts: list[int], merge: bool) -> list[bytes]:
    """The stream as reads: one per frame, or cut at ``cuts`` (``merge``: several frames a read)."""
    if not merge and not cuts:
        return frames
    data = b"".join(frames)
    points = sorted({c % len(data) for c in cuts} | {len(data)})
    reads, at = [], 0
    for p in points:
        if p > at:
            reads.append(data[at:p])
            at = p
    return reads


def _general(reads: list[bytes]) -> tuple[list[Any], OpenAIStreamTranslator]:
    tr = OpenAIStreamTranslator("claude-x", input_tokens=10, message_id="msg_1")
    parser = SSEParser()
    out = [encode_events(tr.start())]
    for read in reads:
        evs: list[tuple[str, dict[str, Any]]] = []
        for _name, data in parser.feed(read):
            if data == b"[DONE]":
                break
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                evs += tr.feed(obj)
        out.append(encode_events(evs))
        if tr.done:
            break
    return _parsed(b"".join(out)), tr


def _short(reads: list[bytes]) -> tuple[list[Any], OpenAIStreamTranslator, int]:
    tr = OpenAIStreamTranslator("claude-x", input_tokens=10, message_id="msg_1")
    firsts: list[bool] = []
    reader = OpenAIStreamReader(tr, lambda: firsts.append(True))
    out = [encode_events(tr.start())]
    for read in reads:
        out.append(reader(read))
        if reader.complete:
            break
    return _parsed(b"".join(out)), tr, len(firsts)


def _ids(stream: bytes) -> bytes:
    return re.sub(rb"toolu_[0-9A-Za-z]+", b"toolu_X", stream)  # each run draws its own tool ids


def _parsed(stream: bytes) -> list[Any]:
    events = []
    for block in _ids(stream).split(b"\n\n"):
        if block:
            name, _, data = block.partition(b"\ndata: ")
            events.append((name, orjson.loads(data)))
    return events


def _state(tr: OpenAIStreamTranslator) -> tuple[Any, ...]:
    return (tr.model, tr.usage, tr.done, tr.first_content_seen, tr.skipped, tr.reasoning_parts,
            _ids(encode_events(tr.finish())))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=25), styles, st.lists(st.integers(0, 24), max_size=3),
       st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_short_ways_read_every_stream_as_the_general_way_does(chunks, dumps, hostile, cuts, merge):
    reads = _reads(_frames([_chunk({"role": "assistant", "content": ""})] + chunks, dumps, hostile), cuts, merge)
    want, tr_want = _general(reads)
    got, tr_got, firsts = _short(reads)
    assert got == want
    assert _state(tr_got) == _state(tr_want)
    assert firsts == (1 if tr_want.first_content_seen else 0)


def test_plain_text_chunks_take_the_skeleton_way_and_keep_their_bytes():
    tr = OpenAIStreamTranslator("claude-x", message_id="msg_1")
    reader = OpenAIStreamReader(tr, lambda: None)
    tr.start()
    frames = _frames([_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hel"}),
                      _chunk({"content": "lo \"é\"\\n"}), _chunk({"content": "!"})], orjson.dumps, [])
    out = [reader(f) for f in frames[:2]]
    assert reader.skeleton is None  # the role chunk opens the block (the general way); "Hel" is learned
    out.append(reader(frames[2]))
    assert reader.skeleton is not None and frames[3].startswith(reader.skeleton[0])
    out.append(reader(frames[3]))
    deltas = [e for e in _parsed(b"".join(out)) if e[0] == b"event: content_block_delta"]
    assert [d[1]["delta"]["text"] for d in deltas] == ["Hel", 'lo "é"\\n', "!"]
    assert out[-1] == (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                       b'"delta":{"type":"text_delta","text":"!"}}\n\n')


def test_a_chunk_with_the_skeleton_around_more_than_one_string_takes_the_general_way():
    """Same bytes before and after, but between them a tool call rides along: it must not pass as text."""
    chunks = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "a"}), _chunk({"content": "b"}),
              _chunk({"content": "c"})]
    reads = _frames(chunks, orjson.dumps, [3])
    want, _ = _general(reads)
    got, _, _ = _short(reads)
    assert got == want
    assert [e[1]["content_block"]["type"] for e in got if e[0] == b"event: content_block_start"] == ["text", "tool_use"]
