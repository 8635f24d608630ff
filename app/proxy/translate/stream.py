"""OpenAI ``chat.completion.chunk`` stream → Anthropic Messages stream events.

``OpenAIStreamTranslator`` is fed one parsed chunk at a time and answers the Anthropic events
that chunk produces, keeping the grammar of docs/protocol.md §2 exactly: ``message_start``; blocks
opened and closed in order with indices 0, 1, 2… and never two open at once; ``message_delta``
with cumulative usage; ``message_stop``.

Text and reasoning stream through as they come. A tool call's block opens (with its name) as
soon as the call shows up, but its arguments are sent as one ``input_json_delta`` when the block
closes: that is the only way to guarantee the client a parseable JSON object when upstreams glue
objects together (``{}{…}``), double-encode them, or interleave fragments of parallel calls.
Observers still see each argument fragment live through ``on_delta``.

Hot path: one dict lookup per field, no copies, no regexes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from app.events import Usage
from app.proxy.translate.ids import new_message_id, tool_use_id_for
from app.proxy.translate.response import (
    error_type_for_stream_error,
    matched_stop,
    normalize_tool_arguments,
    stop_reason_for,
    usage_dict,
    usage_from_openai,
)

DeltaHook = Callable[[int, str, str], None]

_TEXT = 1
_THINKING = 2
_TOOL = 3

_MESSAGE_STOP: dict[str, Any] = {"type": "message_stop"}


class _ToolCall:
    __slots__ = ("upstream_id", "name", "parts", "nchars", "block", "closed", "tool_id")

    def __init__(self, upstream_id: str | None, name: str) -> None:
        self.upstream_id = upstream_id
        self.name = name
        self.parts: list[str] = []
        self.nchars = 0
        self.block = -1  # Anthropic block index once opened
        self.closed = False
        self.tool_id = tool_use_id_for(upstream_id)

    def args_complete(self) -> bool:
        """The arguments so far form a non-empty object (``{}`` may be the glued-bug prefix)."""
        if self.nchars < 3:
            return False
        text = "".join(self.parts)
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return False
        return type(value) is dict and len(value) > 0


_TEXT_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,' \
              b'"delta":{"type":"text_delta","text":%b}}\n\n'


class OpenAIStreamTranslator:
    """Translate one upstream stream. Not thread-safe; one instance per request."""

    def __init__(
        self,
        model: str,
        *,
        input_tokens: int = 0,
        message_id: str | None = None,
        stop_sequences: Sequence[str] | None = None,
        on_delta: DeltaHook | None = None,
        signature: str = "",
    ) -> None:
        self.model = model
        # sent as the thinking block's signature_delta (app.proxy.thinking.reasoning_signature)
        self.signature = signature
        self.message_id = message_id or new_message_id()
        self.on_delta: DeltaHook | None = on_delta
        self.first_content_seen = False
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.finish_reason: str | None = None  # the upstream's own, as last seen
        self.error: tuple[str, str] | None = None  # (type, message) once fail() ran
        self.usage_reported = False  # False: ``usage`` is an estimate (no usage chunk came)
        self.dropped_fragments = 0  # tool-argument pieces that arrived after their block closed
        self.skipped = 0  # chunks (or parts of them) in shapes this translator cannot read
        self.tool_ids: dict[str, str] = {}  # upstream tool-call id → our toolu_ id
        self.reasoning_parts: list[str] = []  # the reasoning text as it came (app.proxy.reasoning_store)
        self.reasoning_details: list[Any] = []  # OpenRouter's reasoning_details items as they came
        self._stop_sequences = tuple(stop_sequences or ())
        self._tail_len = max((len(x) for x in self._stop_sequences), default=0)
        self._tail = ""  # the text's last characters, where a server that keeps the stop string has it
        self._input_estimate = input_tokens
        self._usage: Usage | None = None
        self._out_chars = 0
        self._model_seen = False
        self._started = False
        self._done = False
        self._next_index = 0
        self._open_kind = 0
        self._open_index = -1
        self._open_call: _ToolCall | None = None
        self._calls: list[_ToolCall] = []
        self._pending: list[_ToolCall] = []  # tool calls waiting for their block to open
        self._by_index: dict[Any, _ToolCall] = {}
        self._by_id: dict[str, _ToolCall] = {}
        self._last_call: _ToolCall | None = None
        self._held_space = ""  # whitespace-only text that came while a tool call was open

    # -- readable state -------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        if self._usage is not None:
            return self._usage
        return Usage(input_tokens=self._input_estimate, output_tokens=(self._out_chars + 3) // 4)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def tool_use_ids(self) -> list[str]:
        """The ``toolu_`` ids of the tool calls this answer made, in order."""
        return [c.tool_id for c in self._calls]

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        """The ``message_start`` event (once; later calls answer nothing)."""
        if self._started:
            return []
        self._started = True
        return [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": self.message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": self._input_estimate,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                            "output_tokens": 1,
                        },
                    },
                },
            )
        ]

    def feed(self, chunk: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """One parsed upstream chunk → the Anthropic events it yields (often one, maybe none).
        What cannot be read (``"choices": "x"``, ``delta`` not an object, ``tool_calls: 1``) is
        skipped and counted in ``skipped``; the stream goes on."""
        if self._done:
            return []
        out = [] if self._started else self.start()
        if type(chunk) is not dict:
            self.skipped += 1
            return out
        try:
            self._feed(chunk, out)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            self.skipped += 1  # the events produced before the odd part stand
        return out

    def _feed(self, chunk: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        err = chunk.get("error")
        if err is not None:
            err_type, message = error_type_for_stream_error(err)
            out.extend(self.fail(err_type, message))
            return
        if not self._model_seen:
            self._note_model(chunk)
        usage = chunk.get("usage")
        if usage and type(usage) is dict:
            self._usage = usage_from_openai(usage, fallback_input=self._input_estimate)
            self.usage_reported = True
        choices = chunk.get("choices")
        if not choices:
            return
        if type(choices) is not list:
            self.skipped += 1
            return
        for choice in choices:
            if type(choice) is not dict:
                self.skipped += 1
                continue
            if choice.get("index", 0):
                continue  # n > 1: only the first choice is ours
            delta = choice.get("delta")
            if delta and type(delta) is not dict:
                self.skipped += 1
                delta = None
            if delta:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning and type(reasoning) is str:
                    self._reasoning(reasoning, out)
                details = delta.get("reasoning_details")
                if details and type(details) is list:
                    self.reasoning_details.extend(details)
                text = delta.get("content")
                if text and type(text) is str:
                    self._text(text, out)
                elif delta.get("refusal") and type(delta["refusal"]) is str:
                    self._text(delta["refusal"], out)
                calls = delta.get("tool_calls")
                if calls and type(calls) is list:
                    self._tool_fragments(calls, out)
                elif calls:
                    self.skipped += 1
            finish = choice.get("finish_reason")
            if finish and type(finish) is str:
                self._finish_reason(finish, choice, out)
                if self._done:
                    return

    def plain_text(self, chunk: Any) -> str | None:
        """The text of a parsed chunk that only continues the open text block (most chunks of a
        streamed answer), or None for anything else: ``feed`` takes it then. Nothing changes here;
        ``text_delta`` then gives the event (app/proxy/translate/openai_relay.py)."""
        if self._open_kind != _TEXT or self._done or type(chunk) is not dict or "error" in chunk:
            return None
        choices = chunk.get("choices")
        if type(choices) is not list or len(choices) != 1 or chunk.get("usage"):
            return None
        choice = choices[0]
        if type(choice) is not dict or choice.get("finish_reason") or choice.get("index", 0):
            return None
        delta = choice.get("delta")
        if type(delta) is not dict:
            return None
        text = delta.get("content")
        if type(text) is not str or not text:
            return None
        if len(delta) > 1:  # anything else it carries (reasoning, tool calls) must be empty
            for key, value in delta.items():
                if value and key != "content" and key != "role":
                    return None
        if not self._model_seen:
            self._note_model(chunk)
        return text

    def text_delta(self, text: str, literal: bytes) -> bytes | None:
        """The ``content_block_delta`` event's bytes for more ``text`` (not empty) in the open text
        block, ``literal`` being its JSON string; None, and nothing done, when no text block is open.
        State and bytes are as ``encode_events(feed(chunk))`` would leave and give."""
        if self._open_kind != _TEXT or self._done:
            return None
        return _TEXT_DELTA % (self._took_text(text), literal)

    def _note_model(self, chunk: dict[str, Any]) -> None:
        """The upstream's model, from the first chunk that names it."""
        model = chunk.get("model")
        if model and type(model) is str:
            self.model = model
            self._model_seen = True

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """The upstream ended normally: close what is open, then message_delta and message_stop."""
        if self._done:
            return []
        out = [] if self._started else self.start()
        self._close_all(out)
        if self._next_index == 0:  # never an empty content array
            out.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                )
            )
            out.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
            self._next_index = 1
        reason = stop_reason_for(self.finish_reason, had_tool_calls=bool(self._calls))
        if reason == "end_turn" and self.stop_sequence is not None:
            reason = "stop_sequence"
        self.stop_reason = reason
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": self.stop_sequence if reason == "stop_sequence" else None},
                    "usage": usage_dict(self.usage),
                },
            )
        )
        out.append(("message_stop", _MESSAGE_STOP))
        self._done = True
        return out

    def fail(self, error_type: str, message: str) -> list[tuple[str, dict[str, Any]]]:
        """The upstream died mid-stream: close the open block and end with an ``error`` event."""
        if self._done:
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        if self._open_kind:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._open_index}))
            if self._open_call is not None:
                self._open_call.closed = True
            self._open_kind = 0
            self._open_call = None
        self.error = (error_type, message)
        out.append(("error", {"type": "error", "error": {"type": error_type, "message": message}}))
        self._done = True
        return out

    # -- pieces -----------------------------------------------------------------------------------

    def _text(self, text: str, out: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open_kind != _TEXT:
            if self._open_kind == _TOOL or self._pending:
                if text.isspace():  # stray newlines between tool calls: hold, don't break the call
                    self._held_space += text
                    return
                self._close_all(out)
            elif self._open_kind:
                self._close_open(out)
            if self._held_space:
                text = self._held_space + text
                self._held_space = ""
            self._open_block(_TEXT, {"type": "text", "text": ""}, out)
            self.first_content_seen = True
        index = self._took_text(text)
        out.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
            )
        )

    def _took_text(self, text: str) -> int:
        """More text in the open text block: counted, kept for the stop sequences, shown live; its index."""
        self._out_chars += len(text)
        if self._tail_len:
            self._tail = (self._tail + text)[-self._tail_len:]
        index = self._open_index
        if self.on_delta is not None:
            self.on_delta(index, "text", text)
        return index

    def _reasoning(self, text: str, out: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open_kind != _THINKING:
            if self._open_kind == _TOOL or self._pending:
                if text.isspace():
                    return
                self._close_all(out)
            elif self._open_kind:
                self._close_open(out)
            self._open_block(_THINKING, {"type": "thinking", "thinking": "", "signature": ""}, out)
            self.first_content_seen = True
        self._out_chars += len(text)
        self.reasoning_parts.append(text)
        index = self._open_index
        out.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": text}},
            )
        )
        if self.on_delta is not None:
            self.on_delta(index, "thinking", text)

    def _tool_fragments(self, fragments: Any, out: list[tuple[str, dict[str, Any]]]) -> None:
        for frag in fragments:
            if type(frag) is not dict:
                continue
            idx = frag.get("index")
            if type(idx) is not int:
                idx = None
            tid = frag.get("id") or None
            if tid is not None and type(tid) is not str:
                tid = str(tid)
            fn = frag.get("function")
            name = args = None
            if type(fn) is dict:
                name = fn.get("name") or None
                if name is not None and type(name) is not str:
                    name = str(name)
                args = fn.get("arguments")
            if idx is None:
                call = self._by_id.get(tid) if tid else self._last_call
            else:
                call = self._by_index.get(idx)
                if call is not None and tid is not None and tid != call.upstream_id:
                    if call.upstream_id is None:
                        call.upstream_id = tid  # the id came after the first fragment
                        self._by_id[tid] = call
                        self.tool_ids[tid] = call.tool_id
                    else:
                        call = self._by_id.get(tid)  # a new id on a used index: a new call
            if call is not None and tid is None and name is not None and call.name:
                # every call on one index without ids: a fresh name after complete arguments
                if name != call.name or call.args_complete():
                    call = None
            if call is None:
                call = self._new_call(idx, tid, name or "", out)
            elif name and not call.name:
                call.name = name
                if call.block < 0 and not self._open_kind and self._pending and self._pending[0] is call:
                    self._open_next_pending(out)
            self._last_call = call
            if args:
                if type(args) is not str:  # some servers send the object itself
                    args = orjson.dumps(args).decode()
                if call.closed:
                    self.dropped_fragments += 1
                    continue
                call.parts.append(args)
                call.nchars += len(args)
                self._out_chars += len(args)
                if call.block >= 0 and self.on_delta is not None:
                    self.on_delta(call.block, "tool_input", args)

    def _new_call(self, idx: Any, tid: str | None, name: str, out: list[tuple[str, dict[str, Any]]]) -> _ToolCall:
        call = _ToolCall(tid, name)
        self._calls.append(call)
        if idx is not None:
            self._by_index[idx] = call
        if tid is not None:
            self._by_id[tid] = call
            self.tool_ids[tid] = call.tool_id
        self.first_content_seen = True
        kind = self._open_kind
        if kind == _TOOL:
            current = self._open_call
            # The open call is done when its arguments already form an object: close it now
            # rather than at the end, so the client sees calls as they finish.
            if not self._pending and current is not None and current.args_complete():
                self._close_open(out)
            else:
                self._pending.append(call)
                return call
        elif kind:
            self._close_open(out)
        self._pending.append(call)
        if self._pending[0].name:
            self._open_next_pending(out)
        return call

    def _open_next_pending(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        call = self._pending.pop(0)
        self._open_block(
            _TOOL, {"type": "tool_use", "id": call.tool_id, "name": call.name, "input": {}}, out
        )
        call.block = self._open_index
        self._open_call = call
        if self.on_delta is not None:
            self.on_delta(call.block, "tool_use", call.name)
            if call.parts:
                self.on_delta(call.block, "tool_input", "".join(call.parts))

    def _open_block(self, kind: int, block: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        index = self._next_index
        self._next_index = index + 1
        self._open_kind = kind
        self._open_index = index
        out.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))

    def _close_open(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        index = self._open_index
        call = self._open_call
        if call is not None:
            json_text, _ = normalize_tool_arguments("".join(call.parts))
            out.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": json_text},
                    },
                )
            )
            call.closed = True
            self._open_call = None
        elif self._open_kind == _THINKING and self.signature:
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "signature_delta", "signature": self.signature}}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        self._open_kind = 0

    def _close_all(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        """Close the open block and emit every tool call still waiting for its block."""
        if self._open_kind:
            self._close_open(out)
        while self._pending:
            self._open_next_pending(out)
            self._close_open(out)

    def _finish_reason(self, finish: Any, choice: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
        self.finish_reason = finish
        if finish == "stop" and self._stop_sequences:
            self.stop_sequence = matched_stop(choice, self._tail, self._stop_sequences)
        elif finish == "error":
            out.extend(self.fail("api_error", "The upstream stopped its answer with an error. Try again."))
            return
        elif finish == "insufficient_system_resource":  # DeepSeek: its servers were too busy
            out.extend(
                self.fail(
                    "overloaded_error",
                    "The upstream ran out of capacity in the middle of the answer (insufficient_system_resource). Try again.",
                )
            )
            return
        # Every block is complete now: send what is held, so the client can act before usage.
        self._close_all(out)


_EVENT_PREFIX: dict[str, bytes] = {
    name: b"event: " + name.encode() + b"\ndata: "
    for name in (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    )
}


def encode_events(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    """Anthropic events → SSE bytes (``event: X\\ndata: <json>\\n\\n`` each)."""
    if not events:
        return b""
    parts: list[bytes] = []
    append = parts.append
    dumps = orjson.dumps
    for name, data in events:
        prefix = _EVENT_PREFIX.get(name)
        if prefix is None:
            prefix = b"event: " + name.encode() + b"\ndata: "
        append(prefix)
        append(dumps(data))
        append(b"\n\n")
    return b"".join(parts)
