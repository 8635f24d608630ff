"""``[[backends]]`` and ``[active]`` of ``config.toml``: each backend checked (its id, kind, URL,
auth, models, limits) with a message naming the line and what to write instead. Called by
``app.config.parse_config``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.config.model import (
    _ID_RE,
    AUTH_HELP,
    BACKEND_KINDS,
    DEFAULT_MAX_CONNECTIONS,
    KIND_NAMES,
    ActiveSelection,
    BackendConfig,
    cloud_base_url,
    default_auth,
)
from app.config.providers import NAMES as QUIRK_NAMES
from app.config.reading import Where, unknown_keys

_KNOWN = {"id", "kind", "base_url", "auth", "models", "max_output_tokens", "headers", "local", "region", "project",
          "profile", "token_ttl_s", "max_connections", "quirks"}
At = Callable[[str], "int | None"]  # a key's line in this backend's table


def parse_backends(items: Any, where: Where) -> list[BackendConfig]:
    if not isinstance(items, list):
        raise where.fail("backends must be a list of [[backends]] tables",
                         "Write each backend as its own [[backends]] section.", key="backends")
    out: list[BackendConfig] = []
    seen: dict[str, int] = {}
    for n, t in enumerate(items, 1):
        if not isinstance(t, dict):
            raise where.fail(f"backend #{n} is not a table", "Write it as a [[backends]] section.",
                             key=f"backends[{n}].")
        out.append(_parse_backend(n, t, seen, where))
    return out


def _parse_backend(n: int, t: dict[str, Any], seen: dict[str, int], where: Where) -> BackendConfig:
    """One [[backends]] table, checked key by key; ``seen`` holds the ids before it (and gets this one)."""
    ctx = f"backends[{n}]."
    bid = t.get("id")
    if not isinstance(bid, str) or not _ID_RE.match(bid):
        raise where.fail(
            f"backend #{n} has {'no id' if bid is None else f'the id {bid!r}'}",
            'Give every [[backends]] an id of letters, digits, "-", "_" or ".", e.g. id = "deepseek".',
            line=where.line_of(r"^\s*\[\[\s*backends\s*\]\]") if bid is None else where.line_of(r"^\s*id\s*="),
            key=ctx + "id",
        )
    line = where.backend_line(bid)
    start = (line or 1) - 1

    def at(key: str, start: int = start, line: int | None = line) -> int | None:
        return where.line_of(rf"^\s*{key}\s*=", start=start) or line

    unknown_keys(t, _KNOWN, f"backend {bid!r}: ", where, start=start)
    if bid in seen:
        raise where.fail(
            f'the backend id "{bid}" is used twice (backends #{seen[bid]} and #{n})',
            "Give each backend its own id.", line=where.line_of(r"^\s*id\s*=", re.escape(bid), start=line or 0),
        )
    seen[bid] = n
    kind = t.get("kind")
    if kind not in BACKEND_KINDS:
        raise where.fail(
            f'backend "{bid}" has the unknown kind {kind!r}',
            'Write kind = "anthropic" (any Anthropic-format endpoint), kind = "openai" (OpenAI-compatible '
            'Chat Completions), kind = "bedrock" (AWS Bedrock) or kind = "vertex" (Google Vertex AI).',
            line=at("kind") if kind is not None else line,
        )
    cloud = kind in ("bedrock", "vertex")
    region, project, profile = _cloud_place(t, bid, kind, where, at, line)
    base_url = t.get("base_url")
    if base_url is None and cloud:
        base_url = cloud_base_url(kind, region)
    if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+", base_url):
        raise where.fail(
            f'backend "{bid}" has {"no" if base_url is None else "an invalid"} base_url',
            'Write the endpoint, e.g. base_url = "https://api.deepseek.com/v1".',
            line=at("base_url") if base_url is not None else line,
        )
    auth, ttl = _auth(t, bid, kind, where, at)
    models, mot, headers, local, maxc = _limits(t, bid, kind, where, line)
    quirks = _quirks(t.get("quirks"), bid, kind, where, at("quirks"))
    return BackendConfig(bid, kind, base_url.rstrip("/"), auth, tuple(models), mot,
                         tuple(headers.items()), local, region, project, profile, ttl, maxc, quirks)


def _cloud_place(t: dict[str, Any], bid: str, kind: str, where: Where, at: At,
                 line: int | None) -> tuple[str | None, str | None, str | None]:
    """``region``, ``project`` and ``profile``: where a Bedrock or Vertex backend's models run."""
    cloud = kind in ("bedrock", "vertex")
    region = t.get("region")
    if region is not None and (not isinstance(region, str) or not re.match(r"^[a-z0-9][a-z0-9-]*$", region)):
        raise where.fail(f'backend "{bid}" has region = {region!r}',
                         'Write the cloud region, e.g. region = "us-east1" (Vertex) or "us-west-2" (Bedrock).',
                         line=at("region"))
    if cloud and region is None:
        example = '"us-east-1"' if kind == "bedrock" else '"us-east5" (or "global")'
        raise where.fail(f'backend "{bid}" (kind = "{kind}") has no region',
                         f"Write the region its models run in, e.g. region = {example}.", line=line)
    project = t.get("project")
    if project is not None and (not isinstance(project, str) or not re.match(r"^[a-z0-9][a-z0-9:.\-]*$", project)):
        raise where.fail(f'backend "{bid}" has project = {project!r}',
                         'Write the Google Cloud project id, e.g. project = "my-project-123".', line=at("project"))
    if kind == "vertex" and project is None:
        raise where.fail(f'backend "{bid}" (kind = "vertex") has no project',
                         'Write the Google Cloud project id, e.g. project = "my-project-123".', line=line)
    profile = t.get("profile")
    if profile is not None and (not isinstance(profile, str) or not profile.strip()):
        raise where.fail(f'backend "{bid}" has profile = {profile!r}',
                         'Write the name of a profile in ~/.aws/config, e.g. profile = "work", or leave it out.',
                         line=at("profile"))
    for key, value, only in (("project", project, "vertex"), ("profile", profile, "bedrock")):
        if value is not None and kind != only:
            raise where.fail(f'backend "{bid}" sets {key}, which only a kind = "{only}" backend uses',
                             "Remove the line, or change the kind.", line=at(key))
    if region is not None and not cloud:
        raise where.fail(f'backend "{bid}" sets region, which only bedrock and vertex backends use',
                         "Remove the line, or change the kind.", line=at("region"))
    return region, project, profile


def _auth(t: dict[str, Any], bid: str, kind: str, where: Where, at: At) -> tuple[str, float | None]:
    """``auth`` (one of Patchbay's secret forms, never the secret) and a token command's ``token_ttl_s``."""
    cloud = kind in ("bedrock", "vertex")
    auth = t.get("auth", default_auth(kind))
    ok_auth = isinstance(auth, str) and (
        auth in ("keyring", "client", "none", "aws", "google")
        or re.match(r"^env:[A-Za-z_][A-Za-z0-9_]*$", auth) is not None
        or (auth.startswith("command:") and bool(auth[8:].strip()))
    )
    if not ok_auth:
        raise where.fail(
            f'backend "{bid}" has auth = {auth!r}',
            f"Use {AUTH_HELP} (the key itself never goes in this file).", line=at("auth"),
        )
    if (auth == "aws" and kind != "bedrock") or (auth == "google" and kind != "vertex"):
        raise where.fail(f'backend "{bid}" has auth = "{auth}", which only a kind = '
                         f'"{"bedrock" if auth == "aws" else "vertex"}" backend can use',
                         f"Use {AUTH_HELP}.", line=at("auth"))
    if auth == "client" and cloud:
        raise where.fail(f'backend "{bid}" (kind = "{kind}") has auth = "client"',
                         f'A cloud backend signs with its own credentials: use auth = "{default_auth(kind)}", '
                         '"env:NAME", "keyring" or "command:...".', line=at("auth"))
    ttl = t.get("token_ttl_s")
    if ttl is not None:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
            raise where.fail(f'backend "{bid}" has token_ttl_s = {ttl!r}',
                             "Write how many seconds a token from the command stays good, e.g. 300.",
                             line=at("token_ttl_s"))
        if not auth.startswith("command:"):
            raise where.fail(f'backend "{bid}" sets token_ttl_s without a token command',
                             'It applies to auth = "command:..." only: remove it, or use a command.',
                             line=at("token_ttl_s"))
        ttl = float(ttl)
    return auth, ttl


def _limits(t: dict[str, Any], bid: str, kind: str, where: Where,
            line: int | None) -> tuple[list[str], int | None, dict[str, str], bool | None, int | None]:
    """``models``, ``max_output_tokens``, ``headers``, ``local`` and ``max_connections``."""
    cloud = kind in ("bedrock", "vertex")
    models = t.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise where.fail(f'backend "{bid}" models must be a list of names',
                         'Write e.g. models = ["deepseek-chat"].',
                         line=where.line_of(r"^\s*models\s*=", start=(line or 1) - 1))
    if cloud and not models:
        example = ('"us.anthropic.claude-sonnet-4-5-20250929-v1:0"' if kind == "bedrock"
                   else '"claude-sonnet-4-5@20250929"')
        raise where.fail(f'backend "{bid}" (kind = "{kind}") lists no models',
                         f"Claude Code's model names mean nothing to {KIND_NAMES[kind]}: write the model ids to "
                         f"use, e.g. models = [{example}]. The first serves requests that name no other.",
                         line=where.line_of(r"^\s*models\s*=", start=(line or 1) - 1) if "models" in t else line)
    mot = t.get("max_output_tokens")
    if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool) or mot <= 0):
        raise where.fail(f'backend "{bid}" max_output_tokens is {mot!r}', "Write a positive whole number.",
                         line=where.line_of(r"^\s*max_output_tokens\s*=", start=(line or 1) - 1))
    headers = t.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise where.fail(f'backend "{bid}" headers must be a table of strings',
                         'Write e.g. headers = { "HTTP-Referer" = "https://example.com" }.',
                         line=where.line_of(r"^\s*headers\s*=", start=(line or 1) - 1))
    for h in headers:
        if h.lower() in ("authorization", "x-api-key", "api-key", "proxy-authorization"):
            raise where.fail(f'backend "{bid}" puts the secret header {h} in the config',
                             'Remove it and use auth = "keyring" or auth = "env:NAME" instead.',
                             line=where.line_of(re.escape(h), start=(line or 1) - 1))
    local = t.get("local")
    if local is not None and not isinstance(local, bool):
        raise where.fail(f'backend "{bid}" local is {local!r}', "Write true or false.",
                         line=where.line_of(r"^\s*local\s*=", start=(line or 1) - 1))
    maxc = t.get("max_connections")
    if maxc is not None and (not isinstance(maxc, int) or isinstance(maxc, bool) or not 1 <= maxc <= 100_000):
        raise where.fail(f'backend "{bid}" max_connections is {maxc!r}',
                         f"Write how many upstream connections may be open at once, e.g. "
                         f"{DEFAULT_MAX_CONNECTIONS}, or leave it out.",
                         line=where.line_of(r"^\s*max_connections\s*=", start=(line or 1) - 1))
    return models, mot, headers, local, maxc


def _quirks(value: Any, bid: str, kind: str, where: Where, line: int | None) -> tuple[str, ...] | None:
    """``quirks = [...]``: provider rules that replace what ``app.config.providers`` finds."""
    if value is None:
        return None
    names = ", ".join(f'"{n}"' for n in QUIRK_NAMES)
    if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
        raise where.fail(f'backend "{bid}" has quirks = {value!r}',
                         f'Write a list of rule names ({names}), e.g. quirks = ["reasoning_content"], '
                         "or quirks = [] for none.", line=line)
    unknown = [q for q in value if q not in QUIRK_NAMES]
    if unknown:
        raise where.fail(f'backend "{bid}" names the unknown rule "{unknown[0]}" in quirks',
                         f"Known rules: {names}.", line=line)
    if kind != "openai":
        raise where.fail(f'backend "{bid}" (kind = "{kind}") sets quirks, which only kind = "openai" backends use',
                         "Remove the line, or change the kind.", line=line)
    return tuple(dict.fromkeys(value))


def parse_active(t: Any, backends: list[BackendConfig], where: Where) -> ActiveSelection:
    ids = [b.id for b in backends]
    if not backends:
        raise where.fail("no backend is configured",
                         'Add at least one [[backends]] section (kind = "anthropic" with auth = "client" '
                         "forwards to Anthropic with your own key).", key="backends")
    if t is None:
        return ActiveSelection(backends[0].id, None)
    if not isinstance(t, dict):
        raise where.fail("[active] must be a table", 'Write [active] with backend = "<id>".', key="active")
    unknown_keys(t, {"backend", "model"}, "active.", where)
    backend = t.get("backend")
    line = where.line_of(r"^\s*\[\s*active\s*\]")
    if backend not in ids:
        bline = None
        if line:
            bline = where.line_of(r"^\s*backend\s*=", start=line - 1)
        raise where.fail(
            f"[active] names the backend {backend!r}, which is not configured",
            f"Write one of: {', '.join(repr(i) for i in ids)}.", line=bline or line,
        )
    model = t.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise where.fail(f"active.model is {model!r}", "Write a model name, or leave the line out.",
                         line=where.line_of(r"^\s*model\s*=", start=(line or 1) - 1))
    return ActiveSelection(backend, model)
