"""One log record, one line: control characters in a message are written as escapes.

Much of what Patchbay logs comes from a client or an upstream (a model name, an error message
quoting one, a header). A newline in it would start a line that looks like Patchbay's own
(``2026-01-01 INFO patchbay.gateway: …``), and an escape sequence would drive the terminal that
shows stderr. ``one_line`` writes every C0/C1 control character (tab aside) and the Unicode line
and paragraph separators as ``\\n``, ``\\x1b``, ``\\u2028``; ``OneLineFilter`` applies it to each
record's message on both log handlers (a traceback keeps its lines: Patchbay's own text).
``MessageFilter`` is the shell both log filters share (this one and ``app.logs.scrub.ScrubFilter``).
"""

from __future__ import annotations

import logging

_NAMED = {"\n": "\\n", "\r": "\\r"}
_ESCAPES = {c: _NAMED.get(chr(c), f"\\x{c:02x}") for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c != 0x09}
_ESCAPES |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (see the module docstring)."""
    return text.translate(_ESCAPES)


class MessageFilter(logging.Filter):
    """A logging filter that rewrites each record's final message with ``rewrite``."""

    def rewrite(self, msg: str) -> str:
        return msg

    def rewrite_message(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message; False (and nothing done) when its format string is broken."""
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error handling
            return False
        new = self.rewrite(msg)
        if new != msg:
            record.msg, record.args = new, None
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        self.rewrite_message(record)
        return True


class OneLineFilter(MessageFilter):
    """Escapes control characters in each record's final message."""

    def rewrite(self, msg: str) -> str:
        return one_line(msg)
