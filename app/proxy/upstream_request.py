"""The upstream POST, built as ``httpx.Request`` would build it, without its per-request work.

``httpx.Request("POST", url, content=..., headers=...)`` re-parses the URL, runs every header
through two normalising functions and abc ``isinstance`` checks, looks headers up by scanning the
list four times and wraps the body in a stream: ~130 Python calls on the critical path of every
request, before a byte goes upstream. ``post`` makes the same object (same method, URL, headers in
the same order with the same bytes, body, extensions) from a URL parsed once per backend
(``Target``) and headers encoded with ``str.encode`` alone. Headers that httpx would treat
specially (a caller's own ``Host``, ``Content-Length`` or ``Transfer-Encoding``) and an empty body
take httpx's own path, so its rules for those stay exactly its own. So does everything when the
installed httpx lays a request out otherwise than this module expects (checked once, at import).
"""

from __future__ import annotations

from typing import Any

import httpx

from app.proxy.transport import headers_of

# header names whose presence changes what httpx adds itself (lowercase)
_HTTPX_RULED = frozenset({"host", "content-length", "transfer-encoding"})


class Target:
    """One upstream URL, parsed once: the ``httpx.URL`` and the ``Host`` header httpx derives from it."""

    __slots__ = ("url", "host")

    def __init__(self, url: str) -> None:
        self.url = httpx.URL(url)
        self.host = (b"Host", b"host", self.url.netloc)


def post(target: Target, content: bytes, headers: dict[str, str], extensions: dict[str, Any]) -> httpx.Request:
    """``httpx.Request("POST", target.url, content=content, headers=headers, extensions=extensions)``.

    A header name or value that is not ASCII raises ``UnicodeEncodeError``, as httpx does."""
    if not FAST_REQUEST or not content or not _HTTPX_RULED.isdisjoint(map(str.lower, headers)):
        return httpx.Request("POST", target.url, content=content, headers=headers, extensions=extensions)
    return _built(target, content, headers, extensions)


def _built(target: Target, content: bytes, headers: dict[str, str], extensions: dict[str, Any]) -> httpx.Request:
    rows = [target.host]
    for k, v in headers.items():
        key = k.encode("ascii")
        rows.append((key, key.lower(), v.encode("ascii")))
    rows.append((b"Content-Length", b"content-length", b"%d" % len(content)))
    req = httpx.Request.__new__(httpx.Request)
    req.method = "POST"
    req.url = target.url
    req.headers = headers_of(rows)
    req.extensions = dict(extensions)
    req.stream = httpx.ByteStream(content)
    req._content = content
    return req


def _built_request_holds() -> bool:
    """``_built`` gives what the installed httpx builds (its private fields included)."""
    url, headers, ext = "http://127.0.0.1:9/v1/x?q=1", {"content-type": "application/json", "X-Key": "k"}, {"a": 1}
    try:
        ours = _built(Target(url), b"{}", headers, ext)
        real = httpx.Request("POST", url, content=b"{}", headers=headers, extensions=ext)
        return bool(ours.method == real.method and ours.url == real.url and ours.headers.raw == real.headers.raw
                    and ours.read() == real.read() and ours.extensions == real.extensions)
    except Exception:  # another httpx: its own constructor, always right
        return False


FAST_REQUEST = _built_request_holds()
