"""One Claude Code session as the dashboard follows it: counters, its token rate, and the
last stretch of its stream (what the dashboard shows when the session is selected)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from app.bridge.convert import session_label
from app.bridge.data import SessionView, StreamPiece
from app.events import Usage
from app.proxy.routing import Pin

STREAM_CHARS_PER_SESSION = 60_000  # what the dashboard keeps to show when a session is selected
RATE_WINDOW_S = 5.0
CHARS_PER_TOKEN = 4  # what a streamed answer's length says about its tokens before the upstream counts them

# (backend, model, usage, priced at) -> dollars or None: the engine's PriceBook.cost
CostFn = Callable[[str, str, Usage, float], "float | None"]


@dataclass
class LiveRequest:
    """A request still streaming: what is known of it before its usage arrives."""

    backend: str
    model: str
    started_at: float
    chars: int = 0  # streamed so far (text, thinking, tool input)
    plan: str | None = None  # "subscription": a Claude subscription pays, its output costs no money

    @property
    def output_tokens(self) -> int:
        return -(-self.chars // CHARS_PER_TOKEN)


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
    in_flight: dict[str, LiveRequest] = field(default_factory=dict)
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    api_equiv_usd: float = 0.0  # what a Claude subscription paid for, at API prices (not spend)
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
        """Tokens a second while something streams; 0 once nothing does (no stale rate)."""
        while self.rate_samples and self.rate_samples[0][0] < now - RATE_WINDOW_S:
            self.rate_samples.popleft()
        if not self.in_flight:
            return 0.0
        if self.rate_samples:
            span = max(1.0, now - self.rate_samples[0][0])
            return sum(n for _, n in self.rate_samples) / CHARS_PER_TOKEN / span
        return self.last_rate  # between two requests of one turn: the last one's pace

    def streamed(self, request_id: str, chars: int) -> None:
        live = self.in_flight.get(request_id)
        if live is not None:
            live.chars += chars

    def view(self, now: float, pin: Pin | None, cost: CostFn | None = None) -> SessionView:
        """The counters with what streams now counted in: its request, its output so far (estimated
        from the text until the upstream reports usage), and that output's price."""
        live_out = sum(r.output_tokens for r in self.in_flight.values())
        live_cost = 0.0
        if cost is not None:
            for r in self.in_flight.values():
                if r.plan is not None:
                    continue
                live_cost += cost(r.backend, r.model, Usage(output_tokens=r.output_tokens), r.started_at) or 0.0
        return SessionView(
            session_id=self.session_id, label=session_label(self.session_id, self.cwd, self.prompt), cwd=self.cwd,
            prompt=self.prompt, backend=self.backend, model=self.model,
            pinned_backend=pin.backend if pin else None, pinned_model=pin.model if pin else None,
            requests=self.requests + len(self.in_flight), in_flight=len(self.in_flight), errors=self.errors,
            input_tokens=self.input_tokens, output_tokens=self.output_tokens + live_out,
            tokens_per_s=self.rate(now), cost_usd=self.cost_usd + live_cost, unpriced=self.unpriced,
            first_seen=self.first_seen, last_seen=self.last_seen, client=self.client, estimated=bool(self.in_flight),
            api_equiv_usd=self.api_equiv_usd,
        )
