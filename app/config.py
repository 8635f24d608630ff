"""The settings model: parse and validate ``config.toml`` (``app/config_file.py`` reads and writes the file).

The config never holds a secret: API keys live in the OS keychain (``auth = "keyring"``)
or in environment variables (``auth = "env:NAME"``).

A broken file stops whoever loads it with one ``ConfigError`` that names the file, the line
or key, and what to write instead; nothing ever starts half-configured.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.team_config import TEAM_KEYS, MetricsSettings, TeamLedger, parse_metrics, parse_team_ledger

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


class ConfigError(Exception):
    """A config file that cannot be used. ``str()`` is the whole message for the user."""


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
    quirks: tuple[str, ...] | None = None  # provider rules (app.provider_quirks); None: from its table

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
    team: TeamLedger = TeamLedger()  # [ledger] url, password, on_unreachable (app/team_config.py)


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
    def parse(cls, spec: str) -> "RouteTarget":
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
    metrics: MetricsSettings = field(default_factory=MetricsSettings)  # [metrics] (app/team_config.py)
    team: Any = None  # an app.team.config.TeamConfig when the file has a [team] section (team mode)

    def backend(self, backend_id: str) -> BackendConfig | None:
        for b in self.backends:
            if b.id == backend_id:
                return b
        return None

    def with_active(self, backend: str, model: str | None) -> "Config":
        return replace(self, active=ActiveSelection(backend, model))


# --------------------------------------------------------------------------- helpers


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(\[[^\]]+\]|[^/:]+)", url)
    return m is not None and is_loopback_host(m.group(1))


class _Where:
    """Finds the line a key or value sits on, for messages that point at it."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, *patterns: str, start: int = 0) -> int | None:
        for i in range(start, len(self.lines)):
            line = self.lines[i].split("#", 1)[0]
            if all(re.search(p, line) for p in patterns):
                return i + 1
        return None

    def backend_line(self, backend_id: str) -> int | None:
        return self.line_of(r"^\s*id\s*=", re.escape(f'"{backend_id}"')) or self.line_of(
            r"^\s*id\s*=", re.escape(f"'{backend_id}'")
        )

    def fail(self, what: str, fix: str, line: int | None = None, key: str | None = None) -> ConfigError:
        where = str(self.path) if self.path else "<config>"
        if line:
            where += f", line {line}"
        elif key:
            where += f", key {key}"
        return ConfigError(f"{where}: {what}. {fix}")


# numeric keys and the values that work: (lowest, highest, an example). A value outside breaks
# the gateway (ping_interval_s = 0 floods the client with pings, upstream_timeout_s = 0 answers
# every request 504, max_body_mb <= 0 refuses every body), so `patchbay check` refuses it.
_RANGES: dict[str, tuple[float, float, str]] = {
    "gateway.max_body_mb": (0.001, 1024, "32"),
    "gateway.ping_interval_s": (0.05, 3600, "10"),
    "gateway.upstream_timeout_s": (0.1, 86400, "600"),
    "ledger.capture_retention_days": (0, 36500, "14"),
    "ledger.retention_days": (1, 36500, "365"),
}  # [routes] numbers have their own checks in _parse_routes; nan anywhere is refused by _check_values


def _get(table: dict[str, Any], key: str, types: type | tuple[type, ...], where: _Where, ctx: str,
         default: Any = None, line: int | None = None) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and types in (int, float, (int, float)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        name_map = {"str": "a string", "int": "a whole number", "float": "a number", "list": "a list",
                    "bool": "true or false", "dict": "a table"}
        nice = " or ".join(name_map.get(n, n) for n in names.split(" or "))
        raise where.fail(f"{ctx}{key} is {value!r}", f"Write {nice} there.",
                         line=line or where.line_of(rf"^\s*{re.escape(key)}\s*="), key=f"{ctx}{key}")
    bounds = _RANGES.get(f"{ctx}{key}")
    if bounds is not None and isinstance(value, (int, float)):
        lo, hi, example = bounds
        if not lo <= value <= hi:  # also false for nan
            raise where.fail(f"{ctx}{key} is {value!r}, outside the range that works ({lo:g} to {hi:g})",
                             f"Write a number in that range, e.g. {key} = {example}.",
                             line=line or where.line_of(rf"^\s*{re.escape(key)}\s*="), key=f"{ctx}{key}")
    return value


def _check_values(node: Any, where: _Where, path: str = "", depth: int = 0) -> None:
    """Refuse nan and infinite numbers anywhere (no setting means them), and values nested
    deeper than any setting needs."""
    if depth > 16:
        raise where.fail(f"{path or 'a value'} is nested {depth} levels deep",
                         "No Patchbay setting nests that deep; fix or remove that value.",
                         line=where.line_of(rf"^\s*{re.escape(path.rsplit('.', 1)[-1])}\s*=") if path else None)
    if isinstance(node, float) and not math.isfinite(node):
        key = path.rsplit(".", 1)[-1]
        raise where.fail(f"{path} is {node!r}", "Write an ordinary number there.",
                         line=where.line_of(rf"^\s*{re.escape(key)}\s*="), key=path)
    if isinstance(node, dict):
        for k, v in node.items():
            _check_values(v, where, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(node, list):
        for v in node:
            _check_values(v, where, path, depth + 1)


# --------------------------------------------------------------------------- parsing


def parse_config(text: str, path: Path | None = None) -> Config:
    where = _Where(path, text)
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        deep = next((i + 1 for i, ln in enumerate(where.lines) if ln.count("[") + ln.count("{") > 50), None)
        raise ConfigError(
            f"{path or '<config>'}{f', line {deep}' if deep else ''}: a value is nested far deeper than any "
            "Patchbay setting needs. Fix or remove that value."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path or '<config>'}: this is not valid TOML ({exc}). Fix that line, or move the file "
            "away to get a fresh default config on the next start."
        ) from None

    _check_values(raw, where)
    known_top = {"gateway", "backends", "active", "budgets", "prices", "ledger", "ollama", "routes", "metrics",
                 "team"}
    for key in raw:
        if key not in known_top:
            raise where.fail(
                f"unknown section or key [{key}]",
                f"Use only {', '.join(sorted(known_top))}; check the spelling.",
                line=where.line_of(rf"^\s*\[*\s*{re.escape(key)}\b"), key=key,
            )

    from app.config_backends import parse_active, parse_backends

    gateway = _parse_gateway(raw.get("gateway", {}), where, text)
    backends = parse_backends(raw.get("backends", []), where)
    ids = {b.id for b in backends}
    active = parse_active(raw.get("active"), backends, where)
    team = _parse_team(raw.get("team"), backends, where)
    budgets = _parse_budgets(raw.get("budgets", []), ids, where, team)
    prices = _parse_prices(raw.get("prices", []), ids, where)
    ledger = _parse_ledger(raw.get("ledger", {}), where)
    ollama = _parse_ollama(raw.get("ollama", {}), where)
    routes = _parse_routes(raw.get("routes", {}), ids, where)
    metrics = parse_metrics(raw.get("metrics", {}), lambda problem, fix, key: where.fail(
        problem, fix, line=where.line_of(rf"^\s*{key}\s*="), key=f"metrics.{key}"))
    return Config(path, gateway, tuple(backends), active, tuple(budgets), tuple(prices), ledger, ollama,
                  routes, metrics, team)


def _parse_team(t: Any, backends: list[BackendConfig], where: _Where) -> Any:
    """``[team]`` and ``[[team.groups]]`` (app.team.config), or None: single-user mode. In team
    mode no backend may forward the caller's own key (auth = "client"): the caller's credential
    is their team identity, never an upstream key."""
    if t is None:
        return None
    from app.team.config import parse_team

    team = parse_team(t, where, {b.id for b in backends})
    for b in backends:
        if b.auth == "client":
            raise where.fail(
                f'backend "{b.id}" has auth = "client", which a team gateway cannot use',
                "In team mode the caller's credential says who they are and is never sent upstream: give the "
                'backend its own key (auth = "keyring", "env:NAME" or "command:...").',
                line=where.backend_line(b.id))
    return team


def _parse_gateway(t: Any, where: _Where, text: str) -> GatewaySettings:
    if not isinstance(t, dict):
        raise where.fail("[gateway] must be a table", "Write it as a [gateway] section.", key="gateway")
    known = {"host", "port", "max_body_mb", "allowed_origins", "ping_interval_s", "upstream_timeout_s",
             "allowed_hosts"}
    _unknown_keys(t, known, "gateway.", where)
    host = _get(t, "host", str, where, "gateway.", "127.0.0.1")
    port = _get(t, "port", int, where, "gateway.", DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise where.fail(f"gateway.port {port} is out of range", "Use a port between 1024 and 65535, e.g. 8787.",
                         line=where.line_of(r"^\s*port\s*="))
    max_mb = _get(t, "max_body_mb", (int, float), where, "gateway.", DEFAULT_MAX_BODY / (1024 * 1024))
    origins = _get(t, "allowed_origins", list, where, "gateway.", [])
    if not all(isinstance(o, str) for o in origins):
        raise where.fail("gateway.allowed_origins must list strings", 'Write e.g. ["http://localhost:3000"].',
                         line=where.line_of(r"^\s*allowed_origins\s*="))
    hosts = _get(t, "allowed_hosts", list, where, "gateway.", [])
    if not all(isinstance(h, str) and h.strip() for h in hosts):
        raise where.fail("gateway.allowed_hosts must list host names", 'Write e.g. ["patchbay.example.lan"].',
                         line=where.line_of(r"^\s*allowed_hosts\s*="))
    ping = _get(t, "ping_interval_s", (int, float), where, "gateway.", 10.0)
    up_to = _get(t, "upstream_timeout_s", (int, float), where, "gateway.", 600.0)
    return GatewaySettings(host, port, int(max_mb * 1024 * 1024), tuple(origins), float(ping), float(up_to),
                           tuple(h.strip().lower() for h in hosts))


def _unknown_keys(t: dict[str, Any], known: set[str], ctx: str, where: _Where, start: int = 0) -> None:
    for key in t:
        if key not in known:
            raise where.fail(
                f"unknown key {ctx}{key}",
                f"Known keys here: {', '.join(sorted(known))}.",
                line=where.line_of(rf"^\s*{re.escape(key)}\s*=", start=start), key=f"{ctx}{key}",
            )


def _parse_budgets(items: Any, ids: set[str], where: _Where, team: Any = None) -> list[BudgetConfig]:
    if not isinstance(items, list):
        raise where.fail("budgets must be [[budgets]] tables", "Write each budget as a [[budgets]] section.",
                         key="budgets")
    out = []
    known = {"scope", "period", "limit_usd", "warn_at", "action", "blocked_message", "include_subscription"}
    start = 0
    for n, t in enumerate(items, 1):
        line = where.line_of(r"^\s*\[\[\s*budgets\s*\]\]", start=start)
        start = line or start
        ctx = f"budgets[{n}]."
        if not isinstance(t, dict):
            raise where.fail(f"budget #{n} is not a table", "Write it as a [[budgets]] section.", key=ctx)
        _unknown_keys(t, known, ctx, where, start=start)
        scope = t.get("scope", "all")
        from app.team.config import budget_scope_problem

        problem = budget_scope_problem(scope, team, ids)
        if problem is not None:
            raise where.fail(f"budget #{n} {problem[0]}", problem[1], line=line)
        blocked = t.get("blocked_message")
        if blocked is not None and (not isinstance(blocked, str) or not blocked.strip()):
            raise where.fail(f"budget #{n} has blocked_message = {blocked!r}",
                             'Write a sentence for the blocked user, e.g. "Ask #platform-team for more.".', line=line)
        period = t.get("period", "day")
        if period not in BUDGET_PERIODS:
            raise where.fail(f"budget #{n} has period = {period!r}", 'Write "day", "week" or "month".', line=line)
        limit = t.get("limit_usd")
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise where.fail(f"budget #{n} has limit_usd = {limit!r}", "Write a positive amount, e.g. limit_usd = 20.0.",
                             line=line)
        warn_at = t.get("warn_at", 0.8)
        if not isinstance(warn_at, (int, float)) or isinstance(warn_at, bool) or not 0 < warn_at <= 1:
            raise where.fail(f"budget #{n} has warn_at = {warn_at!r}", "Write a fraction between 0 and 1, e.g. 0.8.",
                             line=line)
        action = t.get("action", "block")
        ok = isinstance(action, str) and (action in ("block", "warn") or action.startswith("downgrade:"))
        if ok and action.startswith("downgrade:"):
            target = action[len("downgrade:"):].partition(",")[0].strip()
            if target not in ids:
                raise where.fail(f"budget #{n} downgrades to the backend {target!r}, which is not configured",
                                 f'Write action = "downgrade:<backend>,<model>" with one of: {", ".join(sorted(ids))}.',
                                 line=line)
        if not ok:
            raise where.fail(f"budget #{n} has action = {action!r}",
                             'Write "block", "warn" or "downgrade:<backend>,<model>".', line=line)
        plan = t.get("include_subscription", False)
        if not isinstance(plan, bool):
            raise where.fail(f"budget #{n} has include_subscription = {plan!r}",
                             "Write true (count what a Claude subscription's requests are worth at API prices) or "
                             "false.", line=line)
        out.append(BudgetConfig(scope, period, float(limit), float(warn_at), action,
                                blocked.strip() if isinstance(blocked, str) else None, plan))
    return out


def _parse_prices(items: Any, ids: set[str], where: _Where) -> list[PriceConfig]:
    if not isinstance(items, list):
        raise where.fail("prices must be [[prices]] tables", "Write each price as a [[prices]] section.", key="prices")
    out = []
    known = {"model", "input", "output", "cache_write", "cache_read", "backend"}
    for n, t in enumerate(items, 1):
        ctx = f"prices[{n}]."
        line = where.line_of(r"^\s*\[\[\s*prices\s*\]\]")
        if not isinstance(t, dict) or not isinstance(t.get("model"), str):
            raise where.fail(f"price #{n} names no model", 'Write model = "<name>" with input and output $ per million tokens.',
                             line=line, key=ctx)
        _unknown_keys(t, known, ctx, where)
        vals: dict[str, float | None] = {}
        for k in ("input", "output", "cache_write", "cache_read"):
            v = t.get(k)
            if v is None and k in ("input", "output"):
                raise where.fail(f"price for {t['model']!r} has no {k}", f"Write {k} = <$ per million tokens>.",
                                 line=line)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise where.fail(f"price for {t['model']!r} has {k} = {v!r}", "Write a number ≥ 0 ($ per million tokens).",
                                 line=line)
            vals[k] = None if v is None else float(v)
        backend = t.get("backend")
        if backend is not None and backend not in ids:
            raise where.fail(f"price for {t['model']!r} names the backend {backend!r}, which is not configured",
                             f"Write one of: {', '.join(sorted(ids))}, or leave backend out.", line=line)
        inp, outp = vals["input"], vals["output"]
        assert inp is not None and outp is not None  # both required above
        out.append(PriceConfig(t["model"], inp, outp, vals["cache_write"], vals["cache_read"], backend))
    return out


def _parse_ledger(t: Any, where: _Where) -> LedgerSettings:
    if not isinstance(t, dict):
        raise where.fail("[ledger] must be a table", "Write it as a [ledger] section.", key="ledger")
    _unknown_keys(t, {"capture", "capture_retention_days", "retention_days"} | TEAM_KEYS, "ledger.", where)
    capture = t.get("capture", "off")
    if capture not in CAPTURE_MODES:
        raise where.fail(f"ledger.capture is {capture!r}", 'Write "off", "errors" or "all".',
                         line=where.line_of(r"^\s*capture\s*="))
    crd = _get(t, "capture_retention_days", int, where, "ledger.", 14)
    rd = _get(t, "retention_days", int, where, "ledger.", None)
    team = parse_team_ledger(t, lambda problem, fix, key: where.fail(
        problem, fix, line=where.line_of(rf"^\s*{key}\s*="), key=f"ledger.{key}"))
    return LedgerSettings(capture, crd, rd, team)


def _parse_ollama(t: Any, where: _Where) -> OllamaSettings:
    if not isinstance(t, dict):
        raise where.fail("[ollama] must be a table", "Write it as an [ollama] section.", key="ollama")
    _unknown_keys(t, {"url"}, "ollama.", where)
    section = where.line_of(r"^\s*\[\s*ollama\s*\]")
    line = where.line_of(r"^\s*url\s*=", start=(section or 1) - 1)
    url = _get(t, "url", str, where, "ollama.", DEFAULT_OLLAMA_URL, line=line)
    if not re.match(r"^https?://[^\s/]+/?$", url):
        raise where.fail(f"ollama.url is {url!r}",
                         f'Write the address Ollama listens on, e.g. url = "{DEFAULT_OLLAMA_URL}" (no path).',
                         line=line, key="ollama.url")
    return OllamaSettings(url.rstrip("/"))


def _parse_routes(t: Any, ids: set[str], where: _Where) -> RoutesConfig:
    if not isinstance(t, dict):
        raise where.fail("[routes] must be a table", "Write it as a [routes] section.", key="routes")
    known = set(ROUTE_RULES) | {"long_context_threshold", "fallback", "breaker_failures", "breaker_cooldown_s",
                                "breaker_max_cooldown_s"}
    section = where.line_of(r"^\s*\[\s*routes\s*\]") or 1
    _unknown_keys(t, known, "routes.", where, start=section - 1)

    def line(key: str) -> int | None:
        return where.line_of(rf"^\s*{re.escape(key)}\s*=", start=section - 1)

    def target(value: Any, key: str) -> RouteTarget:
        if not isinstance(value, str) or not value.strip() or value.strip().startswith(","):
            raise where.fail(f"routes.{key} is {value!r}",
                             'Write "<backend>" or "<backend>,<model>", e.g. "ollama,qwen3-coder:30b".', line=line(key))
        tgt = RouteTarget.parse(value)
        if tgt.backend not in ids:
            raise where.fail(f"routes.{key} names the backend {tgt.backend!r}, which is not configured",
                             f"Write one of: {', '.join(sorted(ids))} (before the comma), or add that backend.",
                             line=line(key))
        return tgt

    rules = {r: target(t[r], r) for r in ROUTE_RULES if r in t}
    threshold = _get(t, "long_context_threshold", int, where, "routes.", DEFAULT_LONG_CONTEXT,
                     line=line("long_context_threshold"))
    if threshold < 1:
        raise where.fail(f"routes.long_context_threshold is {threshold}",
                         "Write a positive number of input tokens, e.g. 60000.", line=line("long_context_threshold"))
    fallback = t.get("fallback", [])
    if isinstance(fallback, str):
        fallback = [fallback]
    if not isinstance(fallback, list):
        raise where.fail(f"routes.fallback is {fallback!r}",
                         'Write a list, e.g. fallback = ["openrouter,deepseek/deepseek-chat", "ollama"].',
                         line=line("fallback"))
    targets = tuple(target(f, "fallback") for f in fallback)
    failures = _get(t, "breaker_failures", int, where, "routes.", 3, line=line("breaker_failures"))
    cooldown = _get(t, "breaker_cooldown_s", (int, float), where, "routes.", 30.0, line=line("breaker_cooldown_s"))
    cap = _get(t, "breaker_max_cooldown_s", (int, float), where, "routes.", max(300.0, cooldown),
               line=line("breaker_max_cooldown_s"))
    if failures < 1 or cooldown <= 0 or cap < cooldown:
        raise where.fail("the circuit breaker settings are out of range",
                         "Write breaker_failures >= 1, breaker_cooldown_s > 0 and breaker_max_cooldown_s >= "
                         "breaker_cooldown_s (e.g. 3, 30 and 300).",
                         line=line("breaker_failures") or line("breaker_cooldown_s") or section)
    return RoutesConfig(**rules, long_context_threshold=threshold, fallback=targets, breaker_failures=failures,
                        breaker_cooldown_s=float(cooldown), breaker_max_cooldown_s=float(cap))


# --------------------------------------------------------------------------- files
