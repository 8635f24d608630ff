"""The one count of an answer's delivered output: what a stream cut short is charged, what a
budget's meter prices as the stream goes.

Every piece of output the client got (text, thinking and tool input; a tool's name is not
counted) is counted once, here, and read two ways: ``tokens()`` (the row of a stream cut before the upstream's final usage
came: ``app.proxy.tokens.text_tokens`` of the text) and ``chars()`` (the meter, at its own cautious
characters per token, app/budgets/hold_meter.py).

Counting is kept cheap on the hot path. A piece costs a list append; pieces are estimated a batch
at a time. A passthrough stream that nobody watches live and no budget meters does not even parse
its deltas: ``add_event`` keeps the raw ``content_block_delta`` data and it is parsed only when the
count is read (an answer cut short) or when enough of it piles up to be worth folding.
"""

from __future__ import annotations

import orjson

from app.proxy.tokens import text_tokens

_BATCH_CHARS = 32_768  # characters of pieces estimated at once
_BATCH_EVENT_BYTES = 262_144  # raw delta events kept unparsed at most, then folded into the count

# the output a content_block_delta carries, by delta type: (its field, the live view's kind)
OUTPUT_FIELDS = {"text_delta": ("text", "text"), "thinking_delta": ("thinking", "thinking"),
                 "input_json_delta": ("partial_json", "tool_input")}


def delta_output(data: bytes) -> tuple[int, str, str] | None:
    """(index, live view kind, piece) of a ``content_block_delta`` event's data, or None when it
    carries no output (a signature) or cannot be read."""
    try:
        ev = orjson.loads(data)
        d = ev["delta"]
        field = OUTPUT_FIELDS.get(d.get("type"))
        if field is None:
            return None
        return ev["index"], field[1], d.get(field[0], "")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


class OutputCount:
    """The output delivered so far (see the module docstring)."""

    __slots__ = ("_tokens", "_chars", "_pieces", "_piece_chars", "_events", "_event_bytes")

    def __init__(self) -> None:
        self._tokens = 0.0  # of the pieces already estimated
        self._chars = 0  # of every piece added (estimated or not)
        self._pieces: list[str] = []
        self._piece_chars = 0
        self._events: list[bytes] = []
        self._event_bytes = 0

    def add(self, text: str) -> None:
        """A piece of output the client got."""
        if text:
            self._pieces.append(text)
            n = len(text)
            self._chars += n
            self._piece_chars += n
            if self._piece_chars >= _BATCH_CHARS:
                self._estimate()

    def add_event(self, data: bytes) -> None:
        """A ``content_block_delta`` event's data the client got, counted when the count is read."""
        self._events.append(data)
        self._event_bytes += len(data)
        if self._event_bytes >= _BATCH_EVENT_BYTES:
            self._fold()

    def tokens(self) -> float:
        """The estimated tokens of the output so far."""
        self._fold()
        self._estimate()
        return self._tokens

    def chars(self) -> int:
        """The characters of the output so far."""
        if self._events:
            self._fold()
        return self._chars

    def _fold(self) -> None:
        events, self._events, self._event_bytes = self._events, [], 0
        for data in events:
            got = delta_output(data)
            if got is not None:
                self.add(got[2])

    def _estimate(self) -> None:
        if self._pieces:
            self._tokens += text_tokens("".join(self._pieces).encode("utf-8", "replace"))
            self._pieces = []
            self._piece_chars = 0
