"""A request's body: read within the size limit and the idle timeout, checked for the shape the
Messages API requires (each refusal a 4xx in Anthropic's error shape that says what to send), and
the few things the live view reads from it (Claude Code's session id, working directory, the
user's latest prompt).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from app.errors import ApiError
from app.proxy.memory import Hold

Receive = Callable[[], Awaitable[dict[str, Any]]]

# a request body that stops arriving for this long is answered 408 and its connection closed
# (an unterminated chunked body would otherwise hold a connection for ever)
BODY_IDLE_TIMEOUT_S = 30.0
# orjson writes at most this many levels of nesting (it parses more): deeper bodies are refused
MAX_DEPTH = 250
_SESSION_RE = re.compile(r"_session_([0-9a-fA-F-]{8,})")
_CWD_RE = re.compile(r"Working directory:\s*(\S[^\n]*)")


class ClientGone(Exception):
    """The client hung up before it finished sending its request."""


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int, hold: Hold | None = None) -> bytes:
    """The whole body, within ``limit``; ``hold`` takes room for it (app/proxy/memory.py) before
    it is read: its content-length at once, else chunk by chunk."""
    cl = headers.get(b"content-length")
    if cl is not None:
        try:
            length = int(cl)
        except ValueError:
            raise ApiError(400, "invalid_request_error", "The Content-Length header is not a number.") from None
        if length > limit:
            raise _too_big(limit)
        if hold is not None:
            await hold.take(length)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            if _arrived(receive):  # no wait, no timer: the whole body of a small request is here
                msg = await receive()
            else:
                async with asyncio.timeout(BODY_IDLE_TIMEOUT_S):
                    msg = await receive()
        except TimeoutError:
            raise ApiError(
                408, "invalid_request_error",
                f"The request body stopped arriving (nothing for {BODY_IDLE_TIMEOUT_S:g} s, {size} bytes so "
                "far). Send the whole body; Patchbay closes this connection.",
                headers=[(b"connection", b"close")]) from None
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        body = msg.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise _too_big(limit)
            if hold is not None and cl is None:
                await hold.take(len(body))
            chunks.append(body)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_big(limit: int) -> ApiError:
    return ApiError(
        413, "request_too_large",
        f"The request body is larger than Patchbay's limit of {limit // (1024 * 1024)} MB. Send less "
        "(fewer or smaller images/documents), or raise max_body_mb in the [gateway] section.",
    )


def _arrived(receive: Receive) -> bool:
    """``receive`` is uvicorn's httptools one and has its next message already (its event is set):
    it returns without waiting, so the idle timer around it would only cost the first byte."""
    event = getattr(getattr(receive, "__self__", None), "message_event", None)
    return type(event) is asyncio.Event and event.is_set()


_HEADER_TEXT = re.compile(rb"^[\x20-\x7e\t]*$")


def forwarded_header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    """A client header Patchbay passes on upstream (``anthropic-version``, ``anthropic-beta``), or a
    400 when it holds anything but printable ASCII, which no upstream header may carry."""
    v = headers.get(name)
    if v is None:
        return None
    if not _HEADER_TEXT.match(v):
        raise ApiError(400, "invalid_request_error",
                           f"The {name.decode()} header holds characters other than printable ASCII. Send it as "
                           'the API documents it, e.g. anthropic-version: 2023-06-01 and anthropic-beta: '
                           "a comma-separated list of beta names.")
    return v.decode("ascii")


def parse_body(raw: bytes, count: bool) -> dict[str, Any]:
    if not raw.strip():
        raise ApiError(400, "invalid_request_error",
                           "The request body is empty. Send a JSON object with model, max_tokens and messages.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_request_error", f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request_error",
                           f"The request body must be a JSON object, not {type(body).__name__}.")
    if _too_deep(body):  # C speed; counting the brackets first took longer (2 passes over the bytes)
        raise ApiError(400, "invalid_request_error",
                           f"The request body is nested more than {MAX_DEPTH} levels deep, more than Patchbay "
                           "(and the Messages API) accept. Flatten the deepest value.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "invalid_request_error",
                           "model: Field required. Send a model name, e.g. \"claude-sonnet-4-5\", or "
                           "\"<backend>,<model>\" to pick a Patchbay backend.")
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        raise ApiError(400, "invalid_request_error",
                           "messages: Field required. Send a list of {role, content} messages.")
    if not msgs:
        raise ApiError(400, "invalid_request_error", "messages: at least one message is required.")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system") or "content" not in m:
            raise ApiError(400, "invalid_request_error",
                               f"messages.{i}: each message needs a role (\"user\" or \"assistant\") and content.")
    if not count:
        mt = body.get("max_tokens")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise ApiError(400, "invalid_request_error",
                               "max_tokens: Field required. Send a positive whole number, e.g. 4096.")
        st = body.get("stream", False)
        if not isinstance(st, bool):
            raise ApiError(400, "invalid_request_error", "stream: must be true or false.")
    return body


def session_from_metadata(body: dict[str, Any]) -> str | None:
    md = body.get("metadata")
    if not isinstance(md, dict):
        return None
    uid = md.get("user_id")
    if not isinstance(uid, str) or not uid:
        return None
    if uid.startswith("{"):
        try:
            obj = orjson.loads(uid)
            sid = obj.get("session_id") if isinstance(obj, dict) else None
            return sid if isinstance(sid, str) and sid else None
        except orjson.JSONDecodeError:
            return None
    m = _SESSION_RE.search(uid)
    return m.group(1) if m else None


def cwd_of(body: dict[str, Any]) -> str | None:
    system = body.get("system")
    texts: list[str] = []
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        texts.extend(t for b in system if isinstance(b, dict) and isinstance(t := b.get("text"), str))
    for t in texts:
        m = _CWD_RE.search(t)
        if m:
            return m.group(1).strip()
    return None


def prompt_of(body: dict[str, Any]) -> str | None:
    """The latest thing the user typed (not tool results or reminders), shortened."""
    msgs = body.get("messages")
    for msg in reversed(msgs if isinstance(msgs, list) else []):
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        parts = [content] if isinstance(content, str) else [
            t for b in (content if isinstance(content, list) else [])
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(t := b.get("text"), str)
        ]
        for p in parts:
            p = p.strip()
            if p and not p.startswith("<"):
                return p[:200]
    return None


def _too_deep(body: Any) -> bool:
    """True when ``body`` nests deeper than MAX_DEPTH. orjson writes 254 levels at most; the body
    is tried inside four more, so that the adapters' own wrapping (a translated request, a
    Bedrock envelope) always serialises. C speed: ~60 µs for a 300 kB body."""
    wrapped: Any = body
    for _ in range(254 - MAX_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False
