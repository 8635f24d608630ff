"""Fresh Anthropic-style ids: ``msg_…`` and ``toolu_…`` (request ids: ``app/proxy/request_ids.py``).

Shaped like Anthropic's own (a ``01`` version marker and 22 base62 characters), so clients
that look at the prefix, or at the allowed characters ``[A-Za-z0-9_]``, accept them.
About 131 random bits each (22 random bytes, each taken modulo 62): unique across processes
and restarts without any shared counter.

Nine-character tool-call ids (Mistral's rule, ``app.config.providers.TOOL_ID_9``) both ways,
with no state: a ``toolu_`` id minted for an upstream call whose id is already nine letters and
digits carries that id right after ``toolu_01`` (:func:`tool_use_id_for`), and
:func:`nine_char_id` reads it back from there, so the upstream sees its own ids again. Any other
id (another provider's ``call_…``, a Bedrock ``toolu_bdrk_…``) becomes nine base62 characters of
its BLAKE2b hash: the same id always gives the same answer, across requests and restarts.
"""

from __future__ import annotations

import hashlib
import os
import re

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# each random byte as one base62 character (the byte modulo 62): three C calls an id, where a
# divmod loop made ~50 on the first byte's path; bytes 0-7 mod 62 come up 5 times in 256, the
# others 4, so a character carries 5.95 random bits, 22 of them ~131
_BYTE_TO_BASE62 = bytes(ord(_ALPHABET[b % 62]) for b in range(256))


def _base62(width: int = 22) -> str:
    return os.urandom(width).translate(_BYTE_TO_BASE62).decode("ascii")


def new_message_id() -> str:
    return "msg_01" + _base62()


def new_tool_use_id() -> str:
    return "toolu_01" + _base62()


_NINE = re.compile(r"^[A-Za-z0-9]{9}$")
_EMBEDDED = re.compile(r"^toolu_01([A-Za-z0-9]{9})[A-Za-z0-9]{13}$")


def tool_use_id_for(upstream_id: str | None) -> str:
    """A fresh ``toolu_`` id for an upstream tool call; a nine-character upstream id rides in it."""
    if upstream_id and _NINE.match(upstream_id):
        return "toolu_01" + upstream_id + _base62(13)
    return new_tool_use_id()


def nine_char_id(tool_id: str, salt: int = 0) -> str:
    """``tool_id`` as nine letters and digits, the same every time (``salt`` > 0: another one,
    for the rare id whose answer another id of the same request already has)."""
    m = _EMBEDDED.match(tool_id)
    if m and not salt:
        return m.group(1)
    if _NINE.match(tool_id) and not salt:
        return tool_id
    digest = hashlib.blake2b(f"{salt}:{tool_id}".encode("utf-8", "replace"), digest_size=8).digest()
    num = int.from_bytes(digest, "big")
    chars: list[str] = []
    for _ in range(9):
        num, rem = divmod(num, 62)
        chars.append(_ALPHABET[rem])
    return "".join(chars)

