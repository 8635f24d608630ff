"""The little HTTP the sign-in endpoints need on the gateway's raw ASGI: read a form, answer JSON,
HTML or a redirect, read a cookie. Every answer is ``no-store`` (tokens and codes must not be cached)."""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_FORM = 64 * 1024
NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


class FormTooLarge(Exception):
    pass


async def read_form(receive: Receive) -> dict[str, str]:
    """The urlencoded body's fields (first value of each); unknown fields are the caller's to ignore."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if len(body) > MAX_FORM:
            raise FormTooLarge()
        if not msg.get("more_body"):
            break
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def query(scope: dict[str, Any]) -> dict[str, str]:
    fields = parse_qs(scope.get("query_string", b"").decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


def cookie(scope: dict[str, Any], name: str) -> str | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


async def answer(send: Send, status: int, body: bytes, content_type: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
                + NO_STORE + (headers or [])})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(send: Send, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await answer(send, status, json.dumps(obj, separators=(",", ":")).encode(), b"application/json", headers)


async def oauth_error(send: Send, status: int, error: str, description: str) -> None:
    """RFC 6749 §5.2's shape, which Claude Code reads on the OAuth endpoints (GATEWAY-PROTOCOL.md §15)."""
    await send_json(send, status, {"error": error, "error_description": description})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>body{{font:16px system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}}
input{{font:1.3rem monospace;letter-spacing:.1em;padding:.3rem}} button{{font-size:1rem;margin:.5rem .5rem 0 0}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""


async def send_html(send: Send, status: int, title: str, body_html: str, *, csp_form: str = "'self'",
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    page = PAGE.format(title=html.escape(title), body=body_html).encode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; form-action {csp_form}; frame-ancestors 'none'"
    await answer(send, status, page, b"text/html; charset=utf-8",
                 [(b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY"),
                  (b"referrer-policy", b"no-referrer")] + (headers or []))


def para(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"
