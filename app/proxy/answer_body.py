"""An upstream answer's body, within bounds: inflated in small steps, and read whole only up to a limit.

Patchbay asks every upstream for ``accept-encoding: identity``, yet a proxy, a captive portal or a
hostile server may gzip its answer anyway. httpx inflates such a body in one call per network
chunk, so a 1 MB gzip bomb becomes a 1 GB bytes object (then a few copies). Here instead:

- :func:`inflating` swaps the response's stream for one that inflates ``gzip``/``deflate`` at most
  ``STEP_BYTES`` at a time (and drops the ``content-encoding`` header, so httpx does not inflate it
  again). A stream stays a stream; memory per step is bounded whatever the ratio. Encodings
  Patchbay cannot inflate (``br``, ``zstd``, …) are refused with a 502 that says so.
- :func:`read_whole` reads a whole (non-streamed) answer, an error body included, and refuses one
  larger than ``MAX_ANSWER_BYTES`` *after* inflating, with a 502 that names the backend, stopping
  at the limit instead of holding the rest. A Messages answer of 128k output tokens is well
  under 2 MB, so the limit only ever meets a broken or hostile upstream.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

from app.errors import ApiError

__all__ = ["MAX_ANSWER_BYTES", "STEP_BYTES", "inflating", "read_whole"]

MAX_ANSWER_BYTES = 16 << 20  # a whole answer, inflated
STEP_BYTES = 256 << 10  # at most this much inflated output per step

# content-encoding → zlib's wbits (deflate: zlib-wrapped as RFC 9110 says; raw deflate is tried too)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Inflating(httpx.AsyncByteStream):
    """``raw`` inflated at most ``STEP_BYTES`` per yielded piece."""

    def __init__(self, raw: httpx.AsyncByteStream, encoding: str, who: str) -> None:
        self._raw = raw
        self._wbits = _WBITS[encoding]
        self._encoding = encoding
        self._who = who

    async def __aiter__(self) -> AsyncIterator[bytes]:
        d = zlib.decompressobj(self._wbits)
        first = True
        async for chunk in self._raw:
            buf = chunk
            while buf:
                try:
                    out = d.decompress(buf, STEP_BYTES)
                except zlib.error as exc:
                    if not (first and self._wbits == zlib.MAX_WBITS):
                        raise self._broken(exc) from None
                    d = zlib.decompressobj(-zlib.MAX_WBITS)  # "deflate" sent as raw deflate (old IIS, some CDNs)
                    first = False
                    continue
                first = False
                buf = d.unconsumed_tail
                if out:
                    yield out
        try:
            tail = d.flush()
        except zlib.error as exc:
            raise self._broken(exc) from None
        if tail:
            yield tail

    def _broken(self, exc: zlib.error) -> httpx.DecodingError:
        # an httpx error, so a stream that breaks this way ends like any other broken stream
        return httpx.DecodingError(f"{self._who} sent a {self._encoding}-compressed answer that does not inflate "
                                   f"({exc})")

    async def aclose(self) -> None:
        if isinstance(self._raw, httpx.AsyncByteStream):
            await self._raw.aclose()


def inflating(resp: httpx.Response, who: str) -> httpx.Response:
    """``resp`` with a compressed body made to inflate in bounded steps (in place; returned for
    convenience). ``who`` names the upstream in an error ("The backend \"x\"")."""
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return resp
    if encoding not in _WBITS:
        raise ApiError(502, "api_error", f"{who} answered with content-encoding {encoding!r}, which Patchbay "
                           "asked it not to use (accept-encoding: identity) and cannot read. Turn compression off "
                           "on the backend or on the proxy in front of it.")
    stream = resp.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    resp.stream = _Inflating(stream, encoding, who)
    del resp.headers["content-encoding"]
    resp.headers.pop("content-length", None)  # it counted the compressed bytes
    return resp


async def read_whole(resp: httpx.Response, who: str, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """The whole body of ``resp`` (inflated by :func:`inflating` where it was compressed), or a 502
    once it passes ``limit`` bytes; the rest is never read. A body read once is kept, so a second
    reader (``resp.content``, ``resp.aread()``) gets the same bytes."""
    if hasattr(resp, "_content"):
        return resp.content
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.aiter_raw():
            size += len(chunk)
            if size > limit:
                parts.clear()
                await resp.aclose()
                raise ApiError(502, "api_error", f"{who} sent an answer larger than Patchbay's limit of "
                                   f"{limit >> 20} MB, so Patchbay dropped it. A Messages answer is far smaller; "
                                   "check the backend's base_url and anything between Patchbay and it.")
            parts.append(chunk)
    except httpx.DecodingError as exc:
        raise ApiError(502, "api_error", f"{exc}. Retry the request; if it keeps happening, check the backend "
                           "or anything between Patchbay and it.") from None
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    resp._content = data
    return data
