"""Qt item models over the bridge's snapshots (sessions, requests, top sessions).

They are ``QStandardItemModel``s filled from Python, not Python ``QAbstractTableModel``s: a view
then paints without calling back into Python. That matters because the gateway shares this
process's GIL: under a token flood every Python call made while painting waits for the GIL, and
a table of Python ``data()`` calls stalled the window for 50–150 ms (bench/gui_bench.py). Sorting
and filtering stay in C++ too (sort role, and one regular expression over a hidden search column).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, QRegularExpression, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel

from app.bridge.data import RequestRecord, SessionView, TopSession
from app.views.icons import backend_color, dot_icon
from app.views.theme import (
    STATE_COLORS,
    fmt_ago,
    fmt_clock,
    fmt_ms,
    fmt_rate,
    fmt_tokens,
    fmt_usd,
    short_session,
    usd_tip,
)

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
KEY_ROLE = Qt.ItemDataRole.UserRole + 2  # the row's id (session id, request id), on every cell
_D = Qt.ItemDataRole.DisplayRole
_TIP = Qt.ItemDataRole.ToolTipRole
_DECO = Qt.ItemDataRole.DecorationRole
_FG = Qt.ItemDataRole.ForegroundRole
R = Qt.AlignmentFlag.AlignRight


class Column:
    def __init__(self, title: str, text: Callable[[Any], str], sort: Callable[[Any], Any] | None = None,
                 align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft, tip: Callable[[Any], str | None] | None = None,
                 icon: Callable[[Any], Any] | None = None, color: Callable[[Any], Any] | None = None,
                 hidden: bool = False) -> None:
        self.title = title
        self.text = text
        self.sort = sort
        self.align = align | Qt.AlignmentFlag.AlignVCenter
        self.tip = tip
        self.icon = icon
        self.color = color
        self.hidden = hidden

    def values(self, row: Any) -> tuple[Any, ...]:
        text = self.text(row)
        return (text, text if self.sort is None else self.sort(row), self.tip(row) if self.tip else None,
                self.icon(row) if self.icon else None, self.color(row) if self.color else None)


class RowsModel(QStandardItemModel):
    columns: Sequence[Column] = ()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(0, len(self.columns), parent)
        self.setSortRole(SORT_ROLE)
        for i, c in enumerate(self.columns):
            self.setHeaderData(i, Qt.Orientation.Horizontal, c.title, _D)
            # a right-aligned title would sit under the sort arrow (drawn at the section's right end):
            # numbers' titles are centred, in the room fit_columns leaves for the arrow
            head = Qt.AlignmentFlag.AlignCenter if c.align & Qt.AlignmentFlag.AlignRight else c.align
            self.setHeaderData(i, Qt.Orientation.Horizontal, int(head), Qt.ItemDataRole.TextAlignmentRole)
        self._rows: list[Any] = []
        self._shown: list[list[tuple[Any, ...]]] = []  # what each cell shows now, to skip unchanged cells
        self._pos: dict[str, int] = {}

    def key(self, row: Any) -> str:
        raise NotImplementedError

    def hidden_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.hidden]

    # ------------------------------------------------------------ reading

    def row(self, i: int) -> Any:
        return self._rows[i]

    def rows(self) -> list[Any]:
        return list(self._rows)

    def find(self, key: str) -> int:
        return self._pos.get(key, -1)

    # ------------------------------------------------------------ writing

    def _make_items(self, row: Any) -> tuple[list[QStandardItem], list[tuple[Any, ...]]]:
        items, shown = [], []
        key = self.key(row)
        for c in self.columns:
            v = c.values(row)
            it = QStandardItem()
            it.setEditable(False)
            it.setData(int(c.align), Qt.ItemDataRole.TextAlignmentRole)
            it.setData(key, KEY_ROLE)
            self._apply(it, (None,) * 5, v)
            items.append(it)
            shown.append(v)
        return items, shown

    @staticmethod
    def _apply(it: QStandardItem, old: tuple[Any, ...], new: tuple[Any, ...]) -> None:
        text, sort, tip, icon, color = new
        if text != old[0]:
            it.setData(text, _D)
        if sort != old[1]:
            it.setData(sort, SORT_ROLE)
        if tip != old[2]:
            it.setData(tip, _TIP)
        if icon is not old[3]:
            it.setData(icon, _DECO)
        if color != old[4]:
            it.setData(color, _FG)

    def _update(self, i: int, row: Any) -> None:
        self._rows[i] = row
        shown = self._shown[i]
        for c, col in enumerate(self.columns):
            v = col.values(row)
            if v != shown[c]:
                it = self.item(i, c)
                if it is not None:
                    self._apply(it, shown[c], v)
                shown[c] = v

    def _insert(self, at: int, row: Any) -> None:
        items, shown = self._make_items(row)
        self._rows.insert(at, row)
        self._shown.insert(at, shown)
        self.insertRow(at, items)

    def _remove(self, i: int) -> None:
        del self._rows[i]
        del self._shown[i]
        self.removeRow(i)

    def _reindex(self) -> None:
        self._pos = {self.key(r): i for i, r in enumerate(self._rows)}

    def set_rows(self, rows: Sequence[Any]) -> None:
        """Update the rows whose key is known, drop the ones gone, append the new ones."""
        wanted = {self.key(r): r for r in rows}
        for i in range(len(self._rows) - 1, -1, -1):
            if self.key(self._rows[i]) not in wanted:
                self._remove(i)
        self._reindex()
        for k, r in wanted.items():
            at = self._pos.get(k)
            if at is None:
                self._insert(len(self._rows), r)
                self._pos[k] = len(self._rows) - 1
            else:
                self._update(at, r)

    def replace_all(self, rows: Sequence[Any]) -> None:
        self.setRowCount(0)
        self._rows, self._shown = [], []
        for r in rows:
            items, shown = self._make_items(r)
            self._rows.append(r)
            self._shown.append(shown)
            self.appendRow(items)
        self._reindex()

    def add_or_update(self, row: Any, *, front: bool = True, limit: int | None = None) -> None:
        i = self._pos.get(self.key(row))
        if i is not None:
            self._update(i, row)
            return
        self._insert(0 if front else len(self._rows), row)
        if limit is not None and len(self._rows) > limit:
            self._remove(len(self._rows) - 1 if front else 0)
        self._reindex()


# --------------------------------------------------------------------------- sessions


def _where(s: SessionView) -> str:
    return s.cwd or (s.prompt or "")


def _pin_text(s: SessionView) -> str:
    if s.pinned_backend:
        return f"⚑ {s.pinned_backend}"
    return s.backend or "—"


_LIVE = QColor(STATE_COLORS["ok"])
_ERROR = QColor(STATE_COLORS["error"])


_MUTED = QColor("#8c8c8c")  # value shown but not spent (a Claude subscription paid)
_PLAN_TIP = "Paid by your Claude subscription; at API prices it would have cost"


def equiv(value: float | None) -> str:
    """A subscription's value at API prices, never read as spend: "$1.20 API-equiv."."""
    return f"{fmt_usd(value)} API-equiv."


def _request_cost(r: RequestRecord) -> str:
    return equiv(r.api_equiv_usd) if r.api_equiv_usd is not None else fmt_usd(r.cost_usd)


def _session_cost(s: SessionView) -> str:
    spent = ("≈" if s.estimated and s.cost_usd else "") + fmt_usd(s.cost_usd, unpriced=s.unpriced)
    if not s.api_equiv_usd:
        return spent
    return equiv(s.api_equiv_usd) if not s.cost_usd else f"{spent} + {equiv(s.api_equiv_usd)}"


_ESTIMATE = ("\nStill streaming: its output is estimated from the text so far (≈ 4 characters a token) "
             "and its input is counted when the upstream reports it at the end.")


class SessionsModel(RowsModel):
    columns = (
        Column("Session", lambda s: s.label, tip=lambda s: f"{s.session_id or '(no session id)'}\n{_where(s)}"),
        Column("Id", lambda s: short_session(s.session_id), tip=lambda s: s.session_id),
        Column("Backend", _pin_text, tip=lambda s: "Pinned: only this session goes there" if s.pinned_backend
                else "Follows the active backend",
                icon=lambda s: dot_icon(backend_color(s.pinned_backend or s.backend or "?"))),
        Column("Model", lambda s: s.pinned_model or s.model or "—"),
        Column("Requests", lambda s: f"{s.requests}" + (f" ({s.in_flight} live)" if s.in_flight else ""),
                lambda s: float(s.requests), R),
        Column("Tok/s", lambda s: fmt_rate(s.tokens_per_s), lambda s: float(s.tokens_per_s), R),
        Column("Tokens", lambda s: ("≈" if s.estimated else "") + fmt_tokens(s.tokens), lambda s: float(s.tokens), R,
                tip=lambda s: f"{s.input_tokens:,} in · {s.output_tokens:,} out" + (_ESTIMATE if s.estimated else "")),
        Column("Cost", _session_cost, lambda s: float(s.cost_usd), R,
                tip=lambda s: usd_tip(s.cost_usd) + ("; some requests had no known price" if s.unpriced else "")
                + (f"\n{_PLAN_TIP}: {fmt_usd(s.api_equiv_usd)}" if s.api_equiv_usd else "")
                + (_ESTIMATE if s.estimated else ""),
                color=lambda s: _MUTED if s.api_equiv_usd and not s.cost_usd else None),
        Column("Last", lambda s: "streaming" if s.in_flight else fmt_ago(s.last_seen),
                lambda s: float(s.last_seen) + (1e9 if s.in_flight else 0.0), R,
                tip=lambda s: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.last_seen)),
                color=lambda s: _LIVE if s.in_flight else None),
    )

    def key(self, row: SessionView) -> str:
        return row.session_id


# --------------------------------------------------------------------------- requests


# Requests Patchbay itself refused (nothing was sent upstream): a word for the Status column instead of
# "503 api_error", read from the refusal's own wording. (what the message starts with / its error type, word)
REFUSALS: tuple[tuple[str, str, str], ...] = (
    ("Patchbay is paused", "", "paused"),
    ("Patchbay budget", "", "budget"),
    ("", "permission_error", "policy"),
)


def refusal_kind(r: RequestRecord) -> str | None:
    """paused | budget | policy for a request Patchbay refused, else None."""
    if r.in_flight or r.ok:
        return None
    for prefix, error_type, word in REFUSALS:
        if (prefix and (r.error_message or "").startswith(prefix)) or (error_type and r.error_type == error_type):
            return word
    return None


def _status_text(r: RequestRecord) -> str:
    if r.in_flight:
        return "…"
    if kind := refusal_kind(r):
        return f"{r.status} {kind}"
    if r.error_type:
        return f"{r.status} {r.error_type.replace('_error', '')}"
    return str(r.status)


def _state(r: RequestRecord) -> str:
    return "inflight" if r.in_flight else ("ok" if r.ok else "failed")


def _search_text(r: RequestRecord) -> str:
    parts = [r.request_id, r.session_id, r.backend, r.model, r.requested_model, r.route, r.error_type or "",
             r.error_message or "", r.client or "", str(r.status), f"backend:{r.backend}", f"state:{_state(r)}"]
    return " " + " ".join(p.lower() for p in parts if p) + " "


class RequestsModel(RowsModel):
    columns = (
        Column("Time", lambda r: fmt_clock(r.started_at), lambda r: float(r.started_at),
                tip=lambda r: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))),
        Column("Session", lambda r: short_session(r.session_id), tip=lambda r: r.session_id or "(none)"),
        Column("Backend", lambda r: r.backend, icon=lambda r: dot_icon(backend_color(r.backend))),
        Column("Model", lambda r: r.model, tip=lambda r: f"asked for {r.requested_model}; route: {r.route}"),
        Column("Status", _status_text, lambda r: float(r.status), tip=lambda r: r.error_message,
                color=lambda r: _ERROR if (not r.in_flight and not r.ok) else None),
        Column("Tokens", lambda r: "…" if r.in_flight else "refused" if refusal_kind(r) else
                f"{fmt_tokens(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens)} → "
                f"{fmt_tokens(r.output_tokens)}", lambda r: float(r.tokens), R,
                tip=lambda r: f"{r.input_tokens:,} in, {r.cache_read_tokens:,} cache read, "
                f"{r.cache_write_tokens:,} cache write, {r.output_tokens:,} out"),
        Column("Cost", _request_cost, lambda r: -1.0 if r.cost_usd is None else float(r.cost_usd), R,
                tip=lambda r: f"{_PLAN_TIP}: {usd_tip(r.api_equiv_usd)}" if r.api_equiv_usd is not None
                else usd_tip(r.cost_usd) or "no known price",
                color=lambda r: _MUTED if r.api_equiv_usd is not None else None),
        Column("TTFT", lambda r: fmt_ms(r.ttft_ms), lambda r: -1.0 if r.ttft_ms is None else float(r.ttft_ms), R),
        Column("Latency", lambda r: "…" if r.in_flight else fmt_ms(r.duration_ms), lambda r: float(r.duration_ms), R),
        Column("search", _search_text, hidden=True),
    )
    SEARCH_COLUMN = 9

    def key(self, row: RequestRecord) -> str:
        return row.request_id


class TopSessionsModel(RowsModel):
    columns = (
        Column("Session", lambda t: t.label, tip=lambda t: t.session_id),
        Column("Backends", lambda t: t.backends or "—", tip=lambda t: t.backends),
        Column("Requests", lambda t: str(t.requests), lambda t: float(t.requests), R),
        Column("Tokens", lambda t: fmt_tokens(t.tokens), lambda t: float(t.tokens), R),
        Column("Cost", lambda t: fmt_usd(t.cost_usd), lambda t: float(t.cost_usd), R, tip=lambda t: usd_tip(t.cost_usd)),
        Column("Last", lambda t: fmt_ago(t.last_seen), lambda t: float(t.last_seen or 0.0), R),
    )

    def key(self, row: TopSession) -> str:
        return row.session_id


class SortProxy(QSortFilterProxyModel):
    """Sorts on the raw values and filters with one regular expression over the model's hidden
    search column: every word typed, plus ``name:value`` constraints (backend, state). All of it
    runs in C++: no Python call while the view paints, sorts or filters."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._words: list[str] = []
        self._constraints: dict[str, str] = {}

    def setSourceModel(self, model: Any) -> None:  # noqa: N802 - Qt's name
        super().setSourceModel(model)
        col = getattr(model, "SEARCH_COLUMN", None)
        if col is not None:
            self.setFilterKeyColumn(col)

    def set_text(self, text: str) -> None:
        self._words = text.lower().split()
        self._apply()

    def set_constraint(self, name: str, value: str | None) -> None:
        if value:
            self._constraints[name] = value.lower()
        else:
            self._constraints.pop(name, None)
        self._apply()

    def _apply(self) -> None:
        parts = [f"(?=.*{re.escape(w)})" for w in self._words]
        parts += [f"(?=.* {re.escape(k)}:{re.escape(v)} )" for k, v in self._constraints.items()]
        pattern = "^" + "".join(parts) if parts else ""
        self.setFilterRegularExpression(QRegularExpression(
            pattern, QRegularExpression.PatternOption.CaseInsensitiveOption | QRegularExpression.PatternOption.DotMatchesEverythingOption))


def key_of(index: QModelIndex) -> str | None:
    """The row id behind any cell of a (proxied) table."""
    return index.data(KEY_ROLE) if index.isValid() else None
