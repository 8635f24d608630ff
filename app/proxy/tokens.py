"""A fast estimate of a request's input tokens, for ``long_context`` routing and for
``count_tokens`` on backends that cannot count.

No tokenizer runs: the text a model would read (system prompt, message text, tool calls and
results, tool definitions as JSON) is gathered into one UTF-8 buffer, a handful of byte classes
are counted with C-speed ``bytes`` methods, and a linear model turns the counts into tokens:

====================  ============  ==================================================
byte class            tokens each   why
====================  ============  ==================================================
letters               0.237         about four letters make a token
punctuation           0.251         operators and brackets often merge in pairs
line breaks           0.55          a break often merges with the indentation after it
spaces                0.165         most merge into the word after them
digits                0.45          numbers split into groups of up to three digits
non-ASCII bytes       0.3           CJK or Cyrillic: about one token a character
====================  ============  ==================================================

The weights were fitted (least squares on relative error, the last two fixed by hand) against
OpenAI's ``cl100k_base`` tokenizer on Python source, Python's documentation prose and
Claude Code-shaped requests (``tests/fakes/bodies.py``, seeds other than the tests' own);
``tests/unit/test_tokens.py`` measures the error on Claude Code-shaped requests against the
same tokenizer (about ±10 % on a whole request). Claude's own tokenizer is not public, so the
estimate is a size, not a bill: good for "is this request past 60 000 tokens", not for cost.

Images count (width × height) / 750 tokens, as Anthropic documents, where a PNG's header gives
its size, else 1 600 (the most an image costs after Anthropic's resizing); a PDF or other
base64 document counts 1 600 as well. Their base64 data is never counted as text. Thinking
blocks of earlier turns are left out, as Anthropic does when it counts.

A 100 KB request takes about a quarter of a millisecond (``bench/tokens_bench.py``).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import orjson

_PUNCT = bytes(c for c in range(33, 127) if not chr(c).isalnum())
_DIGITS = b"0123456789"
_HIGH = bytes(range(128, 256))

W_LETTER = 0.237
W_PUNCT = 0.251
W_NEWLINE = 0.55
W_SPACE = 0.165
W_DIGIT = 0.45
W_HIGH = 0.3
IMAGE_TOKENS = 1600  # Anthropic's ceiling for one image after resizing (≈ 1.15 megapixels / 750)


def text_tokens(data: bytes) -> float:
    """The estimated token count of UTF-8 text."""
    n = len(data)
    if not n:
        return 0.0
    spaces = data.count(b" ")
    newlines = data.count(b"\n")
    punct = n - len(data.translate(None, _PUNCT))
    digits = n - len(data.translate(None, _DIGITS))
    high = n - len(data.translate(None, _HIGH))
    letters = n - spaces - newlines - punct - digits - high
    return (W_LETTER * letters + W_PUNCT * punct + W_NEWLINE * newlines + W_SPACE * spaces + W_DIGIT * digits
            + W_HIGH * high)


def image_tokens(source: Any) -> int:
    """(width × height) / 750 for a base64 PNG whose header says its size; IMAGE_TOKENS otherwise."""
    if isinstance(source, dict) and source.get("type") == "base64" and source.get("media_type") == "image/png":
        data = source.get("data")
        if isinstance(data, str) and len(data) >= 32:
            try:
                head = base64.b64decode(data[:32])
            except (binascii.Error, ValueError):
                return IMAGE_TOKENS
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w = int.from_bytes(head[16:20], "big")
                h = int.from_bytes(head[20:24], "big")
                # Anthropic scales an image down to at most 1568 px on its long edge first
                scale = min(1.0, 1568 / max(w, h, 1))
                return max(1, min(IMAGE_TOKENS, math.ceil(w * scale * h * scale / 750)))
    return IMAGE_TOKENS


def _gather(blocks: Any, texts: list[str], structured: list[Any], media: list[Any]) -> None:
    """Collect what the model reads from one message's content (a string or a list of blocks)."""
    if isinstance(blocks, str):
        texts.append(blocks)
        return
    if not isinstance(blocks, list):
        return
    for b in blocks:
        if not isinstance(b, dict):
            continue
        t = b.get("type")
        if t == "text":
            v = b.get("text")
            if isinstance(v, str):
                texts.append(v)
        elif t == "tool_result":
            _gather(b.get("content"), texts, structured, media)
        elif t in ("tool_use", "server_tool_use"):
            v = b.get("name")
            if isinstance(v, str):
                texts.append(v)
            structured.append(b.get("input"))
        elif t in ("image", "document"):
            src = b.get("source")
            if t == "document" and isinstance(src, dict) and src.get("type") == "text":
                v = src.get("data")
                if isinstance(v, str):
                    texts.append(v)
            else:
                media.append((t, src))
        elif t in ("thinking", "redacted_thinking"):
            continue  # earlier turns' thinking does not count as input
        elif t is not None:  # search results, web_search_tool_result, …: count their JSON
            structured.append(b)


def scan(body: dict[str, Any]) -> tuple[int, int]:
    """(estimated input tokens, number of image blocks) of an Anthropic request body."""
    texts: list[str] = []
    structured: list[Any] = []
    media: list[Any] = []
    system = body.get("system")
    if system is not None:
        _gather(system, texts, structured, media)
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                _gather(m.get("content"), texts, structured, media)
    tools = body.get("tools")
    if tools:
        structured.append(tools)
    total = text_tokens("\n".join(texts).encode("utf-8", "surrogatepass"))
    if structured:
        try:
            total += text_tokens(orjson.dumps(structured))
        except TypeError:  # not JSON-able (cannot come from a parsed body): count nothing for it
            pass
    images = 0
    for kind, src in media:
        total += image_tokens(src)
        images += kind == "image"
    return max(1, round(total)), images


def estimate_tokens(body: dict[str, Any]) -> int:
    """The estimated input tokens of an Anthropic request body (see the module's docstring)."""
    return scan(body)[0]
