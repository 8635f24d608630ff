"""Per-session cost caps as the Dashboard sets them for one live session (app/budgets/session_caps.py)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.bridge.engine import EngineApi


class Caps(QObject):
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._engine: EngineApi | None = None

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine

    def session_cap(self, session_id: str) -> tuple[float, float, bool] | None:
        """(spent, cap, set in the app) for a session with a cost cap, else None."""
        if self._engine is None:
            return None
        caps = self._engine.session_caps
        cap = caps.cap(session_id)
        return (caps.spent(session_id), cap[0], cap[1]) if cap is not None else None

    def set_session_cap(self, session_id: str, limit_usd: float | None) -> None:
        """A cost cap for this one session (None: back to the config's ``[[budgets]] scope = "session"``)."""
        if self._engine is None or not session_id:
            return
        self._engine.session_caps.set_cap(session_id, limit_usd)
        self.changed.emit()
