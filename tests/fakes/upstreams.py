"""Scriptable fake upstream servers on loopback: the network peers the gateway talks to.

A :class:`FakeUpstream` is a small HTTP/1.1 server written on ``asyncio.start_server`` (not a
framework), running on its own thread with its own event loop, so a test controls every byte:
keep-alive, ``Content-Length`` and chunked request bodies, chunked / length / close-delimited
responses, writes split at awkward places, pauses between writes, and connections cut mid-body.

    with FakeUpstream() as up:                       # up.url == "http://127.0.0.1:PORT"
        up.enqueue(OpenAIStream(openai_text_chunks("hi"), split="awkward"))
        up.enqueue(Raw(status=529, body=b"..."))
        ...                                          # point the client at up.url (+ "/v1")
        up.requests                                  # ReceivedRequest list, arrival order

Each answer is compiled to bytes when the response object is built, so serving one costs a few
writes and nothing more (the fake is also the benchmark's upstream).

Which answer a request gets, in order:
0. ``guard(req)``, where given, answers first when it returns a Response (an auth check that
   refuses: a bad signature, an expired token); None lets the request through;
1. the first queued entry whose ``match(req)`` is true (an entry enqueued without ``match``
   only takes generation requests: POSTs other than ``count_tokens``);
2. built-ins: ``GET …/models`` (list in the fake's ``wire`` format), ``POST …/count_tokens``
   (``{"input_tokens": N}``), ``HEAD`` anything (200, empty);
3. ``default``: a response, or a callable ``responder(req) -> Response | None``;
4. a stock text answer in the fake's wire format (streamed or not, following the request's
   ``stream`` flag); ``404`` for other paths.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes import chunks as _chunks

try:  # faster, and what the gateway uses; the fake works without it
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

JSON = dict[str, Any]
Split = None | str | int  # None/"frame": one write per chunk; "awkward"; "one"; int: fixed size

# --------------------------------------------------------------------------- requests


def _loads(data: bytes) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


def _dumps(obj: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(eq=False)
class ReceivedRequest:
    """One request as the fake received it. ``headers`` keys are lower-case; a repeated header's
    values are joined with ", ". ``query`` is the raw query string (``params`` parses it)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    # how answering it ended: "pending", "sent", "cut" (the script dropped the connection),
    # "dropped" (a Drop response) or "peer-closed" (the client went away while we wrote)
    outcome: str = field(default="pending", compare=False)

    @cached_property
    def json(self) -> Any:
        """The body parsed as JSON, or None where it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return _loads(self.body)
        except ValueError:
            return None

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def is_stream(self) -> bool:
        body = self.json
        return isinstance(body, dict) and bool(body.get("stream"))

    @property
    def has_tools(self) -> bool:
        body = self.json
        return isinstance(body, dict) and bool(body.get("tools"))

    @property
    def is_generation(self) -> bool:
        """A POST asking for model output (anything but count_tokens)."""
        return self.method == "POST" and not self.path.endswith("/count_tokens")


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class _Plan:
    writes: tuple[bytes, ...]
    delay_s: float = 0.0  # pause between consecutive writes
    ttfb_s: float = 0.0  # pause before the first write
    end: str = "keep"  # keep | close | abort | cut | dropped


_AWKWARD_SIZES = (1, 3, 7, 2, 13, 5, 31, 4, 17, 64, 9, 11, 6, 128, 1, 23)


def awkward_slices(data: bytes, frame_ends: Sequence[int] = ()) -> list[bytes]:
    """``data`` cut at odd places: a cycle of small prime-ish sizes (so cuts land mid-line and
    mid-``data:``), inside the first multi-byte UTF-8 characters, and between the two newlines
    that end the first frames. Joining the slices gives ``data`` back."""
    cuts: set[int] = set()
    pos = 0
    i = 0
    while pos < len(data):
        pos += _AWKWARD_SIZES[i % len(_AWKWARD_SIZES)]
        i += 1
        cuts.add(pos)
    for n, m in enumerate(re.finditer(rb"[\xc0-\xff]", data)):
        if n >= 16:
            break
        cuts.add(m.start() + 1)
    for end in list(frame_ends)[:8]:
        cuts.add(end - 1)
    edges = [0] + sorted(c for c in cuts if 0 < c < len(data)) + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _slices(frames: Sequence[bytes], split: Split) -> list[bytes]:
    if split is None or split == "frame":
        return [f for f in frames if f]
    data = b"".join(frames)
    if not data:
        return []
    if split == "one":
        return [data]
    if split == "awkward":
        ends: list[int] = []
        total = 0
        for f in frames:
            total += len(f)
            ends.append(total)
        return awkward_slices(data, ends)
    if isinstance(split, int) and split > 0:
        return [data[i : i + split] for i in range(0, len(data), split)]
    raise ValueError(f"split must be None, 'frame', 'one', 'awkward' or a positive int, not {split!r}")


def _head(status: int, headers: Mapping[str, str], framing: str, length: int | None, reason: str | None) -> bytes:
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lower = {k.lower() for k in headers}
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if "content-length" not in lower and "transfer-encoding" not in lower:
        if framing == "chunked":
            lines.append("transfer-encoding: chunked")
        elif framing == "length":
            lines.append(f"content-length: {length or 0}")
    if framing == "close" and "connection" not in lower:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _compile(
    status: int,
    headers: Mapping[str, str],
    frames: Sequence[bytes],
    *,
    split: Split = None,
    framing: str = "chunked",
    delay_s: float = 0.0,
    ttfb_s: float = 0.0,
    cut: bool = False,
    reason: str | None = None,
) -> _Plan:
    if framing not in ("chunked", "length", "close"):
        raise ValueError("framing must be 'chunked', 'length' or 'close'")
    pieces = _slices(frames, split)
    body_len = sum(len(p) for p in pieces)
    head = _head(status, headers, framing, body_len, reason)
    if framing == "chunked":
        wire = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces]
        if not cut:
            wire.append(b"0\r\n\r\n")
    else:
        wire = list(pieces)
    if wire:
        wire[0] = head + wire[0]
    else:
        wire = [head]
    if cut:
        end = "cut"
    elif framing == "close":
        end = "close"
    else:
        end = "keep"
    return _Plan(tuple(wire), delay_s, ttfb_s, end)


class Response:
    """Something the fake can answer with; subclasses compile their bytes in ``__init__``."""

    plan: _Plan

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self.plan.writes)} writes, end={self.plan.end}>"


_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_JSON_HEADERS = {"content-type": "application/json"}


def _merge(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(base)
    for k, v in (extra or {}).items():
        for old in [o for o in out if o.lower() == k.lower()]:
            del out[old]
        out[k] = v
    return out


class OpenAIStream(Response):
    """A Chat Completions SSE stream: each chunk as ``data: {json}\\n\\n``, then ``data: [DONE]``.

    ``chunks``: dicts (encoded as JSON), ``str`` (sent as ``data: <str>\\n\\n``) or ``bytes``
    (sent verbatim). ``split``: None — one write per chunk; "awkward" — the byte stream re-cut at
    odd places (mid-line, mid-UTF-8 character, between a frame's two newlines); "one" — the whole
    body in one write; an int — fixed-size writes. ``delay_s``: pause between writes.
    ``cut_after=N``: after N chunks drop the connection (no [DONE], no end of body).
    ``done=False`` ends the body normally but without ``[DONE]``.
    """

    def __init__(
        self,
        chunks: Iterable[JSON | str | bytes],
        *,
        split: Split = None,
        delay_s: float = 0.0,
        cut_after: int | None = None,
        done: bool = True,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        framing: str = "chunked",
        ttfb_s: float = 0.0,
    ) -> None:
        frames = [self.frame(c) for c in chunks]
        if cut_after is not None:
            frames = frames[:cut_after]
        elif done:
            frames.append(b"data: [DONE]\n\n")
        self.plan = _compile(status, _merge(_SSE_HEADERS, headers), frames, split=split, framing=framing,
                             delay_s=delay_s, ttfb_s=ttfb_s, cut=cut_after is not None)

    @staticmethod
    def frame(chunk: JSON | str | bytes) -> bytes:
        if isinstance(chunk, bytes):
            return chunk
        if isinstance(chunk, str):
            return b"data: " + chunk.encode() + b"\n\n"
        return b"data: " + _dumps(chunk) + b"\n\n"


class AnthropicStream(Response):
    """An Anthropic Messages SSE stream: ``event: <type>\\ndata: {json}\\n\\n`` per event.

    ``events``: ``(event_type, data)`` pairs (``data`` gets ``"type": event_type`` when it has
    none) or ``bytes`` sent verbatim. ``split``, ``delay_s``, ``cut_after``: as for
    :class:`OpenAIStream` (``cut_after`` counts events).
    """

    def __init__(
        self,
        events: Iterable[tuple[str, JSON] | bytes],
        *,
        split: Split = None,
        delay_s: float = 0.0,
        cut_after: int | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        framing: str = "chunked",
        ttfb_s: float = 0.0,
    ) -> None:
        frames = [self.frame(e) for e in events]
        if cut_after is not None:
            frames = frames[:cut_after]
        base = _merge(_SSE_HEADERS, {"request-id": "req_fake"})
        self.plan = _compile(status, _merge(base, headers), frames, split=split, framing=framing,
                             delay_s=delay_s, ttfb_s=ttfb_s, cut=cut_after is not None)

    @staticmethod
    def frame(event: tuple[str, JSON] | bytes) -> bytes:
        if isinstance(event, bytes):
            return event
        name, data = event
        if "type" not in data:
            data = {"type": name, **data}
        return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


class JSONResponse(Response):
    """A JSON body with ``Content-Length`` (``framing`` and ``split`` as for the streams)."""

    def __init__(
        self,
        body: Any,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        split: Split = "one",
        delay_s: float = 0.0,
        ttfb_s: float = 0.0,
        framing: str = "length",
    ) -> None:
        self.body = body
        self.plan = _compile(status, _merge(_JSON_HEADERS, headers), [_dumps(body)], split=split,
                             framing=framing, delay_s=delay_s, ttfb_s=ttfb_s)


class OpenAIJSON(JSONResponse):
    """A non-streamed Chat Completions answer (or an OpenAI-shaped error with ``status``)."""


class AnthropicJSON(JSONResponse):
    """A non-streamed Messages answer (or an Anthropic-shaped error with ``status``)."""


class Raw(Response):
    """Exactly the status, headers and body given: errors, odd bodies, wrong framing.

    ``framing="length"`` adds ``Content-Length`` (unless ``headers`` set one, which may lie),
    "chunked" adds ``Transfer-Encoding``, "close" ends the body by closing the connection.
    ``cut=True`` drops the connection after the body without finishing the framing.
    """

    def __init__(
        self,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        *,
        framing: str = "length",
        split: Split = "one",
        delay_s: float = 0.0,
        ttfb_s: float = 0.0,
        cut: bool = False,
        reason: str | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.plan = _compile(status, dict(headers or {}), [data], split=split, framing=framing,
                             delay_s=delay_s, ttfb_s=ttfb_s, cut=cut, reason=reason)


class Drop(Response):
    """No answer at all: after ``after_s`` the connection is closed (``abort=True``: reset)."""

    def __init__(self, after_s: float = 0.0, *, abort: bool = False) -> None:
        self.plan = _Plan((), 0.0, after_s, "abort" if abort else "dropped")


def anthropic_error(status: int, error_type: str, message: str, **headers: str) -> AnthropicJSON:
    """An error the way Anthropic sends one, e.g. ``anthropic_error(529, "overloaded_error", "Overloaded")``."""
    return AnthropicJSON({"type": "error", "error": {"type": error_type, "message": message},
                          "request_id": "req_fake"}, status, headers=headers)


def openai_error(status: int, message: str, error_type: str = "invalid_request_error",
                 code: str | None = None, **headers: str) -> OpenAIJSON:
    """An error the way OpenAI-compatible servers send one."""
    return OpenAIJSON({"error": {"message": message, "type": error_type, "param": None, "code": code}},
                      status, headers=headers)


Responder = Callable[[ReceivedRequest], "Response | None"]
Matcher = Callable[[ReceivedRequest], bool]


# --------------------------------------------------------------------------- what real upstreams check


class ThinkingSigner:
    """Signs thinking blocks the way Anthropic's API does, and refuses those it did not sign.

    The real API signs each thinking block it produces (``signature_delta``) and answers 400
    ``messages.N.content.M: Invalid signature in thinking block`` (PROTOCOL.md) when a request's
    history holds a thinking block with any other signature: an empty one, another provider's.
    Use ``FakeUpstream(wire="anthropic",
    guard=signer.guard)`` and answer with ``signer.text_events(thinking, text)``.
    """

    def __init__(self, key: bytes = b"fake-anthropic-signing-key") -> None:
        self.key = key
        self.refused: list[str] = []  # the error messages it answered

    def sign(self, thinking: str) -> str:
        import base64
        import hashlib
        import hmac

        mac = hmac.new(self.key, thinking.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(b"fake-sig:" + mac).decode()

    def text_events(self, thinking: str, text: str, **kw: Any) -> list[Any]:
        """A streamed answer: a thinking block it signed, then ``text``."""
        return _chunks.anthropic_text_events(text, thinking=thinking, signature=self.sign(thinking), **kw)

    def guard(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST" or not req.path.endswith("/messages"):
            return None
        body = req.json
        if not isinstance(body, dict):
            return None
        for n, msg in enumerate(body.get("messages") or []):
            content = msg.get("content") if isinstance(msg, dict) else None
            if msg.get("role") != "assistant" or not isinstance(content, list):
                continue
            for m, block in enumerate(content):
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "thinking" and \
                        block.get("signature") != self.sign(str(block.get("thinking", ""))):
                    text = f"messages.{n}.content.{m}: Invalid signature in thinking block"
                    self.refused.append(text)
                    return anthropic_error(400, "invalid_request_error", text)
        text = thinking_mode_problem(body)
        if text is not None:
            self.refused.append(text)
            return anthropic_error(400, "invalid_request_error", text)
        return None


# Anthropic's wording (as its API answers it, quoted in anthropics/claude-code#8677 and n8n-io/n8n#22550)
_MUST_START = ("messages.{n}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
               "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
               "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
               "thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult "
               "our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking")
_CLEAR_NEEDS = "`{edit}` strategy requires `thinking` to be enabled"  # anthropics/claude-code#11971


def thinking_mode_problem(body: JSON) -> str | None:
    """What Anthropic's API says about a request whose thinking setting does not fit its history:
    with ``thinking: {"type": "enabled"}``, the assistant message that opened the tool loop being
    answered (the request ends with tool results) must start with a thinking block; a
    ``clear_thinking_*`` context edit needs thinking on. None: the request is fine."""
    thinking = body.get("thinking")
    on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    cm = body.get("context_management")
    for edit in (cm.get("edits") if isinstance(cm, dict) else None) or ():
        kind = edit.get("type") if isinstance(edit, dict) else None
        if isinstance(kind, str) and kind.startswith("clear_thinking") and not on:
            return _CLEAR_NEEDS.format(edit=kind)
    if not (isinstance(thinking, dict) and thinking.get("type") == "enabled"):
        return None  # adaptive: thinking is optional for the model, so a turn may open without it
    messages = body.get("messages") or []

    def tool_results(m: Any) -> bool:
        c = m.get("content") if isinstance(m, dict) and m.get("role") == "user" else None
        return isinstance(c, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in c)

    turn = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    if not turn or not tool_results(turn[-1]):
        return None
    start = None
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "assistant":
            start = i
        elif not tool_results(m) and not (isinstance(m, dict) and m.get("role") == "system"):
            break
    if start is None:
        return None
    content = messages[start].get("content")
    first = content[0] if isinstance(content, list) and content else {"type": "text"}
    found = first.get("type") if isinstance(first, dict) else "text"
    if found in ("thinking", "redacted_thinking"):
        return None
    return _MUST_START.format(n=start, found=found)


class ResponseFormatCheck:
    """Checks ``response_format`` the way OpenAI's Chat Completions does, as a guard for an
    OpenAI fake: a ``json_schema`` needs ``json_schema.name`` (letters, digits, ``_`` and ``-``,
    at most 64) and a ``schema`` object; ``strict: true`` needs every object closed
    (``additionalProperties: false``) with all its properties required. ``supported=False``
    refuses ``json_schema`` altogether, with DeepSeek's wording."""

    NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
    UNSUPPORTED = "This response_format type is unavailable now"

    def __init__(self, supported: bool = True) -> None:
        self.supported = supported
        self.seen: list[Any] = []  # every response_format received

    def guard(self, req: ReceivedRequest) -> Response | None:
        body = req.json
        if req.method != "POST" or not isinstance(body, dict) or "response_format" not in body:
            return None
        rf = body["response_format"]
        self.seen.append(rf)
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            return openai_error(400, "Invalid value for 'response_format.type': expected one of 'text', "
                                     "'json_object' or 'json_schema'.", code="invalid_value")
        if rf["type"] != "json_schema":
            return None
        if not self.supported:
            return openai_error(400, self.UNSUPPORTED, code="invalid_request_error")
        js = rf.get("json_schema")
        if not isinstance(js, dict):
            return openai_error(400, "Missing required parameter: 'response_format.json_schema'.",
                                code="missing_required_parameter")
        name = js.get("name")
        if not isinstance(name, str) or not self.NAME.match(name):
            return openai_error(400, "Invalid 'response_format.json_schema.name': string does not match pattern. "
                                     "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                                code="invalid_value")
        schema = js.get("schema")
        if not isinstance(schema, dict):
            return openai_error(400, "Invalid type for 'response_format.json_schema.schema': expected an object.",
                                code="invalid_type")
        if js.get("strict") is True:
            problem = self._strict_problem(schema, "()")
            if problem:
                return openai_error(400, f"Invalid schema for response_format '{name}': {problem}",
                                    code="invalid_json_schema")
        return None

    def _strict_problem(self, schema: Any, where: str) -> str | None:
        if not isinstance(schema, dict):
            return None
        if schema.get("type") == "object":
            if schema.get("additionalProperties") is not False:
                return (f"In context={where}, 'additionalProperties' is required to be supplied and to be false.")
            props = schema.get("properties") or {}
            missing = [k for k in props if k not in (schema.get("required") or [])]
            if missing:
                return (f"In context={where}, 'required' is required to be supplied and to be an array including "
                        f"every key in properties. Missing '{missing[0]}'.")
            for k, sub in props.items():
                p = self._strict_problem(sub, f"('properties', '{k}')")
                if p:
                    return p
        if "items" in schema:
            return self._strict_problem(schema["items"], f"{where[:-1]}, 'items')")
        return None

# --------------------------------------------------------------------------- the server

_MAX_HEAD = 1 << 20
_OUTCOMES = {"keep": "sent", "close": "sent", "cut": "cut"}


class FakeUpstream:
    """A scriptable upstream on ``127.0.0.1`` (a free port unless ``port`` is given).

    ``wire`` ("openai" or "anthropic") picks the format of the built-in answers (model list,
    errors, the stock text answer). ``default``: the answer when nothing queued matches — a
    :class:`Response`, or a callable ``responder(req) -> Response | None``. ``guard``: a
    responder asked before anything else (see the module's docstring). ``record=False`` keeps
    no requests (long benchmarks).
    """

    def __init__(
        self,
        default: Response | Responder | None = None,
        *,
        wire: str = "openai",
        models: Sequence[str] = ("fake-model",),
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        guard: Responder | None = None,
    ) -> None:
        if wire not in ("openai", "anthropic"):
            raise ValueError("wire must be 'openai' or 'anthropic'")
        self.wire = wire
        self.host = host
        self.port = port
        self.record = record
        self._default = default
        self._guard = guard
        self._queue: list[tuple[Matcher | None, Response]] = []
        self._requests: list[ReceivedRequest] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.connections = 0  # TCP connections accepted so far
        self._builtin = self._build_builtins(models)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            return self
        self._ready.clear()  # a stopped fake can start again (same port: a server coming back)
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"fake-upstream-{self.wire}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("The fake upstream did not start within 10 s.")
        if self._error is not None:
            raise RuntimeError(f"The fake upstream could not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - Windows
            loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve_conn, self.host, self.port, limit=_MAX_HEAD, backlog=512)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ scripting

    def enqueue(self, response: Response, match: Matcher | None = None) -> None:
        """Queue one answer. Without ``match`` it goes to the next generation request (a POST
        other than count_tokens); with ``match`` to the next request it accepts."""
        if not isinstance(response, Response):
            raise TypeError(f"enqueue takes a Response (OpenAIStream, Raw, …), not {type(response).__name__}")
        with self._cond:
            self._queue.append((match, response))

    def set_default(self, default: Response | Responder | None) -> None:
        self._default = default

    @property
    def pending(self) -> int:
        """How many queued answers no request has taken yet."""
        with self._cond:
            return len(self._queue)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._cond:
            return list(self._requests)

    def requests_to(self, path_suffix: str, method: str = "POST") -> list[ReceivedRequest]:
        """Requests whose path ends with ``path_suffix`` (e.g. "/chat/completions")."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests arrived; raise AssertionError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise AssertionError(f"the fake upstream got {len(self._requests)} requests, expected {n}")
            return list(self._requests)

    def clear(self) -> None:
        """Forget the received requests and the queued answers."""
        with self._cond:
            self._requests.clear()
            self._queue.clear()

    # ------------------------------------------------------------------ answering

    def _build_builtins(self, models: Sequence[str]) -> dict[str, Response]:
        if self.wire == "openai":
            listing: JSON = {"object": "list", "data": [
                {"id": m, "object": "model", "created": _chunks.CREATED, "owned_by": "fake"} for m in models]}
            return {
                "models": OpenAIJSON(listing),
                "stream": OpenAIStream(_chunks.openai_text_chunks("Hello from the fake upstream.", 3)),
                "json": OpenAIJSON(_chunks.openai_completion("Hello from the fake upstream.")),
                "404": openai_error(404, "Not found: this fake upstream serves /v1/chat/completions and /v1/models.",
                                    "not_found_error"),
                "head": Raw(200),
            }
        listing = {"data": [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                            for m in models],
                   "has_more": False, "first_id": models[0] if models else None,
                   "last_id": models[-1] if models else None}
        return {
            "models": AnthropicJSON(listing),
            "stream": AnthropicStream(_chunks.anthropic_text_events("Hello from the fake upstream.", 3)),
            "json": AnthropicJSON(_chunks.anthropic_message("Hello from the fake upstream.")),
            "404": anthropic_error(404, "not_found_error", "Not found: this fake upstream serves /v1/messages."),
            "head": Raw(200),
        }

    def _choose(self, req: ReceivedRequest) -> Response:
        if self._guard is not None:
            refused = self._guard(req)
            if refused is not None:
                return refused
        with self._cond:
            for i, (match, resp) in enumerate(self._queue):
                if (match(req) if match is not None else req.is_generation):
                    del self._queue[i]
                    return resp
        if req.method == "HEAD":
            return self._builtin["head"]
        if req.method == "GET" and req.path.endswith("/models"):
            return self._builtin["models"]
        if req.method == "POST" and req.path.endswith("/count_tokens"):
            return AnthropicJSON({"input_tokens": max(1, len(req.body) // 4)})
        default = self._default
        if isinstance(default, Response):
            return default
        if default is not None:
            resp = default(req)
            if resp is not None:
                return resp
        if req.method == "POST":
            return self._builtin["stream" if req.is_stream else "json"]
        return self._builtin["404"]

    async def _read_body(self, reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length:
            return await reader.readexactly(int(length))
        return b""

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        end = "close"
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
                    return
                lines = head[:-4].split(b"\r\n")
                try:
                    method, target, version = lines[0].decode("latin-1").split(" ", 2)
                except ValueError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    key = name.strip().lower().decode("latin-1")
                    val = value.strip().decode("latin-1")
                    headers[key] = f"{headers[key]}, {val}" if key in headers else val
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    body = await self._read_body(reader, headers)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                path, _, query = target.partition("?")
                req = ReceivedRequest(method, path, query, headers, body)
                if self.record:
                    with self._cond:
                        self._requests.append(req)
                        self._cond.notify_all()
                plan = self._choose(req).plan
                end = await self._send(writer, plan, req)
                client_close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                if end != "keep" or client_close:
                    return
        except asyncio.CancelledError:  # the fake is stopping; end quietly
            end = "abort"
        finally:
            self._writers.discard(writer)
            if end == "abort":
                writer.transport.abort()
            else:
                writer.close()

    async def _send(self, writer: asyncio.StreamWriter, plan: _Plan, req: ReceivedRequest) -> str:
        # the outcome is set before the last write, so a client that has read the whole
        # answer (or seen the connection end) always finds it set
        final = _OUTCOMES.get(plan.end, "dropped")
        try:
            if plan.ttfb_s:
                await asyncio.sleep(plan.ttfb_s)
            last = len(plan.writes) - 1
            for i, data in enumerate(plan.writes):
                if i and plan.delay_s:
                    await asyncio.sleep(plan.delay_s)
                if i == last:
                    req.outcome = final
                writer.write(data)
                await writer.drain()
        except (ConnectionError, RuntimeError):
            req.outcome = "peer-closed"
            return "abort"
        req.outcome = final
        return plan.end
