"""The Claude subscription's usage windows for the tray and the Dashboard.

The gateway publishes a ``SubscriptionLimits`` whenever a subscription answer carries the
``anthropic-ratelimit-unified-*`` headers; the live part hands them here (``on_limits``). On
start the engine's last known windows (kept beside the ledger) are read back, so a restart does
not blank them. ``windowsChanged`` carries the line to show ("5 h window 63 % · resets 14:20 ·
week 21 %"), or "" when there is none: no subscription traffic, or every window has reset since
(a minute's timer notices that) — the views then show nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.bridge.engine import EngineApi
from app.claude.subscription_windows import latest, windows, windows_text
from app.events import SubscriptionLimits

RECHECK_MS = 60_000  # a window that resets drops out within a minute


class Subscription(QObject):
    windowsChanged = Signal(str)  # the line to show; "" to show nothing

    def __init__(self, parent: QObject | None = None, *, now: Any = time.time) -> None:
        super().__init__(parent)
        self._now = now
        self._states: dict[str, Mapping[str, object]] = {}
        self._text = ""
        self._timer = QTimer(self)
        self._timer.setInterval(RECHECK_MS)
        self._timer.timeout.connect(self._refresh)
        self._timer.start()

    def attach(self, engine: EngineApi | None) -> None:
        if engine is None:
            return  # the last windows stay: they are the plan's, not the gateway's
        self._states = dict(engine.subscription_windows())
        self._refresh()

    @Slot(object)
    def on_limits(self, ev: SubscriptionLimits) -> None:
        self._states[ev.backend] = dataclasses.asdict(ev)
        self._refresh()

    def text(self) -> str:
        """The line for the tray and the Dashboard; "" when there is nothing to show."""
        return self._text

    def windows(self, now: float | None = None) -> list[tuple[str, float, float | None]]:
        """The current windows: ("5 h window" | "week", utilisation fraction, reset time)."""
        st = latest(self._states)
        return windows(st, self._now() if now is None else now) if st else []

    def status(self) -> str | None:
        """The freshest state's overall status: allowed, allowed_warning or rejected."""
        st = latest(self._states)
        value = st.get("status") if st else None
        return value if isinstance(value, str) else None

    @Slot()
    def _refresh(self) -> None:
        text = windows_text(latest(self._states), self._now())
        if text != self._text:
            self._text = text
            self.windowsChanged.emit(text)
