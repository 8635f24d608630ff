"""``config.toml`` on disk: the default file, loading, and saving a change without losing the
user's comments or layout (tomlkit edits the document; the result is parsed before it replaces the
file, atomically, so a bad save never leaves a config that cannot load).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.config.model import ActiveSelection, BackendConfig, Config
from app.config.parse import parse_config
from app.config.reading import ConfigError

DEFAULT_CONFIG = '''\
# Patchbay configuration. This file never holds a secret: API keys live in your OS keychain
# (auth = "keyring", set them in the app or with `patchbay key set <backend>`) or in an
# environment variable (auth = "env:NAME").

[gateway]
host = "127.0.0.1"     # loopback only; any other address must be written here on purpose
port = 8787

# Anthropic itself, paid with the key Claude Code already sends (auth = "client").
[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "client"

# A local Ollama (>= 0.14 speaks the Anthropic API itself). Free unless you set a price.
# [[backends]]
# id = "ollama"
# kind = "anthropic"
# base_url = "http://localhost:11434"
# auth = "none"
# models = ["qwen3-coder:30b"]

# Any OpenAI-compatible provider.
# [[backends]]
# id = "deepseek"
# kind = "openai"
# base_url = "https://api.deepseek.com/v1"
# auth = "env:DEEPSEEK_API_KEY"
# models = ["deepseek-chat", "deepseek-reasoner"]
# max_output_tokens = 8192

# Claude on AWS Bedrock. auth = "aws" signs with your AWS credentials (environment, ~/.aws
# profiles, SSO: whatever the AWS CLI uses); or a Bedrock API key: auth = "env:AWS_BEARER_TOKEN_BEDROCK".
# [[backends]]
# id = "bedrock"
# kind = "bedrock"
# region = "us-east-1"
# auth = "aws"
# profile = "work"     # optional: a profile of ~/.aws/config
# models = ["us.anthropic.claude-sonnet-4-5-20250929-v1:0"]   # model id, inference profile or ARN

# Claude on Google Vertex AI, with your application-default credentials
# (`gcloud auth application-default login`, or GOOGLE_APPLICATION_CREDENTIALS).
# [[backends]]
# id = "vertex"
# kind = "vertex"
# project = "my-project-123"
# region = "us-east5"   # or "global"
# auth = "google"
# models = ["claude-sonnet-4-5@20250929"]

# A company gateway behind an identity-aware proxy: Patchbay runs the command for a token,
# keeps it for token_ttl_s seconds (refreshing it early), and runs it again after a 401.
# [[backends]]
# id = "company"
# kind = "anthropic"
# base_url = "https://llm-gateway.example.com"
# auth = "command:gcloud auth print-identity-token"
# token_ttl_s = 300

[active]
backend = "anthropic"
# model = "..."        # leave out to pass the model Claude Code asks for through unchanged

# The local Ollama the Monitor page watches (models, VRAM), and which backends are Ollama.
# [ollama]
# url = "http://localhost:11434"

# Send kinds of request elsewhere, and fail over when a backend is down. Each target is
# "<backend>" or "<backend>,<model>"; a rule left out is skipped. Priority: a model written
# "backend,model", a pin, then web_search > long_context > compaction > subagent > background >
# think > image > [active].
# [routes]
# compaction = "anthropic,claude-sonnet-4-5"  # /compact and auto-compaction
# subagent = "deepseek,deepseek-chat"        # Claude Code's subagents (Task/Agent tool)
# background = "ollama,qwen3-coder:30b"       # titles, summaries, side requests (see README)
# think = "anthropic,claude-opus-4-5"        # thinking enabled with a budget, or a high effort
# long_context = "openrouter,google/gemini-2.5-pro"
# long_context_threshold = 60000             # estimated input tokens
# web_search = "anthropic"                   # requests offering the web_search server tool
# image = "anthropic"                        # requests with an image in them
# fallback = ["deepseek,deepseek-chat", "ollama,qwen3-coder:30b"]   # tried in order on 429/5xx/timeouts
# breaker_failures = 3                       # failures in a row before a backend is skipped...
# breaker_cooldown_s = 30                    # ...for this long (doubling while it keeps failing)

# [[budgets]]
# scope = "all"        # or "backend:<id>"; with [team] also "each-user", "user:<email>", "group:<name>"
# period = "day"       # day | week | month
# limit_usd = 20.0
# warn_at = 0.8
# action = "block"     # block | warn | downgrade:<backend>,<model>
# include_subscription = false   # true: also count a Claude subscription's requests at their API price
'''


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file. Check the path, or leave out --config to use the default.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: this file is not UTF-8 text. Save it as UTF-8, or move it away to get a fresh "
                          "default config.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}). Check its permissions.") from None
    return parse_config(text, path)


def load_or_create(path: Path) -> Config:
    """Load the config at ``path``, writing the commented default there first if it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, DEFAULT_CONFIG)
    return load_config(path)


def atomic_write(path: Path, text: str | bytes, *, backup: bool = False) -> None:
    """Write ``text`` (``bytes`` are written exactly as given) to ``path`` so a crash leaves either
    the old file or the new one. An existing file keeps its permission bits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") if isinstance(text, bytes) else open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        if backup and path.exists():
            bak = path.with_name(path.name + ".bak")
            try:
                bak.write_bytes(path.read_bytes())
            except OSError:
                pass
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if exc.errno == 28:
            raise ConfigError(f"{path}: the disk is full, so the settings could not be saved. Free some space "
                              "and try again; the previous settings are unchanged.") from None
        raise ConfigError(f"{path}: could not be saved ({exc.strerror}). The previous settings are unchanged.") from None


# --------------------------------------------------------------------------- editing


def _doc(path: Path) -> Any:  # a tomlkit document
    import tomlkit

    return tomlkit.parse(path.read_text(encoding="utf-8"))


def _save_doc(path: Path, doc: Any) -> Config:
    import tomlkit

    text = tomlkit.dumps(doc)
    cfg = parse_config(text, path)  # never write a file we could not load again
    atomic_write(path, text, backup=True)
    return cfg


def save_active(path: Path, backend: str, model: str | None) -> Config:
    """Record the active backend/model in the file, keeping the user's comments and layout."""
    import tomlkit

    doc = _doc(path)
    table = doc.get("active")
    if table is None:
        table = tomlkit.table()
        doc["active"] = table
    table["backend"] = backend
    if model:
        table["model"] = model
    elif "model" in table:
        del table["model"]
    return _save_doc(path, doc)


def backend_to_table(b: BackendConfig) -> dict[str, Any]:
    t: dict[str, Any] = {"id": b.id, "kind": b.kind}
    for key in ("region", "project", "profile"):
        if getattr(b, key):
            t[key] = getattr(b, key)
    if b.base_url != b.default_base_url:  # a cloud kind's own endpoint is derived from its region
        t["base_url"] = b.base_url
    t["auth"] = b.auth
    if b.token_ttl_s is not None:
        t["token_ttl_s"] = b.token_ttl_s
    if b.max_connections is not None:
        t["max_connections"] = b.max_connections
    if b.models:
        t["models"] = list(b.models)
    if b.max_output_tokens:
        t["max_output_tokens"] = b.max_output_tokens
    if b.headers:
        t["headers"] = dict(b.headers)
    if b.local is not None:
        t["local"] = b.local
    if b.quirks is not None:
        t["quirks"] = list(b.quirks)
    return t


def save_backends(path: Path, backends: Iterable[BackendConfig], active: ActiveSelection | None = None) -> Config:
    """Replace the [[backends]] list (order matters) and optionally [active]."""
    import tomlkit

    doc = _doc(path)
    aot = tomlkit.aot()
    tbl = None
    for b in backends:
        tbl = tomlkit.table()
        for k, v in backend_to_table(b).items():
            tbl[k] = v
        aot.append(tbl)
    if tbl is not None:
        tbl.add(tomlkit.nl())  # a blank line after the last backend: the next table never sticks to it
    doc["backends"] = aot
    if active is not None:
        t = tomlkit.table()
        t["backend"] = active.backend
        if active.model:
            t["model"] = active.model
        doc["active"] = t
    return _save_doc(path, doc)


def save_section(path: Path, key: str, value: Any) -> Config:
    """Replace one top-level key (``gateway``, ``budgets``, ``ledger``, ``prices``)."""
    import tomlkit

    doc = _doc(path)
    if isinstance(value, list):
        aot = tomlkit.aot()
        for item in value:
            tbl = tomlkit.table()
            for k, v in item.items():
                tbl[k] = v
            aot.append(tbl)
        doc[key] = aot
    elif isinstance(value, dict):
        existing = doc.get(key)
        if existing is None:
            existing = tomlkit.table()
            doc[key] = existing
        for k, v in value.items():
            if v is None:
                if k in existing:
                    del existing[k]
            else:
                existing[k] = v
    else:
        doc[key] = value
    return _save_doc(path, doc)
