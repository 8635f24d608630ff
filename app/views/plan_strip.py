"""The Dashboard's strip for a Claude subscription: its 5-hour and weekly windows, live.

A bar per window (utilisation; amber from 80 %, red at the limit) with its reset time. The strip
is hidden while there is nothing to show: no subscription traffic, or every window has reset.
Its data comes from the bridge's subscription part (``app/bridge/subscription.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from app.claude.subscription_windows import clock
from app.views.widgets import SectionLabel

if TYPE_CHECKING:
    from app.bridge.subscription import Subscription

WARN_AT = 0.8
_CHUNK = "QProgressBar::chunk {{ background: {color}; }}"


class PlanStrip(QWidget):
    def __init__(self, subscription: Subscription, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.subscription = subscription
        self.setAccessibleName("Claude plan usage windows")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(10)
        title = SectionLabel("Claude plan")
        title.setToolTip("Requests served under your Claude subscription (Pro / Max login): the plan's usage "
                         "windows as Anthropic reports them. Their price is shown as API-equivalent value, not spend.")
        lay.addWidget(title)
        self.bars: dict[str, QProgressBar] = {}
        self.labels: dict[str, QLabel] = {}
        for key, name in (("5 h window", "5-hour window"), ("week", "Week")):
            label = QLabel(name)
            bar = QProgressBar()
            bar.setRange(0, 100)
            bar.setFormat("%p %")
            bar.setFixedWidth(140)
            bar.setAccessibleName(f"{name} utilisation")
            lay.addWidget(label)
            lay.addWidget(bar)
            self.bars[key] = bar
            self.labels[key] = label
        self.resets = QLabel()
        self.resets.setEnabled(False)  # muted: the palette's disabled text
        lay.addWidget(self.resets)
        lay.addStretch(1)
        subscription.windowsChanged.connect(lambda _t: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        now = time.time()
        shown = {label: (util, reset) for label, util, reset in self.subscription.windows(now)}
        resets = []
        for key, bar in self.bars.items():
            got = shown.get(key)
            bar.setVisible(got is not None)
            self.labels[key].setVisible(got is not None)
            if got is None:
                continue
            util, reset = got
            bar.setValue(max(0, min(100, round(util * 100))))
            color = "#c0392b" if util >= 1.0 else "#d08a2c" if util >= WARN_AT else "#2f9c8f"
            bar.setStyleSheet(_CHUNK.format(color=color))
            if reset is not None:
                resets.append(f"{'5 h' if key == '5 h window' else 'week'} resets {clock(reset, now)}")
        self.resets.setText(" · ".join(resets))
        self.setVisible(bool(shown))
