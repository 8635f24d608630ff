"""Team-gateway settings: ``[metrics]``, and the team-ledger keys of ``[ledger]``: where the shared PostgreSQL ledger is, how to log in to it,
and what budgets do while it cannot be reached. ``config.py`` calls ``parse_team_ledger`` for the
``[ledger]`` table and keeps the result in ``LedgerSettings``.

    [ledger]
    url = "postgresql://patchbay@db.internal:5432/patchbay"   # absent: the local SQLite file
    password = "env:PATCHBAY_DB_PASSWORD"                       # or "keyring", or "none" (.pgpass / peer auth)
    on_unreachable = "open"                                     # "open" | "closed"
    reserve_output_tokens = 0                                   # 0: from recent outputs (p95), else 4096
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEAM_KEYS = {"url", "password", "on_unreachable", "reserve_output_tokens", "instance"}
ON_UNREACHABLE = ("open", "closed")
DEFAULT_RESERVE_OUTPUT = 4096  # output tokens reserved per request when the user's recent outputs say nothing

_URL = re.compile(r"^postgres(?:ql)?://[^\s]+$")
_PASSWORD = re.compile(r"^(none|keyring|env:[A-Za-z_][A-Za-z0-9_]*)$")
_SECRET_PARAMS = ("password", "sslpassword")  # libpq's connection parameters that are secrets


@dataclass(frozen=True)
class TeamLedger:
    url: str | None = None
    password: str = "none"
    on_unreachable: str = "open"
    reserve_output_tokens: int = 0  # 0: automatic
    instance: str | None = None  # the name each row carries; None: host name and port


Fail = Callable[[str, str, str], Exception]  # (problem, what to do, key) -> the ConfigError to raise


def parse_team_ledger(t: dict[str, Any], fail: Fail) -> TeamLedger:
    url = t.get("url")
    if url is not None:
        if not isinstance(url, str) or not _URL.match(url.strip()):
            raise fail(f"ledger.url is {url!r}",
                       'Write a PostgreSQL address, e.g. url = "postgresql://patchbay@db.internal:5432/patchbay", '
                       "or leave url out to keep the local SQLite ledger.", "url")
        in_query = sorted({k.strip().lower() for k, _ in parse_qsl(urlsplit(url.strip()).query,
                                                                    keep_blank_values=True)} & set(_SECRET_PARAMS))
        if in_query or re.match(r"^postgres(?:ql)?://[^/@\s]*:[^/@\s]*@", url):
            where = f" (?{in_query[0]}=)" if in_query else ""
            raise fail(f"ledger.url holds a password{where}",
                       'Take the password out of the address and write password = "env:PATCHBAY_DB_PASSWORD" '
                       '(or "keyring"), or keep password = "none" and give it to PostgreSQL through the '
                       "PGPASSWORD environment variable or a .pgpass file; the config never holds a secret.", "url")
        url = url.strip()
    password = t.get("password", "none")
    if not isinstance(password, str) or not _PASSWORD.match(password):
        raise fail(f"ledger.password is {password!r}",
                   'Write "env:NAME" (an environment variable), "keyring" (the OS keychain: '
                   '`patchbay key set ledger`) or "none" (libpq\'s .pgpass or peer authentication).', "password")
    on_unreachable = t.get("on_unreachable", "open")
    if on_unreachable not in ON_UNREACHABLE:
        raise fail(f"ledger.on_unreachable is {on_unreachable!r}",
                   'Write "open" (requests pass while budgets cannot be checked) or "closed" (they get 503).',
                   "on_unreachable")
    reserve = t.get("reserve_output_tokens", 0)
    if not isinstance(reserve, int) or isinstance(reserve, bool) or not 0 <= reserve <= 1_000_000:
        raise fail(f"ledger.reserve_output_tokens is {reserve!r}",
                   "Write a whole number of output tokens to reserve per request, e.g. 8192, or 0 to take the "
                   "95th percentile of your recent outputs.", "reserve_output_tokens")
    instance = t.get("instance")
    if instance is not None and (not isinstance(instance, str) or not re.match(r"^[\w.:\-]{1,64}$", instance)):
        raise fail(f"ledger.instance is {instance!r}",
                   "Write a short name for this gateway (letters, digits, '.', ':', '-'), or leave it out to use "
                   "the host name and port.", "instance")
    return TeamLedger(url, password, on_unreachable, reserve, instance)


@dataclass(frozen=True)
class MetricsSettings:
    public: bool = False  # GET /metrics without the gateway token (a scraper inside a private network)


def parse_metrics(t: Any, fail: Fail) -> MetricsSettings:
    if not isinstance(t, dict):
        raise fail("[metrics] must be a table", "Write it as a [metrics] section.", "metrics")
    for key in t:
        if key != "public":
            raise fail(f"unknown key metrics.{key}", "The only key here is public = true | false.", key)
    public = t.get("public", False)
    if not isinstance(public, bool):
        raise fail(f"metrics.public is {public!r}", "Write true (GET /metrics needs no token) or false.", "public")
    return MetricsSettings(public)
