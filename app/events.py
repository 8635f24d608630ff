"""Typed events the gateway publishes, and the queue that carries them.

The gateway thread calls ``EventQueue.put`` and must never block or raise there.
Consumers (the ledger writer, the GUI bridge, the CLI) drain on their own threads.
Content deltas may be dropped under pressure; everything else is always kept.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # of cache_creation_input_tokens, those written for one hour (usage.cache_creation
    # .ephemeral_1h_input_tokens), priced higher than the 5-minute ones (app/catalog/prices.py)
    cache_creation_1h_input_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


@dataclass(frozen=True, slots=True)
class RequestStarted:
    request_id: str
    started_at: float  # wall clock, seconds since the epoch
    session_id: str | None
    client: str | None  # the caller's User-Agent
    route: str  # which rule chose the backend: "active", "explicit", "pin", "budget:<scope>"
    backend: str
    requested_model: str
    model: str  # the model actually asked of the upstream
    stream: bool
    agent_id: str | None = None  # x-claude-code-agent-id (subagents)
    cwd: str | None = None  # the session's working directory, where the system prompt names it
    prompt: str | None = None  # the latest user text, shortened (only computed when a GUI listens)
    user: str | None = None  # team mode: the verified person (their e-mail)
    groups: tuple[str, ...] = ()  # team mode: their [[team.groups]]
    identity_source: str | None = None  # team mode: "iap" | "alb" | "cloudflare" | "oidc" | "keys"
    client_addr: str | None = None  # the address the request came from
    plan: str | None = None  # "subscription": the caller's Claude subscription pays (no money is spent)


DeltaKind = Literal["text", "thinking", "tool_use", "tool_input"]


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """A piece of the answer as it streams. ``tool_use`` opens a tool call (text = its name)."""

    request_id: str
    session_id: str | None
    index: int
    kind: DeltaKind
    text: str


@dataclass(frozen=True, slots=True)
class RequestFinished:
    request_id: str
    started_at: float
    ended_at: float
    session_id: str | None
    client: str | None
    route: str
    backend: str
    requested_model: str
    model: str  # served model (the upstream's answer where it named one)
    stream: bool
    status: int  # HTTP status we answered with (200 even when a stream ended in an error event)
    error_type: str | None  # Anthropic error type, or None on success
    error_message: str | None
    ttft_ms: float | None  # first content byte from the upstream, relative to start
    duration_ms: float
    usage: Usage
    stop_reason: str | None = None
    attempts: int = 1
    agent_id: str | None = None
    request_body: bytes | None = None  # only when capture is on
    response_body: bytes | None = None
    interrupted: bool = False  # the answer stopped part-way; usage is what was known then
    # how the usage was counted: None, the upstream's numbers; "streamed", an answer cut short
    # before its final usage came, its output counted from what was forwarded; "estimated", a whole
    # answer the client left before it came, its prompt estimated (Exchange._usage_of)
    usage_counted: str | None = None
    endpoint: str = "messages"  # or "count_tokens"
    user: str | None = None  # team mode: the verified person (never their token or key)
    groups: tuple[str, ...] = ()
    identity_source: str | None = None
    client_addr: str | None = None
    plan: str | None = None  # "subscription": served under the caller's Claude subscription (not money spent)


def finished_request(request_id: str, started_at: float, *, backend: str = "anthropic",
                     model: str = "claude-sonnet-4-5", usage: Usage = Usage(), duration_ms: float = 1000.0,
                     ended_at: float | None = None, session_id: str | None = None,
                     client: str | None = "claude-cli/2.1.332 (external, sdk-cli)", route: str = "active",
                     requested_model: str | None = None, stream: bool = True, status: int = 200,
                     error_type: str | None = None, error_message: str | None = None, ttft_ms: float | None = None,
                     stop_reason: str | None = None, attempts: int = 1, agent_id: str | None = None,
                     request_body: bytes | None = None, response_body: bytes | None = None,
                     plan: str | None = None) -> RequestFinished:
    """The one way tests, benches and scripts make a :class:`RequestFinished` (the gateway
    builds its own from the exchange): everything but the id and the start has a default, the
    end follows from the duration, and the model asked for is the one served unless given."""
    return RequestFinished(
        request_id=request_id, started_at=started_at,
        ended_at=started_at + duration_ms / 1000.0 if ended_at is None else ended_at,
        session_id=session_id, client=client, route=route, backend=backend,
        requested_model=model if requested_model is None else requested_model, model=model, stream=stream,
        status=status, error_type=error_type, error_message=error_message, ttft_ms=ttft_ms,
        duration_ms=duration_ms, usage=usage, stop_reason=stop_reason, attempts=attempts, agent_id=agent_id,
        request_body=request_body, response_body=response_body, plan=plan,
    )


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A budget crossed its warn line or its limit."""

    budget: str  # a human label, e.g. "all / day"
    level: Literal["warn", "limit"]
    spent_usd: float
    limit_usd: float
    resets_at: float
    action: str


@dataclass(frozen=True, slots=True)
class GatewayState:
    """The gateway started, stopped, paused, or failed to start."""

    state: Literal["starting", "running", "paused", "stopped", "failed"]
    address: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """A backend's circuit breaker changed: ``ok``, ``failing`` (recent failures in a row) or
    ``open`` (skipped while another backend can serve, until ``open_until``)."""

    backend: str
    state: Literal["ok", "failing", "open"]
    failures: int  # consecutive failures
    open_until: float | None  # wall clock; None unless open
    last_error: str | None
    trial: bool = False  # half-open: one trial request is being let through


@dataclass(frozen=True, slots=True)
class SubscriptionLimits:
    """A Claude subscription's usage windows, from an answer's ``anthropic-ratelimit-unified-*``
    headers (app/proxy/subscription.py): utilisation as a fraction, resets in Unix seconds."""

    backend: str
    observed_at: float
    status: str | None = None  # allowed | allowed_warning | rejected
    representative_claim: str | None = None  # the window that binds: five_hour | seven_day | …
    reset: float | None = None
    five_hour_utilization: float | None = None
    five_hour_reset: float | None = None
    five_hour_status: str | None = None
    seven_day_utilization: float | None = None
    seven_day_reset: float | None = None
    seven_day_status: str | None = None
    overage_status: str | None = None
    overage_utilization: float | None = None
    overage_reset: float | None = None
    overage_disabled_reason: str | None = None


Event = (RequestStarted | ContentDelta | RequestFinished | BudgetAlert | GatewayState | BackendHealth
         | SubscriptionLimits)


class EventQueue:
    """A thread-safe queue that never blocks the producer.

    ``ContentDelta`` events beyond ``max_deltas`` waiting are dropped (and counted);
    every other event is kept, so a finished request always reaches its consumers.
    """

    def __init__(self, max_deltas: int = 20_000) -> None:
        self._items: collections.deque[Event] = collections.deque()
        self._deltas = 0
        self._max_deltas = max_deltas
        self._lock = threading.Lock()
        self.dropped = 0
        self._wakeup: threading.Event = threading.Event()

    def put(self, event: Event) -> None:
        if type(event) is ContentDelta:
            with self._lock:
                if self._deltas >= self._max_deltas:
                    self.dropped += 1
                    return
                self._deltas += 1
                self._items.append(event)
        else:
            with self._lock:
                self._items.append(event)
        self._wakeup.set()

    def drain(self, limit: int | None = None) -> list[Event]:
        out: list[Event] = []
        with self._lock:
            n = len(self._items) if limit is None else min(limit, len(self._items))
            for _ in range(n):
                ev = self._items.popleft()
                if type(ev) is ContentDelta:
                    self._deltas -= 1
                out.append(ev)
            if not self._items:
                self._wakeup.clear()
        return out

    def wait(self, timeout: float | None = None) -> bool:
        return self._wakeup.wait(timeout)

    def __len__(self) -> int:
        return len(self._items)


Sink = Callable[[Event], None]


@dataclass
class EventHub:
    """Fans each event out to its sinks. Sinks run on the gateway thread: they must be quick."""

    sinks: list[Sink] = field(default_factory=list)
    want_deltas: bool = False

    def add(self, sink: Sink, *, deltas: bool = False) -> None:
        self.sinks.append(sink)
        if deltas:
            self.want_deltas = True

    def publish(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a consumer's bug must never break a request
                pass


def now() -> float:
    return time.time()
