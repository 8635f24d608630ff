"""Fresh Anthropic-style ids: ``msg_…``, ``toolu_…`` and ``req_…``.

Shaped like Anthropic's own (a ``01`` version marker and 22 base62 characters), so clients
that look at the prefix, or at the allowed characters ``[A-Za-z0-9_]``, accept them.
128 random bits each: unique across processes and restarts without any shared counter.
"""

from __future__ import annotations

import os

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(nbytes: int = 16, width: int = 22) -> str:
    num = int.from_bytes(os.urandom(nbytes), "big")
    chars: list[str] = []
    alphabet = _ALPHABET
    for _ in range(width):
        num, rem = divmod(num, 62)
        chars.append(alphabet[rem])
    return "".join(chars)


def new_message_id() -> str:
    return "msg_01" + _base62()


def new_tool_use_id() -> str:
    return "toolu_01" + _base62()


def new_request_id() -> str:
    return "req_01" + _base62()
