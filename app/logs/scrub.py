"""Remove credentials from text before it reaches a client, a log line or the ledger.

Two kinds of secret are found: anything shaped like one (``sk-…``, AWS, Google, GitHub and
Slack keys, ``Bearer …``, secret header lines and JSON fields), and the exact secrets Patchbay
itself holds (stored keys, tokens from commands, the gateway token), which ``remember`` registers
as they are loaded: a key with no recognisable shape that an upstream quotes back in its error
message is caught by that.
"""

from __future__ import annotations

import functools
import logging
import re
import threading

from app.logs.oneline import MessageFilter

_SECRET_KEYS = (b"authorization", b"proxy-authorization", b"x-api-key", b"api-key", b"api_key", b"apikey",
                b"x-goog-api-key", b"access_token", b"refresh_token", b"id_token", b"client_secret", b"secret_key",
                b"password", b"aws_secret_access_key", b"aws_session_token", b"cookie", b"set-cookie",
                b"anthropic_auth_token", b"anthropic_api_key", b"openai_api_key", b"x-patchbay-token",
                b"accesstoken", b"refreshtoken")
_TOKEN_RES = (  # each starts with a literal, so the regex engine can jump between candidates
    re.compile(rb"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(rb"AKIA[0-9A-Z]{16}"),
    re.compile(rb"AIza[0-9A-Za-z_\-]{30,}"),
    re.compile(rb"gh[pousr]_[A-Za-z0-9]{30,}"),
    re.compile(rb"xox[abprs]-[A-Za-z0-9\-]{10,}"),
)
_BEARER = re.compile(rb"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
REDACTED = b"[redacted]"
MIN_SECRET = 8  # shorter "secrets" (a test's "x", "none") would redact ordinary words

_known: frozenset[bytes] = frozenset()
_lock = threading.Lock()


def remember(secret: str | bytes | None) -> None:
    """Register a secret Patchbay holds, so that it is redacted wherever it shows up."""
    global _known
    if not secret:
        return
    b = secret.encode("utf-8", "surrogateescape") if isinstance(secret, str) else secret
    b = b.strip()
    if len(b) < MIN_SECRET or b in _known:
        return
    with _lock:
        _known = _known | {b}


@functools.lru_cache(maxsize=64)
def _key_patterns(keys: tuple[bytes, ...]) -> tuple[re.Pattern[bytes], re.Pattern[bytes], re.Pattern[bytes]]:
    alt = b"|".join(re.escape(k) for k in keys)
    return (
        re.compile(rb'(?i)("(?:' + alt + rb')"\s*:\s*)"(?:[^"\\]|\\.)*"'),  # JSON "key": "value"
        re.compile(rb"(?im)^(\s*(?:" + alt + rb")\s*[:=]\s*)[^\r\n]+"),  # header line  Key: value
        re.compile(rb"(?i)((?:" + alt + rb")=)[^\s\"'&]+"),  # env / query  KEY=value
    )


def _token(m: re.Match[bytes]) -> bytes:
    i = m.start()
    if i and m.string[i - 1:i].isalnum():  # "disk-..." is not an "sk-" key
        return m.group(0)
    return REDACTED


def scrub(data: bytes, extra: tuple[str, ...] = ()) -> bytes:
    """Remove anything that looks like a credential from a captured body or message: the secrets
    Patchbay holds (and ``extra``), secret header lines and JSON fields (authorization, x-api-key,
    ...), ``Bearer`` tokens, and keys by their shape (``sk-...``, AWS, Google, GitHub, Slack)."""
    for secret in _known:
        if secret in data:
            data = data.replace(secret, REDACTED)
    for s in extra:
        b = s.encode("utf-8", "surrogateescape") if s else b""
        if len(b) >= MIN_SECRET and b in data:
            data = data.replace(b, REDACTED)
    low = data.lower()
    keys = tuple(k for k in _SECRET_KEYS if k in low)
    if keys:
        json_rx, header_rx, env_rx = _key_patterns(keys)
        data = json_rx.sub(lambda m: m.group(1) + b'"' + REDACTED + b'"', data)
        data = header_rx.sub(lambda m: m.group(1) + REDACTED, data)
        data = env_rx.sub(lambda m: m.group(1) + REDACTED, data)
    if b"bearer" in low:
        data = _BEARER.sub(lambda m: m.group(1) + REDACTED, data)
    for rx in _TOKEN_RES:
        data = rx.sub(_token, data)
    return data


def scrub_text(text: str | None, extra: tuple[str, ...] = ()) -> str | None:
    if not text:
        return text
    return scrub(text.encode("utf-8", "surrogateescape"), extra).decode("utf-8", "replace")


class ScrubFilter(MessageFilter):
    """A logging filter that scrubs each record's final message (and its traceback text)."""

    def rewrite(self, msg: str) -> str:
        return scrub_text(msg) or ""

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.rewrite_message(record):
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text) or ""
        return True
