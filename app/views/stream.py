"""The live token stream of one session: text, thinking (set apart) and tool calls with inputs."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QEvent
from PySide6.QtGui import QFont, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from app.bridge.data import StreamPiece
from app.views.theme import kind_color

MAX_BLOCKS = 4000


class StreamView(QPlainTextEdit):
    """Append-only, coloured by kind. Follows the end unless the user scrolled up to read."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_BLOCKS)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setPlaceholderText("Select a session to watch its requests stream in.")
        self.setAccessibleName("Token stream")
        self._last: tuple[str, int, str] | None = None
        self._fmts = self._make_formats()
        self.pieces_shown = 0
        self.chars_shown = 0

    def _make_formats(self) -> dict[str, QTextCharFormat]:
        pal = self.palette()
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        base = QTextCharFormat()
        base.setForeground(kind_color("text", pal))
        thinking = QTextCharFormat()
        thinking.setForeground(kind_color("thinking", pal))
        thinking.setFontItalic(True)
        tool = QTextCharFormat()
        tool.setForeground(kind_color("tool_use", pal))
        tool.setFontWeight(QFont.Weight.Bold)
        tool_in = QTextCharFormat()
        tool_in.setForeground(kind_color("tool_input", pal))
        tool_in.setFontFamilies([mono.family()])
        meta = QTextCharFormat()
        meta.setForeground(kind_color("meta", pal))
        meta.setFontPointSize(max(7.0, self.font().pointSizeF() * 0.9))
        err = QTextCharFormat()
        err.setForeground(kind_color("error", pal))
        err.setFontWeight(QFont.Weight.Bold)
        label_thinking = QTextCharFormat(thinking)
        label_thinking.setFontWeight(QFont.Weight.Bold)
        return {"text": base, "thinking": thinking, "tool_use": tool, "tool_input": tool_in, "meta": meta,
                "error": err, "label_thinking": label_thinking}

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._fmts = self._make_formats()
        super().changeEvent(event)

    def reset(self, pieces: Iterable[StreamPiece] = ()) -> None:
        self.clear()
        self._last = None
        self.pieces_shown = 0
        self.chars_shown = 0
        self.append_pieces(list(pieces))
        self.moveCursor(QTextCursor.MoveOperation.End)
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def append_pieces(self, pieces: list[StreamPiece]) -> None:
        if not pieces:
            return
        sb = self.verticalScrollBar()
        follow = sb.value() >= sb.maximum() - 4
        cur = QTextCursor(self.document())
        cur.movePosition(QTextCursor.MoveOperation.End)
        cur.beginEditBlock()
        empty = self.document().isEmpty()
        for p in pieces:
            key = (p.request_id, p.index, p.kind)
            f = self._fmts.get(p.kind, self._fmts["text"])
            if key != self._last:
                continuing_tool = (p.kind == "tool_input" and self._last is not None
                                   and self._last[:2] == (p.request_id, p.index) and self._last[2] == "tool_use")
                if continuing_tool:
                    cur.insertText(" ", f)
                elif p.kind == "meta" and p.index < 0:  # a request begins
                    if not empty:
                        cur.insertText("\n\n", self._fmts["text"])
                    cur.insertText(p.text, f)
                    self._last = key
                    empty = False
                    self.pieces_shown += 1
                    continue
                elif not empty:
                    cur.insertText("\n", self._fmts["text"])
                if p.kind == "thinking":
                    cur.insertText("Thinking  ", self._fmts["label_thinking"])
                elif p.kind == "tool_use":
                    cur.insertText("⚙ ", f)
                self._last = key
            cur.insertText(p.text, f)
            empty = False
            self.pieces_shown += 1
            self.chars_shown += len(p.text)
        cur.endEditBlock()
        if follow:
            sb.setValue(sb.maximum())
