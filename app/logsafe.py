"""One log record, one line: control characters in a message are written as escapes.

Much of what Patchbay logs comes from a client or an upstream (a model name, an error message
quoting one, a header). A newline in it would start a line that looks like Patchbay's own
(``2026-01-01 INFO patchbay.gateway: …``), and an escape sequence would drive the terminal that
shows stderr. ``one_line`` writes every C0/C1 control character (tab aside) and the Unicode line
and paragraph separators as ``\\n``, ``\\x1b``, ``\\u2028``; ``OneLineFilter`` applies it to each
record's message on both log handlers (a traceback keeps its lines: Patchbay's own text).
"""

from __future__ import annotations

import logging

_NAMED = {"\n": "\\n", "\r": "\\r"}
_ESCAPES = {c: _NAMED.get(chr(c), f"\\x{c:02x}") for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c != 0x09}
_ESCAPES |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped (see the module docstring)."""
    return text.translate(_ESCAPES)


class OneLineFilter(logging.Filter):
    """Escapes control characters in each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error handling
            return True
        safe = one_line(msg)
        if safe != msg:
            record.msg, record.args = safe, None
        return True
