"""An OpenAI Chat Completions event stream, read for the relay (app/proxy/relay.py): each upstream
read in, the Anthropic SSE bytes for the client out.

Most reads of a streamed answer are one chunk that only continues the open text block
(``data: {…"choices":[{"index":0,"delta":{"content":"…"},"finish_reason":null}]}\n\n``). A paced
stream pays a wake-up for each of them, and what a wake-up costs is mostly how much code and how
many objects it touches (docs/performance.md). So such reads take short ways:

- **by dict**: one JSON parse, ``OpenAIStreamTranslator.plain_text`` checks it is plain text, and
  ``text_delta`` writes the event's bytes directly (no SSE split, no event dicts, no encoder);
- **by skeleton**: within one stream a provider repeats every other byte of such a chunk (id,
  created, model, the null fields), so the bytes before and after the text of the last plain text
  chunk are kept; a read that starts and ends with them and has exactly one JSON string between
  them is the same chunk with another text. Its string is parsed (which checks it) and goes to the
  client as the upstream spelled it.

Anything else (several events in one read, an event cut across reads, reasoning, tool calls, the
finish, usage, an error, JSON that does not parse) goes the general way: the SSE parser,
``OpenAIStreamTranslator.feed`` and ``encode_events``. Every way gives the same events and leaves
the translator in the same state (tests/unit/test_openai_relay.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from app.proxy.sse import SSEParser
from app.proxy.translate.stream import OpenAIStreamTranslator, encode_events

__all__ = ["OpenAIStreamReader", "loads_lenient"]


def loads_lenient(data: bytes) -> Any:
    """A chunk's JSON; invalid UTF-8 inside it becomes U+FFFD instead of losing the chunk."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return orjson.loads(data.decode("utf-8", "replace"))
    except orjson.JSONDecodeError:
        return None


class OpenAIStreamReader:
    """The relay's handler for one OpenAI stream (``Handler`` in app/proxy/relay.py)."""

    __slots__ = ("tr", "first_token", "parser", "done", "complete", "skeleton")

    def __init__(self, tr: OpenAIStreamTranslator, first_token: Callable[[], None]) -> None:
        self.tr = tr
        self.first_token: Callable[[], None] | None = first_token  # called once, at the first content
        self.parser = SSEParser()
        self.done = False  # ``data: [DONE]`` came
        self.complete = False  # [DONE] came or the translator ended the answer: read no further
        # the bytes before and after the text of the last plain text chunk, and their lengths (``_skeleton``)
        self.skeleton: tuple[bytes, bytes, int, int] | None = None

    def __call__(self, chunk: bytes) -> bytes:
        if not self.parser.idle or chunk[-2:] != b"\n\n" or b"\r" in chunk:
            return self._read(chunk)  # an event cut across reads, or CR line ends
        if chunk.find(b"\n\n") == len(chunk) - 2:  # one whole event: a paced stream's usual read
            out = self._plain(chunk)
            return out if out is not None else self._read(chunk)
        blocks = chunk[:-2].split(b"\n\n")  # whole events that came together
        parts = []
        for i, block in enumerate(blocks):
            out = self._plain(block + b"\n\n")
            if out is None:  # this one and the rest the general way, in order
                parts.append(self._read(b"\n\n".join(blocks[i:]) + b"\n\n"))
                break
            parts.append(out)
        return b"".join(parts)

    def _plain(self, event: bytes) -> bytes | None:
        """A whole event's bytes for the client when it is a plain text chunk (the short ways),
        else None, nothing read."""
        out = self.by_skeleton(event)
        if out is not None:
            return out
        if event[:7] == b"data: {" and event[-3:] == b"}\n\n":
            try:
                text = self.tr.plain_text(orjson.loads(event[6:-2]))
            except orjson.JSONDecodeError:
                text = None
            if text is not None:
                literal = orjson.dumps(text)
                self.skeleton = _skeleton(event, literal)
                return self.tr.text_delta(text, literal)
        return None

    def by_skeleton(self, event: bytes) -> bytes | None:
        """A read that is the last plain text chunk's bytes around a new text (the short way by
        skeleton): its bytes for the client, the translator moved on; else None, nothing read.
        Between the skeleton's two parts there must be exactly one JSON string, which holds no raw
        line break: so the read is one whole event, as a short way needs."""
        skeleton = self.skeleton
        if skeleton is None or not event.startswith(skeleton[0]) or not event.endswith(skeleton[1]) or \
                not self.parser.idle:
            return None
        literal = event[skeleton[2]:skeleton[3]]
        try:
            text = orjson.loads(literal)
        except orjson.JSONDecodeError:
            return None
        if type(text) is not str or not text:
            return None
        return self.tr.text_delta(text, literal)

    def _read(self, chunk: bytes) -> bytes:
        tr = self.tr
        events: list[tuple[str, dict[str, Any]]] = []
        for _name, data in self.parser.feed(chunk):
            if data == b"[DONE]":
                self.done = True
                break
            if not data:
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                obj = loads_lenient(data)
            if obj is None:
                continue  # a keep-alive comment or junk line: nothing to translate
            if not isinstance(obj, dict):
                tr.skipped += 1
                continue
            events += tr.feed(obj)
            if self.first_token is not None and tr.first_content_seen:
                self.first_token()
                self.first_token = None
        if self.done or tr.done:
            self.complete = True
        return encode_events(events)


def _skeleton(chunk: bytes, literal: bytes) -> tuple[bytes, bytes, int, int] | None:
    """The bytes before and after the text's JSON string in a plain text chunk, when the chunk
    spells it as ``literal`` and only once. Within one stream a provider repeats a chunk's other
    bytes (id, created, model, the choice's null fields), so a later chunk that starts and ends with
    these bytes and has one JSON string between them is the same plain text chunk with another
    text: no dicts to build and check for it."""
    for key in (b'"content":', b'"content": '):
        at = chunk.find(key + literal)
        if at >= 0:
            if chunk.find(key + literal, at + 1) >= 0:
                return None
            cut = at + len(key)
            after = chunk[cut + len(literal):]
            return chunk[:cut], after, cut, -len(after)  # ``after`` ends in "\n\n": never empty
    return None
