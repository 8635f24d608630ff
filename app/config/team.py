"""The ``[team]`` and ``[[team.groups]]`` sections of ``config.toml``.

    [team]
    identity = ["iap", "keys"]        # tried in order
    iap_audience = "/projects/123456789/global/backendServices/987654321"
    ...
    [[team.groups]]
    name = "eng"
    members = ["*@corp.example", "group:engineering"]
    backends = ["anthropic", "ollama"]
    models = ["claude-sonnet-*", "qwen3-*"]
    max_output_tokens = 32000

Errors are ``ConfigError``s in the same words and shape as the rest of the file's (path, line,
what is wrong, what to write), made with ``app.config``'s own helpers. ``load_team`` reads a
whole config text; ``parse_team`` takes the already-loaded TOML table, for ``parse_config``.
Team budget scopes (``each-user``, ``user:EMAIL``, ``group:NAME``) are checked by
``check_budget_scopes``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from app.config.admin import AdminKey, parse_admin
from app.config.login import LoginConfig, parse_login
from app.config.managed import TelemetryConfig, parse_managed_settings, parse_telemetry
from app.config.reading import ConfigError, Where, get_key, secure_url, unknown_keys

# the identity sources a [team] may list, in the order a request is checked when all are on
SOURCES = ("iap", "alb", "cloudflare", "oidc", "keys")
IAP_JWKS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"  # Google IAP's signing keys

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer/[A-Za-z0-9/_.\-]+$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_CLAIM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.\-/]*$")

# the settings each identity source needs (all of them) and may use
_NEEDS = {"iap": ("iap_audience",), "alb": ("alb_arn",), "cloudflare": ("cloudflare_team", "cloudflare_audience"),
          "oidc": ("oidc_issuer", "oidc_audience"), "keys": ()}
_MAY = {"iap": ("iap_audience", "iap_jwks_url"), "alb": ("alb_arn", "alb_region", "alb_keys_url"),
        "cloudflare": ("cloudflare_team", "cloudflare_audience", "cloudflare_certs_url"),
        "oidc": ("oidc_issuer", "oidc_audience", "oidc_jwks_url"), "keys": ()}
_EXAMPLE = {"iap_audience": '"/projects/123456789/global/backendServices/987654321"',
            "alb_arn": '"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"',
            "cloudflare_team": '"corp" (for corp.cloudflareaccess.com)',
            "cloudflare_audience": "the Access application's AUD tag",
            "oidc_issuer": '"https://accounts.google.com"', "oidc_audience": '"patchbay"'}


@dataclass(frozen=True)
class GroupPolicy:
    """One ``[[team.groups]]``. ``backends`` / ``models`` None: any (the key is not written)."""

    name: str
    members: tuple[str, ...] = ()  # e-mail globs, or "group:PATTERN" for the IdP's groups claim
    backends: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    max_output_tokens: int | None = None
    # [team.groups.managed_settings]: served at GET /managed/settings (app/team/managed.py)
    managed_settings: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class TeamConfig:
    identity: tuple[str, ...]
    iap_audience: str | None = None
    iap_jwks_url: str = IAP_JWKS_URL
    alb_arn: str | None = None
    alb_region: str | None = None
    alb_keys_url: str | None = None
    cloudflare_team: str | None = None
    cloudflare_audience: str | None = None
    cloudflare_certs_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    user_claim: str = "email"
    groups_claim: str | None = "groups"
    clock_skew_s: float = 30.0
    groups: tuple[GroupPolicy, ...] = ()
    admin_keys: tuple[AdminKey, ...] = ()  # [[team.admin_keys]]: the Admin API's keys (app/config/admin.py)
    admin_groups: tuple[str, ...] = ()  # people in these groups may use the Admin API
    login: LoginConfig | None = None  # [team.login]: Claude Code's /login (app/team/login/; parsed in app/config/login.py)
    telemetry: TelemetryConfig = TelemetryConfig()  # [team.telemetry] (app/config/managed.py)

    def group(self, name: str) -> GroupPolicy | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None


_STR_KEYS = ("iap_audience", "iap_jwks_url", "alb_arn", "alb_region", "alb_keys_url", "cloudflare_team",
             "cloudflare_audience", "cloudflare_certs_url", "oidc_issuer", "oidc_audience", "oidc_jwks_url",
             "user_claim", "groups_claim")
_KNOWN = set(_STR_KEYS) | {"identity", "clock_skew_s", "groups", "admin_keys", "admin_groups", "login", "telemetry"}
_GROUP_KNOWN = {"name", "members", "backends", "models", "max_output_tokens", "managed_settings"}


def load_team(text: str, path: Path | None = None) -> TeamConfig | None:
    """The ``[team]`` section of a whole config file (None when there is none), its groups, and
    the team scopes of its ``[[budgets]]``, checked against its ``[[backends]]``."""
    where = Where(path, text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path or '<config>'}: this is not valid TOML ({exc}). Fix that line.") from None
    ids: set[str] = {b["id"] for b in raw.get("backends", []) if isinstance(b, dict) and isinstance(b.get("id"), str)}
    team = parse_team(raw.get("team"), where, ids)
    check_budget_scopes(raw.get("budgets", []), team, ids, where)
    return team


def parse_team(t: Any, where: Where, backend_ids: Iterable[str] | None = None) -> TeamConfig | None:
    if t is None:
        return None
    if not isinstance(t, dict):
        raise where.fail("[team] must be a table", "Write it as a [team] section.", key="team")
    head = where.line_of(r"^\s*\[\s*team\s*\]")
    start = (head or 1) - 1

    def at(key: str) -> int | None:
        return where.line_of(rf"^\s*{re.escape(key)}\s*=", start=start) or head

    unknown_keys(t, _KNOWN, "team.", where, start=start)
    identity = get_key(t, "identity", list, where, "team.", None, line=at("identity"))
    if identity is None:
        raise where.fail("[team] does not say how users are identified",
                         f'Write identity = ["keys"] (or any of {", ".join(repr(s) for s in SOURCES)}, '
                         "tried in order).",
                         line=head, key="team.identity")
    if not identity or not all(isinstance(s, str) for s in identity):
        raise where.fail(f"team.identity is {identity!r}",
                         f'List one or more of {", ".join(repr(s) for s in SOURCES)}, e.g. identity = ["iap", "keys"].',
                         line=at("identity"))
    for s in identity:
        if s not in SOURCES:
            raise where.fail(f"team.identity names the unknown source {s!r}",
                             f'Use any of {", ".join(repr(x) for x in SOURCES)}.', line=at("identity"))
    if len(set(identity)) != len(identity):
        raise where.fail("team.identity names a source twice", "List each source once.", line=at("identity"))
    values: dict[str, Any] = {}
    for key in _STR_KEYS:
        v = get_key(t, key, str, where, "team.", None, line=at(key))
        if v is not None and not v.strip():
            raise where.fail(f"team.{key} is empty", "Write a value, or remove the line.", line=at(key))
        values[key] = v.strip() if isinstance(v, str) else v
    for source in SOURCES:
        for key in _NEEDS[source]:
            if source in identity and values[key] is None:
                raise where.fail(f'team.identity lists "{source}" but team.{key} is not set',
                                 f"Write {key} = {_EXAMPLE[key]}.", line=at("identity"))
        for key in _MAY[source]:
            if source not in identity and values[key] is not None:
                raise where.fail(f'team.{key} is set but team.identity does not list "{source}"',
                                 f'Add "{source}" to identity, or remove the line.', line=at(key))
    for key in ("iap_jwks_url", "alb_keys_url", "cloudflare_certs_url", "oidc_jwks_url", "oidc_issuer"):
        v = values[key]
        if v is not None and not secure_url(v):
            raise where.fail(f"team.{key} is {v!r}",
                             "Write an https:// address (plain http only to this machine's loopback).", line=at(key))
    _check_source_values(values, where, at)
    skew = get_key(t, "clock_skew_s", (int, float), where, "team.", 30.0, line=at("clock_skew_s"))
    if not 0 <= skew <= 300:
        raise where.fail(f"team.clock_skew_s is {skew!r}", "Write a number of seconds between 0 and 300 (30 is usual).",
                         line=at("clock_skew_s"))
    groups = _parse_groups(t.get("groups", []), where, set(backend_ids) if backend_ids is not None else None)
    admin_keys, admin_groups = parse_admin(t, where, at)
    login = parse_login(t.get("login"), where, identity=tuple(identity), issuer=values["oidc_issuer"])
    return TeamConfig(
        identity=tuple(identity), iap_jwks_url=values["iap_jwks_url"] or IAP_JWKS_URL,
        user_claim=values["user_claim"] or "email",
        groups_claim=values["groups_claim"] or "groups",
        clock_skew_s=float(skew), groups=groups, admin_keys=admin_keys, admin_groups=admin_groups,
        login=login,
        telemetry=parse_telemetry(t.get("telemetry"), lambda what, fix: where.fail(
            what, fix, line=where.line_of(r"^\s*\[\s*team\.telemetry\s*\]"), key="team.telemetry")),
        **{k: values[k] for k in _STR_KEYS if k not in ("iap_jwks_url", "user_claim", "groups_claim")})


def _check_source_values(values: dict[str, Any], where: Where, at: Callable[[str], int | None]) -> None:
    """The identity sources' own settings: an ALB's ARN and region agree, a Cloudflare team name, claim names."""
    arn = values["alb_arn"]
    if arn is not None and not _ARN_RE.match(arn):
        raise where.fail(f"team.alb_arn is {arn!r}", f"Write the load balancer's ARN, e.g. {_EXAMPLE['alb_arn']}.",
                         line=at("alb_arn"))
    region = values["alb_region"]
    if region is not None and not _REGION_RE.match(region):
        raise where.fail(f"team.alb_region is {region!r}", 'Write the AWS region, e.g. "us-east-1".',
                         line=at("alb_region"))
    if arn is not None and region is not None and arn.split(":")[3] != region:
        raise where.fail(f"team.alb_region {region!r} is not the region in alb_arn ({arn.split(':')[3]!r})",
                         "Make them agree, or leave alb_region out (the ARN names it).", line=at("alb_region"))
    if values["cloudflare_team"] is not None and not re.match(r"^[A-Za-z0-9.\-]+$", values["cloudflare_team"]):
        raise where.fail(f"team.cloudflare_team is {values['cloudflare_team']!r}",
                         'Write the team name, e.g. "corp" for corp.cloudflareaccess.com.', line=at("cloudflare_team"))
    for key in ("user_claim", "groups_claim"):
        v = values[key]
        if v is not None and not _CLAIM_RE.match(v):
            raise where.fail(f"team.{key} is {v!r}", 'Write a claim name, e.g. "email" or "groups".', line=at(key))


def _parse_groups(items: Any, where: Where, ids: set[str] | None) -> tuple[GroupPolicy, ...]:
    if not isinstance(items, list):
        raise where.fail("team.groups must be [[team.groups]] tables",
                         "Write each group as its own [[team.groups]] section.", key="team.groups")
    out: list[GroupPolicy] = []
    seen: set[str] = set()
    start = 0
    for n, g in enumerate(items, 1):
        line = where.line_of(r"^\s*\[\[\s*team\.groups\s*\]\]", start=start)
        start = line or start
        ctx = f"team.groups[{n}]."
        if not isinstance(g, dict):
            raise where.fail(f"group #{n} is not a table", "Write it as a [[team.groups]] section.", key=ctx)

        def at(key: str, start: int = start, line: int | None = line) -> int | None:
            return where.line_of(rf"^\s*{key}\s*=", start=start) or line

        unknown_keys(g, _GROUP_KNOWN, ctx, where, start=start)
        name = g.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise where.fail(f"group #{n} has {'no name' if name is None else f'the name {name!r}'}",
                             'Give every [[team.groups]] a name of letters, digits, "-", "_" or ".", '
                             'e.g. name = "eng".',
                             line=at("name") if name is not None else line)
        if name in seen:
            raise where.fail(f'the group name "{name}" is used twice', "Give each group its own name.", line=at("name"))
        seen.add(name)
        lists: dict[str, tuple[str, ...] | None] = {}
        for key, example in (("members", '["*@corp.example", "group:engineering"]'),
                             ("backends", '["anthropic", "ollama"]'), ("models", '["claude-sonnet-*", "qwen3-*"]')):
            v = g.get(key)
            if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v)):
                raise where.fail(f'group "{name}" {key} is {v!r}',
                                 f"Write a list of names or patterns, e.g. {key} = {example}.", line=at(key))
            lists[key] = tuple(x.strip() for x in v) if v is not None else None
        if ids is not None:
            for b in lists["backends"] or ():
                if not any(c in b for c in "*?[") and b not in ids:
                    raise where.fail(f'group "{name}" allows the backend {b!r}, which is not configured',
                                     f"Write one of: {', '.join(sorted(ids))} (or a pattern such as \"*\").",
                                     line=at("backends"))
        mot = g.get("max_output_tokens")
        if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool) or mot <= 0):
            raise where.fail(f'group "{name}" max_output_tokens is {mot!r}', "Write a positive whole number.",
                             line=at("max_output_tokens"))
        settings_line = where.line_of(r"^\s*\[\s*team\.groups\.managed_settings", start=start) or line

        def allowed(model: str, patterns: tuple[str, ...] | None = lists["models"]) -> bool:
            return _allows(patterns, model)

        def fail(what: str, fix: str, at_line: int | None = settings_line) -> ConfigError:
            return where.fail(what, fix, line=at_line)

        managed = parse_managed_settings(name, g.get("managed_settings"), allowed, fail)
        out.append(GroupPolicy(name, lists["members"] or (), lists["backends"], lists["models"], mot, managed))
    return tuple(out)


def _allows(patterns: tuple[str, ...] | None, model: str) -> bool:
    """``models`` patterns allow ``model``, matched as the gateway matches it (app/team/policy.py)."""
    from app.config.model_ids import canonical_model, light_model
    return allows_model(GroupPolicy("_", models=patterns), [model, light_model(model), canonical_model(model)])


def check_budget_scopes(items: Any, team: TeamConfig | None, backend_ids: Iterable[str], where: Where) -> None:
    """The scopes of ``[[budgets]]``: ``all``, ``backend:ID``, and in team mode also ``each-user``,
    ``user:EMAIL`` and ``group:NAME`` (a group of ``[[team.groups]]``)."""
    if not isinstance(items, list):
        return
    ids = set(backend_ids)
    start = 0
    for n, b in enumerate(items, 1):
        line = where.line_of(r"^\s*\[\[\s*budgets\s*\]\]", start=start)
        start = line or start
        if not isinstance(b, dict):
            continue
        problem = budget_scope_problem(b.get("scope", "all"), team, ids)
        if problem:
            raise where.fail(f"budget #{n} {problem[0]}", problem[1], line=line)


def budget_scope_problem(scope: Any, team: TeamConfig | None, ids: set[str]) -> tuple[str, str] | None:
    """(what is wrong, what to write), or None for a usable scope."""
    team_help = ' "each-user", "user:EMAIL", "group:NAME",' if team is not None else ""
    fix = f'Write scope = "all",{team_help} "session" or "backend:<id>".'
    if not isinstance(scope, str):
        return f"has scope = {scope!r}", fix
    kind, _, value = scope.partition(":")
    if scope in ("all", "session"):  # session: a cap for each Claude Code session (app/budgets/session_caps.py)
        return None
    if kind == "backend" and value:
        return None if value in ids else (f"is for the backend {value!r}, which is not configured",
                                          f"Write one of: {', '.join(sorted(ids))}.")
    if scope == "each-user" or (kind in ("user", "group") and value):
        if team is None:
            return (f'has the team scope "{scope}", but there is no [team] section',
                    'Add [team] with identity = [...] so users are known, or write scope = "all".')
        if kind == "user" and "@" not in value and team.user_claim == "email":
            return f'has scope = "{scope}"', 'Write the user\'s e-mail, e.g. scope = "user:alice@corp.example".'
        if kind == "group" and team.group(value) is None:
            names = ", ".join(g.name for g in team.groups) or "none yet"
            return (f'is for the group {value!r}, which [[team.groups]] does not define',
                    f"Write one of the groups ({names}), or add a [[team.groups]] with that name.")
        return None
    return f"has scope = {scope!r}", fix


def pattern_match(pattern: str, value: str) -> bool:
    """A group's ``members`` / ``backends`` / ``models`` pattern against a name: shell-style, any case."""
    return fnmatchcase(value.lower(), pattern.lower())


def allows_model(group: GroupPolicy, models: Sequence[str]) -> bool:
    """``group`` may use a model known by any of these names (the gateway's check and the config's)."""
    return group.models is None or any(pattern_match(p, m) for p in group.models for m in models if m)
