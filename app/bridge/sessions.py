"""One Claude Code session as the dashboard follows it: counters, its token rate, and the
last stretch of its stream (what the dashboard shows when the session is selected)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, replace

from app.bridge.convert import session_label
from app.proxy.routing import Pin
from app.views.data import SessionView, StreamPiece

STREAM_CHARS_PER_SESSION = 60_000  # what the dashboard keeps to show when a session is selected
RATE_WINDOW_S = 5.0


@dataclass
class SessionState:
    session_id: str
    first_seen: float
    last_seen: float
    backend: str = ""
    model: str = ""
    cwd: str | None = None
    prompt: str | None = None
    client: str | None = None
    requests: int = 0
    in_flight: set[str] = field(default_factory=set)
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: bool = False
    last_rate: float = 0.0
    rate_samples: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    pieces: collections.deque[StreamPiece] = field(default_factory=collections.deque)
    piece_chars: int = 0

    def add_piece(self, piece: StreamPiece) -> None:
        last = self.pieces[-1] if self.pieces else None
        if last is not None and (last.request_id, last.index, last.kind) == (piece.request_id, piece.index,
                                                                              piece.kind):
            self.pieces[-1] = replace(last, text=last.text + piece.text)
        else:
            self.pieces.append(piece)
        self.piece_chars += len(piece.text)
        while self.piece_chars > STREAM_CHARS_PER_SESSION and len(self.pieces) > 1:
            self.piece_chars -= len(self.pieces.popleft().text)

    def rate(self, now: float) -> float:
        while self.rate_samples and self.rate_samples[0][0] < now - RATE_WINDOW_S:
            self.rate_samples.popleft()
        if self.in_flight and self.rate_samples:
            span = max(1.0, now - self.rate_samples[0][0])
            return sum(n for _, n in self.rate_samples) / 4.0 / span  # ≈ 4 characters a token
        return self.last_rate

    def view(self, now: float, pin: Pin | None) -> SessionView:
        return SessionView(
            session_id=self.session_id, label=session_label(self.session_id, self.cwd, self.prompt), cwd=self.cwd,
            prompt=self.prompt, backend=self.backend, model=self.model,
            pinned_backend=pin.backend if pin else None, pinned_model=pin.model if pin else None,
            requests=self.requests, in_flight=len(self.in_flight), errors=self.errors,
            input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            tokens_per_s=self.rate(now), cost_usd=self.cost_usd, unpriced=self.unpriced,
            first_seen=self.first_seen, last_seen=self.last_seen, client=self.client,
        )
