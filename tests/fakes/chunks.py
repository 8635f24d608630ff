"""Builders for what real upstreams send: OpenAI chat-completion chunks and Anthropic SSE events.

Plain functions returning plain data (dicts, ``(event, data)`` tuples) that
``tests.fakes.upstreams`` encodes to bytes. The shapes follow docs/protocol.md §2 and §3:

- OpenAI: a first chunk with ``role``, content (or ``reasoning_content``) pieces, tool-call
  fragments keyed by ``index`` (``id`` + ``name`` only on the first fragment of a call), a chunk
  carrying ``finish_reason``, then — as with ``stream_options.include_usage`` — a last chunk with
  ``choices: []`` and ``usage``.
- Anthropic: ``message_start`` (full usage shape) → blocks (start / deltas / stop, indices
  0, 1, 2 …) → ``message_delta`` (stop_reason + usage) → ``message_stop``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

JSON = dict[str, Any]
AnthropicEvent = tuple[str, JSON]
ToolCall = tuple[str, Mapping[str, Any]]  # (name, arguments)

DEFAULT_MODEL = "fake-model"
CREATED = 1_760_000_000


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` cut into ``pieces`` nearly equal parts (fewer when the text is shorter).

    The parts are cut on character boundaries; joining them gives ``text`` back.
    """
    if not text:
        return []
    n = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), n)
    out: list[str] = []
    pos = 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- OpenAI


def _chunk(cid: str, model: str, delta: JSON, finish_reason: str | None = None) -> JSON:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }


def openai_usage(prompt: int, completion: int, cached: int = 0) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _usage_chunk(cid: str, model: str, usage: tuple[int, int, int]) -> JSON:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [],
        "usage": openai_usage(*usage),
    }


def openai_text_chunks(
    text: str,
    pieces: int = 5,
    *,
    model: str = DEFAULT_MODEL,
    reasoning: str | None = None,
    reasoning_field: str = "reasoning_content",
    usage: tuple[int, int, int] | None = (10, 5, 0),
    finish_reason: str = "stop",
    completion_id: str = "chatcmpl-fake",
) -> list[JSON]:
    """A streamed text answer: role chunk, ``reasoning`` pieces (if any), ``text`` pieces,
    the ``finish_reason`` chunk, and a usage chunk ``(prompt, completion, cached)`` unless None."""
    chunks = [_chunk(completion_id, model, {"role": "assistant", "content": ""})]
    for part in split_text(reasoning or "", pieces):
        chunks.append(_chunk(completion_id, model, {reasoning_field: part}))
    for part in split_text(text, pieces):
        chunks.append(_chunk(completion_id, model, {"content": part}))
    chunks.append(_chunk(completion_id, model, {}, finish_reason))
    if usage is not None:
        chunks.append(_usage_chunk(completion_id, model, usage))
    return chunks


def default_call_id(i: int, name: str) -> str:
    return f"call_{i}_{name.lower()}_fake"


def openai_tool_call_chunks(
    calls: Sequence[ToolCall],
    pieces: int = 3,
    *,
    interleave: bool = False,
    ids: Sequence[str] | None = None,
    text: str | None = None,
    model: str = DEFAULT_MODEL,
    usage: tuple[int, int, int] | None = (10, 20, 0),
    finish_reason: str = "tool_calls",
    completion_id: str = "chatcmpl-fake",
) -> list[JSON]:
    """Parallel tool calls, each call's argument JSON split over ``pieces`` chunks.

    The first fragment of call ``i`` carries ``index: i``, its id and name and empty arguments;
    later fragments carry only ``index`` and an ``arguments`` piece. With ``interleave`` the
    fragments of different calls alternate (call 0 piece 0, call 1 piece 0, call 0 piece 1 …),
    otherwise each call streams completely before the next starts. ``ids`` default to
    :func:`default_call_id`. Optional ``text`` streams as content before the calls.
    """
    call_ids = list(ids) if ids is not None else [default_call_id(i, n) for i, (n, _) in enumerate(calls)]
    if len(call_ids) != len(calls):
        raise ValueError("give one id per call")
    chunks = [_chunk(completion_id, model, {"role": "assistant", "content": None})]
    if text:
        chunks[0]["choices"][0]["delta"]["content"] = ""
        for part in split_text(text, pieces):
            chunks.append(_chunk(completion_id, model, {"content": part}))

    def head(i: int) -> JSON:
        name = calls[i][0]
        return _chunk(completion_id, model, {"tool_calls": [
            {"index": i, "id": call_ids[i], "type": "function", "function": {"name": name, "arguments": ""}}
        ]})

    def frag(i: int, piece: str) -> JSON:
        return _chunk(completion_id, model, {"tool_calls": [{"index": i, "function": {"arguments": piece}}]})

    parts = [split_text(_dumps(dict(args)), pieces) for _, args in calls]
    if interleave:
        for i in range(len(calls)):
            chunks.append(head(i))
        for k in range(max((len(p) for p in parts), default=0)):
            for i, p in enumerate(parts):
                if k < len(p):
                    chunks.append(frag(i, p[k]))
    else:
        for i, p in enumerate(parts):
            chunks.append(head(i))
            chunks.extend(frag(i, piece) for piece in p)
    chunks.append(_chunk(completion_id, model, {}, finish_reason))
    if usage is not None:
        chunks.append(_usage_chunk(completion_id, model, usage))
    return chunks


def openai_completion(
    text: str | None = "ok",
    *,
    tool_calls: Sequence[ToolCall] = (),
    ids: Sequence[str] | None = None,
    reasoning: str | None = None,
    model: str = DEFAULT_MODEL,
    usage: tuple[int, int, int] = (10, 5, 0),
    finish_reason: str | None = None,
    completion_id: str = "chatcmpl-fake",
) -> JSON:
    """A non-streamed ``chat.completion`` body."""
    message: JSON = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if tool_calls:
        call_ids = list(ids) if ids is not None else [default_call_id(i, n) for i, (n, _) in enumerate(tool_calls)]
        message["tool_calls"] = [
            {"id": call_ids[i], "type": "function", "function": {"name": n, "arguments": _dumps(dict(a))}}
            for i, (n, a) in enumerate(tool_calls)
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
        }],
        "usage": openai_usage(*usage),
    }


# --------------------------------------------------------------------------- Anthropic


def anthropic_usage(input_tokens: int, output_tokens: int, cache_read: int = 0, cache_creation: int = 0) -> JSON:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
    }


def _message_start(msg_id: str, model: str, usage: tuple[int, ...]) -> AnthropicEvent:
    inp, _out, *cache = usage
    return ("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": anthropic_usage(inp, 1, *cache),
    }})


def _block(index: int, block: JSON, deltas: list[JSON]) -> list[AnthropicEvent]:
    out: list[AnthropicEvent] = [("content_block_start", {"type": "content_block_start", "index": index,
                                                          "content_block": block})]
    out += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


def _message_end(stop_reason: str, output_tokens: int) -> list[AnthropicEvent]:
    return [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                           "usage": {"output_tokens": output_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def anthropic_text_events(
    text: str,
    pieces: int = 5,
    *,
    model: str = "claude-fake",
    thinking: str | None = None,
    usage: tuple[int, int] | tuple[int, int, int] | tuple[int, int, int, int] = (10, 5, 0, 0),
    stop_reason: str = "end_turn",
    msg_id: str = "msg_fake",
    ping: bool = True,
    signature: str = "c2lnbmF0dXJl",
) -> list[AnthropicEvent]:
    """A streamed text answer; ``usage`` is ``(input, output[, cache_read[, cache_creation]])``.
    With ``thinking`` a thinking block (with ``signature``) comes first."""
    events = [_message_start(msg_id, model, usage)]
    if ping:
        events.append(("ping", {"type": "ping"}))
    index = 0
    if thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split_text(thinking, pieces)]
        deltas.append({"type": "signature_delta", "signature": signature})
        events += _block(index, {"type": "thinking", "thinking": "", "signature": ""}, deltas)
        index += 1
    events += _block(index, {"type": "text", "text": ""},
                     [{"type": "text_delta", "text": p} for p in split_text(text, pieces)])
    return events + _message_end(stop_reason, usage[1])


def default_tool_use_id(i: int, name: str) -> str:
    return f"toolu_{i}_{name.lower()}_fake"


def anthropic_tool_use_events(
    calls: Sequence[ToolCall],
    pieces: int = 3,
    *,
    ids: Sequence[str] | None = None,
    text: str | None = None,
    model: str = "claude-fake",
    usage: tuple[int, int] | tuple[int, int, int] | tuple[int, int, int, int] = (10, 20, 0, 0),
    msg_id: str = "msg_fake",
) -> list[AnthropicEvent]:
    """Optional ``text`` block, then one ``tool_use`` block per call with its input JSON split
    over ``pieces`` ``input_json_delta`` events; stop_reason ``tool_use``."""
    use_ids = list(ids) if ids is not None else [default_tool_use_id(i, n) for i, (n, _) in enumerate(calls)]
    if len(use_ids) != len(calls):
        raise ValueError("give one id per call")
    events = [_message_start(msg_id, model, usage)]
    index = 0
    if text:
        events += _block(index, {"type": "text", "text": ""},
                         [{"type": "text_delta", "text": p} for p in split_text(text, pieces)])
        index += 1
    for (name, args), use_id in zip(calls, use_ids, strict=False):
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in split_text(_dumps(dict(args)), pieces)]
        events += _block(index, {"type": "tool_use", "id": use_id, "name": name, "input": {}}, deltas)
        index += 1
    return events + _message_end("tool_use", usage[1])


def anthropic_message(
    text: str = "ok",
    *,
    tool_uses: Sequence[ToolCall] = (),
    ids: Sequence[str] | None = None,
    model: str = "claude-fake",
    usage: tuple[int, int] | tuple[int, int, int] | tuple[int, int, int, int] = (10, 5, 0, 0),
    msg_id: str = "msg_fake",
) -> JSON:
    """A non-streamed Messages API response body."""
    content: list[JSON] = [{"type": "text", "text": text}] if text else []
    use_ids = list(ids) if ids is not None else [default_tool_use_id(i, n) for i, (n, _) in enumerate(tool_uses)]
    content += [{"type": "tool_use", "id": use_ids[i], "name": n, "input": dict(a)}
                for i, (n, a) in enumerate(tool_uses)]
    inp, out, *cache = usage
    return {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": "tool_use" if tool_uses else "end_turn", "stop_sequence": None,
        "usage": anthropic_usage(inp, out, *cache),
    }
