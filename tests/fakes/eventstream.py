"""An encoder for AWS event-stream frames (``application/vnd.amazon.eventstream``), written from
the format's specification, not from botocore (whose decoder is what the gateway uses, so an
encoder borrowed from it would prove nothing).

One message::

    total length   u32 big-endian   (the whole message, both CRCs included)
    headers length u32 big-endian
    prelude CRC    u32 big-endian   CRC-32 of the 8 bytes above
    headers        repeated: name length u8 | name (UTF-8) | value type u8 | value
    payload        bytes
    message CRC    u32 big-endian   CRC-32 of everything before it

Header value types: 0 true, 1 false, 2 byte, 3 short, 4 int, 5 long, 6 bytes (u16 length +
bytes), 7 string (u16 length + UTF-8), 8 timestamp (i64 ms), 9 uuid (16 bytes). Bedrock uses
strings: ``:message-type`` ("event" / "exception"), ``:event-type`` ("chunk"),
``:exception-type`` ("throttlingException", …) and ``:content-type``.

Bedrock's InvokeModelWithResponseStream wraps each Anthropic event as
``{"bytes": base64(<event JSON>), "p": <padding>}`` in a ``chunk`` event.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

HeaderValue = str | bool | int | bytes

_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")


def crc32(data: bytes, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("utf-8")
    if len(raw_name) > 255:
        raise ValueError("an event-stream header name is at most 255 bytes")
    out = bytes([len(raw_name)]) + raw_name
    if value is True:
        return out + b"\x00"
    if value is False:
        return out + b"\x01"
    if isinstance(value, int):
        return out + b"\x04" + struct.pack(">i", value)
    if isinstance(value, bytes):
        return out + b"\x06" + struct.pack(">H", len(value)) + value
    data = value.encode("utf-8")
    return out + b"\x07" + struct.pack(">H", len(data)) + data


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """One complete event-stream message with valid CRCs."""
    raw_headers = b"".join(encode_header(k, v) for k, v in headers.items())
    total = _PRELUDE.size + _CRC.size + len(raw_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(raw_headers))
    head = prelude + _CRC.pack(crc32(prelude))
    body = head + raw_headers + payload
    return body + _CRC.pack(crc32(body))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def bedrock_chunk(event: tuple[str, dict[str, Any]] | dict[str, Any]) -> bytes:
    """A ``chunk`` event frame carrying one Anthropic event (``(type, data)`` or the whole dict)."""
    if isinstance(event, tuple):
        name, data = event
        obj = {"type": name, **data} if "type" not in data else data
    else:
        obj = event
    inner = _dumps(obj)
    payload = _dumps({"bytes": base64.b64encode(inner).decode(), "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: len(inner) % 32]})
    return encode_message({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                          payload)


def bedrock_exception(exception_type: str, message: str) -> bytes:
    """An exception frame, e.g. ``bedrock_exception("throttlingException", "Too many requests")``."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, _dumps({"message": message}))
