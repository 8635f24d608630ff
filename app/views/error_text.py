"""A backend's error, made readable in a narrow label: the message pulled out of a JSON or HTML body,
long runs (URLs, ids) given places to wrap, and a bound on length (the whole text goes in the tooltip)."""

from __future__ import annotations

import html
import json
import re

MAX_CHARS = 400
RUN = 28  # characters without a break opportunity before one is added
ZWSP = "\u200b"


def _from_json(text: str) -> str | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        data = json.loads(text[start:])
    except ValueError:
        return None
    err = data.get("error", data) if isinstance(data, dict) else None
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or err.get("msg")
        return f"{text[:start].strip()} {msg}".strip() if isinstance(msg, str) else None
    if isinstance(err, str):
        return f"{text[:start].strip()} {err}".strip()
    return None


def _from_html(text: str) -> str | None:
    if not re.search(r"<(html|!doctype|body|head)\b", text, re.I):
        return None
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    body = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
    return html.unescape(" ".join(body.split()))


def readable_error(text: str) -> str:
    """The plain sentence to show (not yet escaped for rich text)."""
    text = text.strip()
    msg = _from_json(text) or _from_html(text) or text
    msg = " ".join(msg.split())
    return msg if len(msg) <= MAX_CHARS else msg[:MAX_CHARS - 1].rstrip() + "…"


def breakable(text: str) -> str:
    """``text`` with zero-width spaces where a long run may wrap (after / . - _ ? & =, else every RUN chars)."""
    def fix(m: re.Match[str]) -> str:
        run = re.sub(r"([/.\-_?&=])", lambda x: x.group(1) + ZWSP, m.group(0))
        return re.sub(rf"([^{ZWSP}]{{{RUN}}})(?=[^{ZWSP}])", lambda x: x.group(1) + ZWSP, run)

    return re.sub(rf"\S{{{RUN},}}", fix, text)
