"""The settings model: what ``config.toml`` says, as typed, frozen data (``parse.py`` builds it from the text,
``disk.py`` reads and writes the file).

The config never holds a secret: API keys live in the OS keychain (``auth = "keyring"``)
or in environment variables (``auth = "env:NAME"``).

A broken file stops whoever loads it with one ``ConfigError`` that names the file, the line
or key, and what to write instead; nothing ever starts half-configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.config.ledger import MetricsSettings, TeamLedger
from app.config.reading import is_loopback_url
from app.config.team import TeamConfig

# upstream connections one backend may hold open at once: a shared gateway serves hundreds of
# concurrent streams, and the 201st waiting for a free connection is what a cap of 200 did
DEFAULT_MAX_CONNECTIONS = 2000

BACKEND_KINDS = ("anthropic", "openai", "bedrock", "vertex")
KIND_NAMES = {"bedrock": "Bedrock", "vertex": "Vertex AI"}
AUTH_HELP = '"keyring", "env:NAME", "command:<a command that prints a token>", "client" or "none"'
BUDGET_PERIODS = ("day", "week", "month")
CAPTURE_MODES = ("off", "errors", "all")
DEFAULT_PORT = 8787
DEFAULT_MAX_BODY = 32 * 1024 * 1024
DEFAULT_TOKEN_TTL_S = 300.0
DEFAULT_OLLAMA_URL = "http://localhost:11434"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY
    allowed_origins: tuple[str, ...] = ()
    ping_interval_s: float = 10.0
    upstream_timeout_s: float = 600.0
    allowed_hosts: tuple[str, ...] = ()  # Host header names accepted besides loopback names and IP addresses


@dataclass(frozen=True)
class BackendConfig:
    id: str
    kind: str
    base_url: str
    auth: str = "keyring"
    models: tuple[str, ...] = ()
    max_output_tokens: int | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra, non-secret headers sent upstream
    local: bool | None = None  # None: guessed from the base URL (loopback = local = free)
    region: str | None = None  # bedrock, vertex
    project: str | None = None  # vertex
    profile: str | None = None  # bedrock: a profile of ~/.aws/config (None: botocore's default chain)
    token_ttl_s: float | None = None  # auth = "command:...": how long a printed token is used
    max_connections: int | None = None  # upstream connections open at once (None: DEFAULT_MAX_CONNECTIONS)
    quirks: tuple[str, ...] | None = None  # provider rules (app.config.providers); None: from its table

    @property
    def is_local(self) -> bool:
        if self.local is not None:
            return self.local
        return is_loopback_url(self.base_url)

    @property
    def env_var(self) -> str | None:
        return self.auth[4:] if self.auth.startswith("env:") else None

    @property
    def token_command(self) -> str | None:
        return self.auth[8:] if self.auth.startswith("command:") else None

    @property
    def default_base_url(self) -> str | None:
        """The endpoint a cloud kind uses when base_url is not written (None for other kinds)."""
        return cloud_base_url(self.kind, self.region)


def cloud_base_url(kind: str, region: str | None) -> str | None:
    if kind == "bedrock" and region:
        return f"https://bedrock-runtime.{region}.amazonaws.com"
    if kind == "vertex" and region:
        return "https://aiplatform.googleapis.com" if region == "global" else \
            f"https://{region}-aiplatform.googleapis.com"
    return None


def default_auth(kind: str) -> str:
    return {"bedrock": "aws", "vertex": "google"}.get(kind, "keyring")


@dataclass(frozen=True)
class ActiveSelection:
    backend: str
    model: str | None = None


@dataclass(frozen=True)
class BudgetConfig:
    scope: str  # "all" | "backend:<id>" | "session"; in team mode also "each-user" | "user:<email>" | "group:<name>"
    period: str  # day | week | month
    limit_usd: float
    warn_at: float = 0.8
    action: str = "block"  # block | warn | downgrade:<backend>,<model>
    blocked_message: str | None = None  # what a blocked user reads: whom to ask (team budgets)
    # count requests a Claude subscription paid for at their API-equivalent value (off by default:
    # they spend no money); such a budget charges the counter "plan+<scope>"
    include_subscription: bool = False

    @property
    def is_team_scope(self) -> bool:
        """A per-person or per-group budget (needs [team]): not one the single-user guard counts."""
        return self.scope == "each-user" or self.scope.startswith(("user:", "group:"))

    @property
    def label(self) -> str:
        return f"{self.scope} / {self.period} ${self.limit_usd:g}"

    @property
    def downgrade_to(self) -> tuple[str, str | None] | None:
        if not self.action.startswith("downgrade:"):
            return None
        target = self.action[len("downgrade:") :]
        backend, _, model = target.partition(",")
        return backend.strip(), (model.strip() or None)


@dataclass(frozen=True)
class PriceConfig:
    """A user's price for a model, in $ per million tokens."""

    model: str
    input: float
    output: float
    cache_write: float | None = None
    cache_read: float | None = None
    backend: str | None = None  # only for this backend, where given


@dataclass(frozen=True)
class LedgerSettings:
    capture: str = "off"  # off | errors | all
    capture_retention_days: int = 14
    retention_days: int | None = None  # None: keep everything
    team: TeamLedger = TeamLedger()  # [ledger] url, password, on_unreachable (app/config/ledger.py)


# the [routes] targets, in priority order
ROUTE_RULES = ("web_search", "long_context", "compaction", "subagent", "background", "think", "image")
DEFAULT_LONG_CONTEXT = 60_000


@dataclass(frozen=True)
class RouteTarget:
    """Where a routing rule sends a request: a backend, and the model to ask it for (None: the
    model the client asked for, or the backend's first listed model)."""

    backend: str
    model: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.backend},{self.model}" if self.model else self.backend

    @classmethod
    def parse(cls, spec: str) -> RouteTarget:
        backend, _, model = spec.partition(",")
        return cls(backend.strip(), model.strip() or None)


@dataclass(frozen=True)
class RoutesConfig:
    """The ``[routes]`` section: which backend serves which kind of request, and where to fail over."""

    background: RouteTarget | None = None
    think: RouteTarget | None = None
    subagent: RouteTarget | None = None  # Claude Code's subagents (its hints, or the agent-id header)
    compaction: RouteTarget | None = None  # /compact and auto-compaction (Claude Code's hints)
    long_context: RouteTarget | None = None
    web_search: RouteTarget | None = None
    image: RouteTarget | None = None
    long_context_threshold: int = DEFAULT_LONG_CONTEXT
    fallback: tuple[RouteTarget, ...] = ()
    breaker_failures: int = 3  # consecutive failures that open a backend's circuit breaker
    breaker_cooldown_s: float = 30.0  # the first cooling period; it doubles on each failed trial
    breaker_max_cooldown_s: float = 300.0

    def target(self, rule: str) -> RouteTarget | None:
        return getattr(self, rule)

    def to_table(self) -> dict[str, Any]:
        """The section as ``save_section`` writes it (None removes a key)."""
        t: dict[str, Any] = {r: (self.target(r).spec if self.target(r) else None) for r in ROUTE_RULES}  # type: ignore[union-attr]
        t["long_context_threshold"] = (self.long_context_threshold
                                       if self.long_context_threshold != DEFAULT_LONG_CONTEXT else None)
        t["fallback"] = [f.spec for f in self.fallback] if self.fallback else None
        return t


@dataclass(frozen=True)
class OllamaSettings:
    url: str = DEFAULT_OLLAMA_URL  # where the local Ollama server listens


@dataclass(frozen=True)
class Config:
    path: Path | None
    gateway: GatewaySettings
    backends: tuple[BackendConfig, ...]
    active: ActiveSelection
    budgets: tuple[BudgetConfig, ...] = ()
    prices: tuple[PriceConfig, ...] = ()
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    ollama: OllamaSettings = field(default_factory=OllamaSettings)
    routes: RoutesConfig = field(default_factory=RoutesConfig)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)  # [metrics] (app/config/ledger.py)
    team: TeamConfig | None = None  # the [team] section: team mode

    def backend(self, backend_id: str) -> BackendConfig | None:
        for b in self.backends:
            if b.id == backend_id:
                return b
        return None

    def with_active(self, backend: str, model: str | None) -> Config:
        return replace(self, active=ActiveSelection(backend, model))
