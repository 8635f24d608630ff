"""The upstream POST Patchbay builds itself is the request httpx would build, byte for byte."""

from __future__ import annotations

import httpx
import pytest

from app.proxy.transport import _serialize_head, headers_of
from app.proxy.upstream_request import Target, post

CASES = [
    ("http://127.0.0.1:8080/v1/chat/completions", {"content-type": "application/json", "accept-encoding": "identity",
                                                    "authorization": "Bearer sk-test"}),
    ("https://api.example.com/v1/messages", {"Content-Type": "application/json", "X-Api-Key": "k",
                                             "anthropic-beta": "a,b"}),
    ("https://api.example.com:443/model/x%3Ay/invoke?q=1", {}),
    # headers httpx treats specially: its own path
    ("http://h/p", {"host": "other.example", "content-type": "application/json"}),
    ("http://h/p", {"Content-Length": "4"}),
    ("http://h/p", {"transfer-encoding": "chunked"}),
]


@pytest.mark.parametrize(("url", "headers"), CASES)
@pytest.mark.parametrize("content", [b'{"a":1}', b""])
def test_post_is_the_request_httpx_builds(url: str, headers: dict[str, str], content: bytes) -> None:
    ext = {"timeout": {"read": 1.0}}
    ours = post(Target(url), content, headers, ext)
    theirs = httpx.Request("POST", url, content=content, headers=headers, extensions=ext)
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert ours.headers.raw == theirs.headers.raw
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert ours.headers.get("content-length") == theirs.headers.get("content-length")
    assert ours.content == theirs.content
    assert isinstance(ours.stream, httpx.ByteStream) and b"".join(ours.stream) == content
    assert ours.extensions == theirs.extensions and ours.extensions is not ext
    assert _serialize_head(ours) == _serialize_head(theirs)


def test_a_header_that_is_not_ascii_is_refused_as_httpx_refuses_it() -> None:
    with pytest.raises(UnicodeEncodeError):
        httpx.Request("POST", "http://h/p", content=b"x", headers={"x-name": "é"})
    with pytest.raises(UnicodeEncodeError):
        post(Target("http://h/p"), b"x", {"x-name": "é"}, {})


def test_headers_of_is_the_headers_httpx_builds() -> None:
    pairs = [(b"Content-Type", b"text/event-stream"), (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"),
             (b"X-Name", "é".encode())]
    ours = headers_of([(k, k.lower(), v) for k, v in pairs])
    theirs = httpx.Headers(pairs)
    assert ours.raw == theirs.raw and ours.multi_items() == theirs.multi_items()
    assert ours.encoding == theirs.encoding == "utf-8"
    assert ours.get("set-cookie") == theirs.get("set-cookie") == "a=1, b=2"
    resp = httpx.Response(200, headers=ours)
    assert resp.headers.get("content-type") == "text/event-stream"


def test_the_installed_httpx_passes_the_layout_checks_and_a_failed_check_means_httpx_itself(monkeypatch) -> None:
    """The short builds fill httpx's private fields; a check at import decides whether they may. With
    the httpx this project installs it passes (the tests above then compare the short builds), and
    where it would not, ``post`` and ``headers_of`` are httpx's own constructors."""
    from app.proxy import transport, upstream_request

    assert transport.FAST_HEADERS and upstream_request.FAST_REQUEST
    monkeypatch.setattr(transport, "FAST_HEADERS", False)
    monkeypatch.setattr(upstream_request, "FAST_REQUEST", False)
    url, headers = CASES[0]
    ours = post(Target(url), b'{"a":1}', headers, {})
    theirs = httpx.Request("POST", url, content=b'{"a":1}', headers=headers)
    assert ours.headers.raw == theirs.headers.raw and ours.content == theirs.content
    assert _serialize_head(ours) == _serialize_head(theirs)
    rows = [(b"X-A", b"x-a", b"1")]
    assert headers_of(rows).raw == httpx.Headers([(b"X-A", b"1")]).raw
