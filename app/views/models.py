"""Qt item models over the bridge's snapshots (sessions, requests, top sessions)."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from app.views.data import RequestRecord, SessionView, TopSession
from app.views.icons import backend_color
from app.views.theme import STATE_COLORS, fmt_ago, fmt_clock, fmt_ms, fmt_rate, fmt_tokens, fmt_usd, short_session

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
KEY_ROLE = Qt.ItemDataRole.UserRole + 2  # the row's id (session id, request id)
Index = QModelIndex | QPersistentModelIndex


class _Column:
    def __init__(self, title: str, text: Callable[[Any], str], sort: Callable[[Any], Any] | None = None,
                 align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft, tip: Callable[[Any], str] | None = None) -> None:
        self.title = title
        self.text = text
        self.sort = sort or text
        self.align = align | Qt.AlignmentFlag.AlignVCenter
        self.tip = tip


R = Qt.AlignmentFlag.AlignRight


class _RowsModel(QAbstractTableModel):
    columns: Sequence[_Column] = ()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[Any] = []
        self._pos: dict[str, int] = {}

    def key(self, row: Any) -> str:
        raise NotImplementedError

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            if role == Qt.ItemDataRole.DisplayRole:
                return self.columns[section].title
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int(self.columns[section].align)
        return None

    def row(self, i: int) -> Any:
        return self._rows[i]

    def rows(self) -> list[Any]:
        return list(self._rows)

    def find(self, key: str) -> int:
        return self._pos.get(key, -1)

    def decoration(self, row: Any, col: int) -> Any:
        return None

    def foreground(self, row: Any, col: int) -> Any:
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        col = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.text(row)
        if role == SORT_ROLE:
            return col.sort(row)
        if role == KEY_ROLE:
            return self.key(row)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(col.align)
        if role == Qt.ItemDataRole.ToolTipRole and col.tip is not None:
            return col.tip(row)
        if role == Qt.ItemDataRole.DecorationRole:
            return self.decoration(row, index.column())
        if role == Qt.ItemDataRole.ForegroundRole:
            return self.foreground(row, index.column())
        return None

    def set_rows(self, rows: Sequence[Any]) -> None:
        """Update in place where the keys are the same, insert the new ones, drop the gone ones."""
        new_keys = [self.key(r) for r in rows]
        if set(new_keys) == set(self._pos) and len(new_keys) == len(self._rows):
            for r in rows:
                self._rows[self._pos[self.key(r)]] = r
            if self._rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.columns) - 1))
            return
        new_set = set(new_keys)
        gone = [i for i, r in enumerate(self._rows) if self.key(r) not in new_set]
        if gone and len(gone) > len(self._rows) // 2:
            self.beginResetModel()
            self._rows = list(rows)
            self._reindex()
            self.endResetModel()
            return
        for i in reversed(gone):
            self.beginRemoveRows(QModelIndex(), i, i)
            del self._rows[i]
            self.endRemoveRows()
        self._reindex()
        added = [r for r in rows if self.key(r) not in self._pos]
        for r in rows:
            i = self._pos.get(self.key(r))
            if i is not None:
                self._rows[i] = r
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.columns) - 1))
        if added:
            n = len(self._rows)
            self.beginInsertRows(QModelIndex(), n, n + len(added) - 1)
            self._rows.extend(added)
            self._reindex()
            self.endInsertRows()

    def add_or_update(self, row: Any, *, front: bool = True, limit: int | None = None) -> None:
        k = self.key(row)
        i = self._pos.get(k)
        if i is not None:
            self._rows[i] = row
            self.dataChanged.emit(self.index(i, 0), self.index(i, len(self.columns) - 1))
            return
        at = 0 if front else len(self._rows)
        self.beginInsertRows(QModelIndex(), at, at)
        self._rows.insert(at, row)
        self.endInsertRows()
        if limit is not None and len(self._rows) > limit:
            drop_at = len(self._rows) - 1 if front else 0
            self.beginRemoveRows(QModelIndex(), drop_at, drop_at)
            del self._rows[drop_at]
            self.endRemoveRows()
        self._reindex()

    def _reindex(self) -> None:
        self._pos = {self.key(r): i for i, r in enumerate(self._rows)}


# --------------------------------------------------------------------------- sessions


def _where(s: SessionView) -> str:
    return s.cwd or (s.prompt or "")


def _pin_text(s: SessionView) -> str:
    if s.pinned_backend:
        return f"📌 {s.pinned_backend}" + (f" · {s.pinned_model}" if s.pinned_model else "")
    return s.backend or "—"


class SessionsModel(_RowsModel):
    columns = (
        _Column("Session", lambda s: s.label, tip=lambda s: f"{s.session_id or '(no session id)'}\n{_where(s)}"),
        _Column("Id", lambda s: short_session(s.session_id), tip=lambda s: s.session_id),
        _Column("Backend", _pin_text, tip=lambda s: "Pinned: only this session goes there" if s.pinned_backend
                else "Follows the active backend"),
        _Column("Model", lambda s: s.pinned_model or s.model or "—"),
        _Column("Requests", lambda s: f"{s.requests}" + (f" (+{s.in_flight})" if s.in_flight else ""),
                lambda s: s.requests, R),
        _Column("Tok/s", lambda s: fmt_rate(s.tokens_per_s), lambda s: s.tokens_per_s, R),
        _Column("Tokens", lambda s: fmt_tokens(s.tokens), lambda s: s.tokens, R,
                tip=lambda s: f"{s.input_tokens:,} in · {s.output_tokens:,} out"),
        _Column("Cost", lambda s: fmt_usd(s.cost_usd, unpriced=s.unpriced), lambda s: s.cost_usd, R,
                tip=lambda s: "Some requests had no known price" if s.unpriced else ""),
        _Column("Last", lambda s: "streaming" if s.in_flight else fmt_ago(s.last_seen), lambda s: s.last_seen, R,
                tip=lambda s: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.last_seen))),
    )

    def key(self, row: SessionView) -> str:
        return row.session_id

    def decoration(self, row: SessionView, col: int) -> Any:
        if col == 2:
            from app.views.icons import dot_icon

            return dot_icon(backend_color(row.pinned_backend or row.backend or "?"))
        return None

    def foreground(self, row: SessionView, col: int) -> Any:
        if col == 8 and row.in_flight:
            return QColor(STATE_COLORS["ok"])
        return None


# --------------------------------------------------------------------------- requests


def _status_text(r: RequestRecord) -> str:
    if r.in_flight:
        return "…"
    if r.error_type:
        return f"{r.status} {r.error_type.replace('_error', '')}"
    return str(r.status)


class RequestsModel(_RowsModel):
    columns = (
        _Column("Time", lambda r: fmt_clock(r.started_at), lambda r: r.started_at,
                tip=lambda r: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))),
        _Column("Session", lambda r: short_session(r.session_id), tip=lambda r: r.session_id or "(none)"),
        _Column("Backend", lambda r: r.backend),
        _Column("Model", lambda r: r.model, tip=lambda r: f"asked for {r.requested_model}; route: {r.route}"),
        _Column("Status", _status_text, lambda r: r.status, tip=lambda r: r.error_message or ""),
        _Column("Tokens", lambda r: f"{fmt_tokens(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens)} → "
                f"{fmt_tokens(r.output_tokens)}", lambda r: r.tokens, R,
                tip=lambda r: f"{r.input_tokens:,} in, {r.cache_read_tokens:,} cache read, "
                f"{r.cache_write_tokens:,} cache write, {r.output_tokens:,} out"),
        _Column("Cost", lambda r: fmt_usd(r.cost_usd), lambda r: -1.0 if r.cost_usd is None else r.cost_usd, R),
        _Column("TTFT", lambda r: fmt_ms(r.ttft_ms), lambda r: r.ttft_ms if r.ttft_ms is not None else -1.0, R),
        _Column("Latency", lambda r: "…" if r.in_flight else fmt_ms(r.duration_ms), lambda r: r.duration_ms, R),
    )

    def key(self, row: RequestRecord) -> str:
        return row.request_id

    def decoration(self, row: RequestRecord, col: int) -> Any:
        if col == 2:
            from app.views.icons import dot_icon

            return dot_icon(backend_color(row.backend))
        return None

    def foreground(self, row: RequestRecord, col: int) -> Any:
        if col == 4 and not row.in_flight and not row.ok:
            return QColor(STATE_COLORS["error"])
        return None


class TopSessionsModel(_RowsModel):
    columns = (
        _Column("Session", lambda t: t.label, tip=lambda t: t.session_id),
        _Column("Backends", lambda t: t.backends or "—"),
        _Column("Requests", lambda t: str(t.requests), lambda t: t.requests, R),
        _Column("Tokens", lambda t: fmt_tokens(t.tokens), lambda t: t.tokens, R),
        _Column("Cost", lambda t: fmt_usd(t.cost_usd), lambda t: t.cost_usd, R),
        _Column("Last", lambda t: fmt_ago(t.last_seen), lambda t: t.last_seen or 0.0, R),
    )

    def key(self, row: TopSession) -> str:
        return row.session_id


class SortProxy(QSortFilterProxyModel):
    """Sorts on the raw values (SORT_ROLE) and filters on a text plus per-column exact values."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._text = ""
        self._exact: dict[int, str] = {}
        self._pred: Callable[[Any], bool] | None = None

    def _refilter(self, change: Callable[[], None]) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10
            self.beginFilterChange()
            change()
            self.endFilterChange()
        else:  # pragma: no cover - older Qt
            change()
            self.invalidateFilter()

    def set_text(self, text: str) -> None:
        self._refilter(lambda: setattr(self, "_text", text.strip().lower()))

    def set_exact(self, column: int, value: str | None) -> None:
        def change() -> None:
            if value:
                self._exact[column] = value
            else:
                self._exact.pop(column, None)

        self._refilter(change)

    def set_predicate(self, pred: Callable[[Any], bool] | None) -> None:
        self._refilter(lambda: setattr(self, "_pred", pred))

    def lessThan(self, left: Index, right: Index) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        src = self.sourceModel()
        if not isinstance(src, _RowsModel):
            return True
        for col, value in self._exact.items():
            if src.data(src.index(source_row, col), Qt.ItemDataRole.DisplayRole) != value:
                return False
        if self._pred is not None and not self._pred(src.row(source_row)):
            return False
        if not self._text:
            return True
        row = src.row(source_row)
        hay = " ".join(str(src.data(src.index(source_row, c), Qt.ItemDataRole.DisplayRole) or "")
                       for c in range(src.columnCount()))
        extra = " ".join(str(getattr(row, a, "") or "") for a in ("session_id", "request_id", "error_message",
                                                                   "requested_model", "cwd", "prompt"))
        return all(word in (hay + " " + extra).lower() for word in self._text.split())
