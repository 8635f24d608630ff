"""One request id per HTTP request, on every answer: the ``request-id`` header (Anthropic's name,
``req_…``), the error body's ``request_id`` and the ledger row all carry the same one.

The gateway makes the id when a request arrives and wraps the ASGI ``send`` with ``stamped`` so
that whatever answers (an error from any layer, /v1/models) goes out with it; an exchange (a
/v1/messages answer, streamed or whole) adds it itself (``with_header``), on the ASGI ``send`` kept
unwrapped in the scope, which spares a stream's every write a call. An upstream's own ``request-id`` (Anthropic's) is kept as ``upstream-request-id``, for
its support; an upstream error body forwarded as it came gets our id in its ``request_id``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Send = Callable[[dict[str, Any]], Awaitable[None]]

HEADER = b"request-id"
UPSTREAM_HEADER = b"upstream-request-id"


def new_id() -> str:
    """``req_`` and 24 lowercase hex digits: 96 random bits (uuid4's first 24 digits held 92)."""
    return "req_" + os.urandom(12).hex()


def with_header(headers: list[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``request-id: <request_id>``; an upstream's own becomes ``upstream-request-id``."""
    out = [(UPSTREAM_HEADER, v) if k.lower() == HEADER else (k, v) for k, v in headers]
    out.append((HEADER, request_id.encode()))
    return out


def stamped(send: Send, request_id: str) -> Send:
    """``send`` with ``request-id: <request_id>`` added to the response's headers."""

    async def send_stamped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=with_header(message["headers"], request_id))
        await send(message)

    return send_stamped


def with_id(body: bytes, request_id: str) -> bytes:
    """An Anthropic error body (forwarded as the upstream sent it) with our ``request_id``;
    anything else unchanged."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not (isinstance(obj, dict) and obj.get("type") == "error") or obj.get("request_id") == request_id:
        return body
    obj["request_id"] = request_id
    return orjson.dumps(obj)
