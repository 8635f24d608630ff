"""Who may use the Admin API (``app/admin/api.py``): ``[[team.admin_keys]]`` and ``[team] admin_groups``.

    [team]
    admin_groups = ["platform-admins"]      # people in these groups (the IdP's groups claim, a key's
                                            # --group, or a [[team.groups]] name) may change caps
    [[team.admin_keys]]
    id = "finops"                           # audited as admin-key:finops
    key = "env:PB_ADMIN_KEY"                # the key itself lives in the environment, never in the file
    read_only = true                        # optional: GET only

A key is at least 32 characters (as the reference gateway asks). The value is read from the
environment when the gateway starts (``resolve_admin_keys``); a variable that is unset or too short
disables that key and the log says which (never the value).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config.reading import ConfigError, Where

log = logging.getLogger("patchbay.admin")

MIN_KEY_LEN = 32
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_ENV_RE = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
_KEY_KNOWN = {"id", "key", "read_only"}


@dataclass(frozen=True)
class AdminKey:
    id: str
    key: str  # "env:NAME": where the key is, not the key
    read_only: bool = False


def parse_admin(t: dict[str, Any], where: Where, at: Callable[[str], int | None]
                ) -> tuple[tuple[AdminKey, ...], tuple[str, ...]]:
    """``[[team.admin_keys]]`` and ``admin_groups`` of the ``[team]`` table ``t``."""
    groups = t.get("admin_groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
        raise where.fail(f"team.admin_groups is {groups!r}", 'Write a list of group names, e.g. ["platform-admins"].',
                         line=at("admin_groups"))
    items = t.get("admin_keys", [])
    if not isinstance(items, list):
        raise where.fail("team.admin_keys must be [[team.admin_keys]] tables",
                         "Write each key as its own [[team.admin_keys]] section.", key="team.admin_keys")
    keys: list[AdminKey] = []
    for n, k in enumerate(items, 1):
        line = where.line_of(r"^\s*\[\[\s*team\.admin_keys\s*\]\]")
        if not isinstance(k, dict) or set(k) - _KEY_KNOWN:
            raise where.fail(f"admin key #{n} is {k!r}", 'Write id = "finops" and key = "env:PB_ADMIN_KEY" '
                             "(and optionally read_only = true).", line=line)
        kid, ref, ro = k.get("id"), k.get("key"), k.get("read_only", False)
        if not isinstance(kid, str) or not _ID_RE.match(kid) or kid in {x.id for x in keys}:
            raise where.fail(f"admin key #{n} has the id {kid!r}",
                             'Give each [[team.admin_keys]] its own id of letters, digits, "-", "_" or ".".', line=line)
        if not isinstance(ref, str) or not _ENV_RE.match(ref):
            raise where.fail(f'admin key "{kid}" has key = {"<hidden>" if isinstance(ref, str) else ref!r}',
                             'Write key = "env:NAME" and put the key (32 characters or more) in that environment '
                             "variable: a key written in the file would be readable by anyone who reads the config.",
                             line=line)
        if not isinstance(ro, bool):
            raise where.fail(f'admin key "{kid}" has read_only = {ro!r}', "Write true or false.", line=line)
        keys.append(AdminKey(kid, ref, ro))
    return tuple(keys), tuple(g.strip() for g in groups)


def resolve_admin_keys(keys: tuple[AdminKey, ...]) -> list[tuple[AdminKey, bytes]]:
    """Each usable key with its value from the environment; the others are logged and left out."""
    out = []
    for k in keys:
        value = os.environ.get(k.key[4:], "")
        if len(value) < MIN_KEY_LEN:
            log.warning("Admin API key %r is disabled: the environment variable %s is %s (a key needs %d characters "
                        "or more).", k.id, k.key[4:], "not set" if not value else "too short", MIN_KEY_LEN)
            continue
        out.append((k, value.encode()))
    return out


def match_key(presented: str, usable: list[tuple[AdminKey, bytes]]) -> AdminKey | None:
    """The admin key ``presented`` is, compared in constant time against each."""
    found = None
    raw = presented.encode()
    for k, value in usable:
        if hmac.compare_digest(raw, value):
            found = k
    return found


__all__ = ["AdminKey", "ConfigError", "MIN_KEY_LEN", "match_key", "parse_admin", "resolve_admin_keys"]
