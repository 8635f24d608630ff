"""One ledger row, both ways: what the writer makes of a ``RequestFinished``, and the typed rows
the readers answer with.

Writing: ``request_row`` and ``count_row`` give the ``requests`` and ``token_counts`` tuples in the order
of ``ROW_COLUMNS`` / ``COUNT_COLUMNS`` (app/ledger/store.py), every store's input;
error messages are scrubbed. Bodies are kept only when ``should_capture`` says so, scrubbed and
zlib-compressed by ``compressed_body``.

Reading: ``RequestRow``, ``RequestDetail`` (with the bodies ``_decompress`` gives back),
``SessionSummary``, ``SeriesPoint``, ``TokenRate`` and ``TotalsRow`` are what ``LedgerReader``
(SQLite) and ``PgLedgerReader`` (PostgreSQL) return.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal

from app.config import LedgerSettings
from app.events import RequestFinished
from app.ledger.store import stored_group
from app.logs.scrub import scrub, scrub_text

Bucket = Literal["hour", "day", "month"]


# =========================================================================== writing

def compressed_body(data: bytes | None) -> bytes | None:
    return None if data is None else zlib.compress(scrub(data), 6)


def should_capture(settings: LedgerSettings, ev: RequestFinished) -> bool:
    if settings.capture == "all":
        return True
    if settings.capture == "errors":
        return ev.status >= 400 or ev.error_type is not None
    return False


def request_row(ev: RequestFinished, cost: float | None, instance: str | None = None,
         api_equiv: float | None = None, priced_by: str | None = None) -> tuple[Any, ...]:
    """A ``requests`` row (ROW_COLUMNS). A request served under a subscription has ``cost``
    0 (no money spent), ``plan`` "subscription" and its API-price value in ``api_equiv``.
    ``priced_by``: the stated fallback price a model the table does not know was charged at
    (``PriceBook.priced_by``); None when the table priced it."""
    u = ev.usage
    return (
        str(ev.request_id), float(ev.started_at), float(ev.ended_at), ev.session_id, ev.client, ev.route,
        ev.backend, ev.requested_model, ev.model, 1 if ev.stream else 0, int(ev.status), ev.error_type,
        scrub_text(ev.error_message), ev.stop_reason, ev.ttft_ms, float(ev.duration_ms), int(u.input_tokens),
        int(u.output_tokens), int(u.cache_creation_input_tokens), int(u.cache_read_input_tokens), cost,
        int(ev.attempts), ev.agent_id, instance, 1 if ev.interrupted else 0,
        ev.user, groups_text(ev.groups), ev.identity_source, ev.client_addr, ev.plan, api_equiv,
        ev.usage_counted, priced_by,
    )


def groups_text(groups: tuple[str, ...]) -> str | None:
    """A row's ``groups`` column: the names joined by commas (None when there are none)."""
    return ",".join(stored_group(g) for g in groups) if groups else None


def count_row(ev: RequestFinished) -> tuple[Any, ...]:
    """A count_tokens call as a token_counts row (COUNT_COLUMNS)."""
    return (str(ev.request_id), float(ev.started_at), ev.session_id, ev.client, ev.backend, ev.model,
            int(ev.status), ev.error_type, scrub_text(ev.error_message), float(ev.duration_ms))


# =========================================================================== reading

def _decompress(blob: bytes | None, encoding: str) -> bytes | None:
    if blob is None:
        return None
    if encoding == "zlib":
        return zlib.decompress(blob)
    return bytes(blob)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    bucket_start: float
    key: str
    cost_usd: float  # priced requests only
    tokens: int  # all four kinds
    requests: int
    unpriced_requests: int


@dataclass(frozen=True, slots=True)
class TokenRate:
    minute_start: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    first_seen: float
    last_seen: float
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    unpriced_requests: int
    backends: tuple[str, ...]
    client: str | None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.last_seen - self.first_seen)


@dataclass(frozen=True, slots=True)
class RequestRow:
    request_id: str
    started_at: float
    ended_at: float
    session_id: str | None
    client: str | None
    route: str
    backend: str
    requested_model: str
    model: str
    stream: bool
    status: int
    error_type: str | None
    error_message: str | None
    stop_reason: str | None
    ttft_ms: float | None
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float | None  # None: unpriced
    attempts: int
    agent_id: str | None
    interrupted: bool = False
    plan: str | None = None  # "subscription": served under a Claude subscription (cost_usd 0)
    api_equiv_usd: float | None = None  # such a request's value at API prices (not money spent)

    @property
    def unpriced(self) -> bool:
        return self.cost_usd is None

    @property
    def subscription(self) -> bool:
        return self.plan == "subscription"


@dataclass(frozen=True, slots=True)
class RequestDetail:
    row: RequestRow
    request_body: bytes | None  # decompressed, secrets scrubbed; None when not captured
    response_body: bytes | None
    captured: bool


@dataclass(frozen=True, slots=True)
class SubscriptionTotals:
    """Requests served under a Claude subscription in a period: their value at API prices."""

    requests: int
    api_equiv_usd: float


@dataclass(frozen=True, slots=True)
class TotalsRow:
    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float  # priced requests only
    unpriced_requests: int
    errors: int = 0
    bucket_start: float | None = None  # for by = day / hour
