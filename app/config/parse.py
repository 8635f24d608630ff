"""``config.toml`` text to a checked ``Config``: each section parsed, cross-checked, and every problem one
``ConfigError`` naming the line and what to write instead."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from app.config.backends import parse_active, parse_backends
from app.config.ledger import TEAM_KEYS, parse_metrics, parse_team_ledger
from app.config.model import (
    BUDGET_PERIODS,
    CAPTURE_MODES,
    DEFAULT_LONG_CONTEXT,
    DEFAULT_MAX_BODY,
    DEFAULT_OLLAMA_URL,
    DEFAULT_PORT,
    ROUTE_RULES,
    BackendConfig,
    BudgetConfig,
    Config,
    GatewaySettings,
    LedgerSettings,
    OllamaSettings,
    PriceConfig,
    RoutesConfig,
    RouteTarget,
)
from app.config.reading import ConfigError, Where, check_values, get_key, unknown_keys
from app.config.team import TeamConfig, budget_scope_problem, parse_team

# --------------------------------------------------------------------------- parsing


def parse_config(text: str, path: Path | None = None) -> Config:
    where = Where(path, text)
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

    check_values(raw, where)
    known_top = {"gateway", "backends", "active", "budgets", "prices", "ledger", "ollama", "routes", "metrics",
                 "team"}
    for key in raw:
        if key not in known_top:
            raise where.fail(
                f"unknown section or key [{key}]",
                f"Use only {', '.join(sorted(known_top))}; check the spelling.",
                line=where.line_of(rf"^\s*\[*\s*{re.escape(key)}\b"), key=key,
            )


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


def _parse_team(t: Any, backends: list[BackendConfig], where: Where) -> TeamConfig | None:
    """``[team]`` and ``[[team.groups]]`` (app.config.team), or None: single-user mode. In team
    mode no backend may forward the caller's own key (auth = "client"): the caller's credential
    is their team identity, never an upstream key."""
    if t is None:
        return None
    team = parse_team(t, where, {b.id for b in backends})
    for b in backends:
        if b.auth == "client":
            raise where.fail(
                f'backend "{b.id}" has auth = "client", which a team gateway cannot use',
                "In team mode the caller's credential says who they are and is never sent upstream: give the "
                'backend its own key (auth = "keyring", "env:NAME" or "command:...").',
                line=where.backend_line(b.id))
    return team


def _parse_gateway(t: Any, where: Where, text: str) -> GatewaySettings:
    if not isinstance(t, dict):
        raise where.fail("[gateway] must be a table", "Write it as a [gateway] section.", key="gateway")
    known = {"host", "port", "max_body_mb", "allowed_origins", "ping_interval_s", "upstream_timeout_s",
             "allowed_hosts"}
    unknown_keys(t, known, "gateway.", where)
    host = get_key(t, "host", str, where, "gateway.", "127.0.0.1")
    port = get_key(t, "port", int, where, "gateway.", DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise where.fail(f"gateway.port {port} is out of range", "Use a port between 1024 and 65535, e.g. 8787.",
                         line=where.line_of(r"^\s*port\s*="))
    max_mb = get_key(t, "max_body_mb", (int, float), where, "gateway.", DEFAULT_MAX_BODY / (1024 * 1024))
    origins = get_key(t, "allowed_origins", list, where, "gateway.", [])
    if not all(isinstance(o, str) for o in origins):
        raise where.fail("gateway.allowed_origins must list strings", 'Write e.g. ["http://localhost:3000"].',
                         line=where.line_of(r"^\s*allowed_origins\s*="))
    hosts = get_key(t, "allowed_hosts", list, where, "gateway.", [])
    if not all(isinstance(h, str) and h.strip() for h in hosts):
        raise where.fail("gateway.allowed_hosts must list host names", 'Write e.g. ["patchbay.example.lan"].',
                         line=where.line_of(r"^\s*allowed_hosts\s*="))
    ping = get_key(t, "ping_interval_s", (int, float), where, "gateway.", 10.0)
    up_to = get_key(t, "upstream_timeout_s", (int, float), where, "gateway.", 600.0)
    return GatewaySettings(host, port, int(max_mb * 1024 * 1024), tuple(origins), float(ping), float(up_to),
                           tuple(h.strip().lower() for h in hosts))


def _parse_budgets(items: Any, ids: set[str], where: Where, team: TeamConfig | None = None) -> list[BudgetConfig]:
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
        unknown_keys(t, known, ctx, where, start=start)
        scope = t.get("scope", "all")
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


def _parse_prices(items: Any, ids: set[str], where: Where) -> list[PriceConfig]:
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
        unknown_keys(t, known, ctx, where)
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


def _parse_ledger(t: Any, where: Where) -> LedgerSettings:
    if not isinstance(t, dict):
        raise where.fail("[ledger] must be a table", "Write it as a [ledger] section.", key="ledger")
    unknown_keys(t, {"capture", "capture_retention_days", "retention_days"} | TEAM_KEYS, "ledger.", where)
    capture = t.get("capture", "off")
    if capture not in CAPTURE_MODES:
        raise where.fail(f"ledger.capture is {capture!r}", 'Write "off", "errors" or "all".',
                         line=where.line_of(r"^\s*capture\s*="))
    crd = get_key(t, "capture_retention_days", int, where, "ledger.", 14)
    rd = get_key(t, "retention_days", int, where, "ledger.", None)
    team = parse_team_ledger(t, lambda problem, fix, key: where.fail(
        problem, fix, line=where.line_of(rf"^\s*{key}\s*="), key=f"ledger.{key}"))
    return LedgerSettings(capture, crd, rd, team)


def _parse_ollama(t: Any, where: Where) -> OllamaSettings:
    if not isinstance(t, dict):
        raise where.fail("[ollama] must be a table", "Write it as an [ollama] section.", key="ollama")
    unknown_keys(t, {"url"}, "ollama.", where)
    section = where.line_of(r"^\s*\[\s*ollama\s*\]")
    line = where.line_of(r"^\s*url\s*=", start=(section or 1) - 1)
    url = get_key(t, "url", str, where, "ollama.", DEFAULT_OLLAMA_URL, line=line)
    if not re.match(r"^https?://[^\s/]+/?$", url):
        raise where.fail(f"ollama.url is {url!r}",
                         f'Write the address Ollama listens on, e.g. url = "{DEFAULT_OLLAMA_URL}" (no path).',
                         line=line, key="ollama.url")
    return OllamaSettings(url.rstrip("/"))


def _parse_routes(t: Any, ids: set[str], where: Where) -> RoutesConfig:
    if not isinstance(t, dict):
        raise where.fail("[routes] must be a table", "Write it as a [routes] section.", key="routes")
    known = set(ROUTE_RULES) | {"long_context_threshold", "fallback", "breaker_failures", "breaker_cooldown_s",
                                "breaker_max_cooldown_s"}
    section = where.line_of(r"^\s*\[\s*routes\s*\]") or 1
    unknown_keys(t, known, "routes.", where, start=section - 1)

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
    threshold = get_key(t, "long_context_threshold", int, where, "routes.", DEFAULT_LONG_CONTEXT,
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
    failures = get_key(t, "breaker_failures", int, where, "routes.", 3, line=line("breaker_failures"))
    cooldown = get_key(t, "breaker_cooldown_s", (int, float), where, "routes.", 30.0, line=line("breaker_cooldown_s"))
    cap = get_key(t, "breaker_max_cooldown_s", (int, float), where, "routes.", max(300.0, cooldown),
               line=line("breaker_max_cooldown_s"))
    if failures < 1 or cooldown <= 0 or cap < cooldown:
        raise where.fail("the circuit breaker settings are out of range",
                         "Write breaker_failures >= 1, breaker_cooldown_s > 0 and breaker_max_cooldown_s >= "
                         "breaker_cooldown_s (e.g. 3, 30 and 300).",
                         line=line("breaker_failures") or line("breaker_cooldown_s") or section)
    return RoutesConfig(**rules, long_context_threshold=threshold, fallback=targets, breaker_failures=failures,
                        breaker_cooldown_s=float(cooldown), breaker_max_cooldown_s=float(cap))


# --------------------------------------------------------------------------- files
