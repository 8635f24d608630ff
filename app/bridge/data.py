"""Plain data the bridge hands to the views: snapshots, never live gateway objects.

No Qt and no I/O here; the views render these, the bridge builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StreamPiece:
    """Coalesced content for one block of one request; ``kind`` adds "meta" (request headers and
    footers the dashboard draws) and "error" to the gateway's delta kinds."""

    session_id: str  # "" for requests without a session id
    request_id: str
    index: int
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    started_at: float
    session_id: str  # "" when none
    backend: str
    model: str
    requested_model: str
    route: str
    status: int
    error_type: str | None
    error_message: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: no price known for the model
    ttft_ms: float | None
    duration_ms: float
    stop_reason: str | None = None
    client: str | None = None
    stream: bool = True
    in_flight: bool = False
    api_equiv_usd: float | None = None  # served under a Claude subscription: its value at API prices (cost 0)

    @property
    def ok(self) -> bool:
        return self.error_type is None and self.status < 400

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True, slots=True)
class RequestDetail:
    record: RequestRecord
    fields: tuple[tuple[str, str], ...]  # label, value, in display order
    request_body: str | None = None
    response_body: str | None = None


@dataclass(frozen=True, slots=True)
class SessionView:
    session_id: str  # "" for requests without one
    label: str  # the working directory's name, else the first prompt, else the short id
    cwd: str | None
    prompt: str | None
    backend: str
    model: str
    pinned_backend: str | None
    pinned_model: str | None
    requests: int
    in_flight: int
    errors: int
    input_tokens: int
    output_tokens: int
    tokens_per_s: float
    cost_usd: float
    unpriced: bool  # some request had no known price
    first_seen: float
    last_seen: float
    client: str | None = None
    estimated: bool = False  # a request streams: its output tokens and cost are estimates until it ends
    api_equiv_usd: float = 0.0  # requests a Claude subscription paid for: their value at API prices, not spend

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class BackendView:
    id: str
    kind: str
    base_url: str
    auth: str
    models: tuple[str, ...]
    max_output_tokens: int | None
    headers: tuple[tuple[str, str], ...]
    local: bool | None
    is_local: bool
    has_key: bool | None  # None: the backend takes no stored key
    health: str = "unknown"  # ok | failing | open (circuit breaker: skipped while cooling) | unknown
    last_error: str | None = None
    open_until: float | None = None  # wall clock, while the breaker is open
    failures: int = 0  # consecutive failures the breaker counted


@dataclass(frozen=True, slots=True)
class BudgetView:
    label: str
    scope: str
    period: str
    spent_usd: float
    limit_usd: float
    warn_at: float
    fraction: float
    state: str  # ok | warn | limit
    resets_at: float | None
    action: str


@dataclass(frozen=True, slots=True)
class GatewayView:
    state: str  # starting | running | paused | stopped | failed
    url: str | None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerView:
    """The status bar's word on a team ledger that is away (None while all is well)."""

    text: str  # "Ledger offline · 12 rows in the spool · budgets open"
    tip: str  # the full reason
    level: str  # warn | error (error: budgets refuse requests)


@dataclass(frozen=True, slots=True)
class UserMessage:
    """Something the user must read: shown in the window's banner (and as a tray notification
    when ``notify``). ``action`` names a fix the window offers as a button."""

    level: str  # info | warn | error
    title: str
    text: str
    action: str | None = None  # e.g. "settings", "backends", "spend", "config"
    key: str | None = None  # messages with the same key replace each other
    notify: bool = False


@dataclass(frozen=True, slots=True)
class TestOutcome:
    backend_id: str
    ok: bool
    ttft_ms: float | None
    status: int | None
    message: str


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    bucket_start: float
    key: str
    cost_usd: float
    tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class TopSession:
    session_id: str
    label: str
    cost_usd: float
    tokens: int
    requests: int
    last_seen: float | None
    backends: str = ""


@dataclass(frozen=True)
class SpendData:
    bucket: str  # hour | day | month
    group_by: str  # backend | model
    since: float
    until: float
    bucket_seconds: float
    series: tuple[SeriesPoint, ...]
    tokens_per_minute: tuple[tuple[float, int, int], ...]  # minute start, input tokens (with cache), output
    top_sessions: tuple[TopSession, ...]
    budgets: tuple[BudgetView, ...]
    total_cost: float = 0.0
    total_requests: int = 0
    unpriced_requests: int = 0
    keys: tuple[str, ...] = field(default=())
    api_equiv_usd: float = 0.0  # requests a Claude subscription paid for, at API prices: not in total_cost
    plan_requests: int = 0


@dataclass(frozen=True, slots=True)
class ClaudeCodeView:
    connected: bool
    settings_path: str
    env: tuple[tuple[str, str], ...]
    # connected | not_connected | other_gateway | outdated | changed | invalid | unknown
    state: str = "unknown"
    message: str = ""
    recorded: bool = False  # Patchbay connected it and can put the file back (Disconnect)
    edited_since: bool = False
    options: tuple[str, ...] = ()  # nonessential, aliases, statusline: in the file now
    aliases: tuple[tuple[str, str], ...] = ()  # (haiku|sonnet|opus, "backend,model") in the file now
    path_note: str = ""  # why this file (e.g. PATCHBAY_HOME is set, yet this is the everyday settings.json)
    credential: str = ""  # which credential Claude Code will send after Connect, in a sentence


@dataclass(frozen=True, slots=True)
class SettingsView:
    port: int
    host: str
    capture: str
    budgets: tuple[BudgetView, ...]
    start_at_login: bool
    start_at_login_supported: bool
    config_path: str
    data_dir: str
    ollama_url: str = ""
