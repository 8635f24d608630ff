"""The ledger's state for the window: while the team's PostgreSQL is away, the status bar says how
many usage rows wait in the local spool and what budgets do meanwhile ([ledger] on_unreachable),
and the banner (and so patchbay.log) says it in a sentence; both clear once the spool is drained.

It reads ``engine.ledger_health()`` (attributes only, no I/O) once a second on the GUI thread."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal

from app.bridge.data import LedgerView
from app.bridge.engine import EngineApi
from app.bridge.notices import Notices
from app.ledger.opener import LedgerHealth
from app.units import plural

POLL_MS = 1000
RESAY_S = 30.0  # the banner (and the log line it makes) gives a new count at most this often
KEY = "ledger-degraded"


def _away(h: LedgerHealth) -> bool:
    return h.reason is not None or h.budgets is not None


def view_of(h: LedgerHealth) -> LedgerView | None:
    if not h.degraded:
        return None
    parts = ["Ledger read-only" if h.read_only else "Ledger offline" if _away(h) else "Ledger catching up"]
    if h.spooled or h.reason:
        parts.append(f"{plural(h.spooled, 'row')} in the spool")
    if h.budgets == "open":
        parts.append("budgets open")
    elif h.budgets == "closed":
        parts.append("budgets closed: requests refused")
    tip = " ".join(t for t in (h.reason, h.budgets_reason) if t) or f"Spooled rows are being written to {h.where}."
    return LedgerView(" · ".join(parts), tip, "error" if h.budgets == "closed" else "warn")


def _title(h: LedgerHealth) -> str:
    if h.read_only:
        return "This app may only read the team ledger"
    return "The team ledger is not answering" if _away(h) else "The team ledger is catching up"


def sentence_of(h: LedgerHealth) -> str:
    said = [t for t in (h.reason or h.budgets_reason,) if t]
    if h.read_only and not h.spooled:
        said.append("Requests through this app's own gateway wait in the local spool meanwhile; nothing is lost.")
    elif h.spooled or h.reason:
        said.append(f"{plural(h.spooled, 'usage row')} wait{'s' if h.spooled == 1 else ''} in the local spool "
                    f"and {'is' if h.spooled == 1 else 'are'} written to {h.where} once "
                    f"{'the [ledger] user may write there' if h.read_only else 'it answers'}; nothing is lost.")
    if h.budgets == "open":
        said.append("Budgets cannot be checked meanwhile, so requests pass ([ledger] on_unreachable = \"open\").")
    elif h.budgets == "closed":
        said.append("Budgets cannot be checked meanwhile, so requests are refused with 503 ([ledger] on_unreachable "
                    "= \"closed\"); set it to \"open\" to let them pass.")
    text = " ".join(said)
    return text[:1].upper() + text[1:]


class LedgerWatch(QObject):
    changed = Signal(object)  # LedgerView | None

    def __init__(self, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._notices = notices
        self._engine: EngineApi | None = None
        self._view: LedgerView | None = None
        self._said: tuple[bool, str | None, int] | None = None  # (away, budgets, spooled) last in the banner
        self._said_at = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.tick)

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine
        if engine is None:
            self._timer.stop()
            self._set(None)
        else:
            self._timer.start()
            self.tick()

    def view(self) -> LedgerView | None:
        return self._view

    def tick(self) -> None:
        eng = self._engine
        if eng is None:
            return
        h = eng.ledger_health()
        self._set(view_of(h))
        if h.degraded:
            state = (_away(h), h.budgets, h.spooled)
            first = self._said is None
            news = first or self._said is not None and self._said[:2] != state[:2]  # not each new error text
            if news or (state != self._said and time.monotonic() - self._said_at >= RESAY_S):
                self._notices.say("error" if h.budgets == "closed" else "warn",
                                  _title(h),
                                  sentence_of(h), key=KEY, notify=first)
                self._said, self._said_at = state, time.monotonic()
        elif self._said is not None:
            self._said = None
            self._notices.clear(KEY)
            self._notices.say("info", "The team ledger answers again",
                              f"Every spooled usage row is written to {h.where}.", key=KEY)

    def _set(self, view: LedgerView | None) -> None:
        if view != self._view:
            self._view = view
            self.changed.emit(view)
