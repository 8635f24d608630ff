"""The Claude Code managed settings one person gets from ``GET /managed/settings`` (team mode).

What is served, lowest first:

1. Patchbay's own ``env`` for a Claude Code behind it (``PATCHBAY_ENV``): hint headers (routing
   rules and the settings checksum on every request), tool search (deferred MCP tools; every
   backend's model is shown what a ``tool_reference`` loaded) and model discovery (``GET
   /v1/models``); with ``[team.telemetry] collect`` also the OTLP export (``TELEMETRY_ENV``),
   which a signed-in CLI sends to this gateway's ``/v1/metrics`` and ``/v1/logs``.
2. The ``[team.groups.managed_settings]`` of the person's groups, merged in config order
   (docs/team.md "Managed settings"): for a key two groups set, the first group's value wins;
   ``env`` merges per variable (first group wins, over Patchbay's); ``permissions`` lists
   (``allow``, ``ask``, ``deny``, ``additionalDirectories``) are joined, other ``permissions``
   keys are the first group's.
3. The model allow-list, derived from the group policy ``/v1/messages`` enforces
   (app/proxy/team_catalog.py): ``availableModels`` lists exactly the names it admits for this person
   (``availableModelsMatch: "exact"``, so no prefix widens it), ``enforceAvailableModels`` makes
   Claude Code's default one of them, and a group's ``model`` that this person's route would not
   admit is left out.

``checksum`` is Claude Code's: ``sha256:`` + hex SHA-256 of the settings as JSON with sorted keys
and no whitespace (GATEWAY-PROTOCOL §10); the ETag is that value quoted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from app.config.team import GroupPolicy

PATCHBAY_ENV: dict[str, str] = {
    "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1",
    "ENABLE_TOOL_SEARCH": "true",
    "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
}
TELEMETRY_ENV: dict[str, str] = {
    "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
}
PERMISSION_LISTS = ("allow", "ask", "deny", "additionalDirectories")


def merged(policies: Sequence[GroupPolicy]) -> dict[str, Any]:
    """The ``managed_settings`` of ``policies`` (the person's groups, in config order), merged."""
    out: dict[str, Any] = {}
    env: dict[str, str] = {}
    perms: dict[str, Any] = {}
    for g in policies:
        s = g.managed_settings or {}
        for key, value in s.items():
            if key == "env":
                for k, v in value.items():
                    env.setdefault(k, v)
            elif key == "permissions" and isinstance(value, dict):
                for k, v in value.items():
                    if k in PERMISSION_LISTS and isinstance(v, list):
                        perms[k] = list(dict.fromkeys([*perms.get(k, []), *v]))
                    else:
                        perms.setdefault(k, v)
            else:
                out.setdefault(key, value)
    if env:
        out["env"] = env
    if perms:
        out["permissions"] = perms
    return out


def settings_for(policies: Sequence[GroupPolicy], admitted: Sequence[str], *, telemetry: bool) -> dict[str, Any]:
    """Everything served to a person in ``policies`` whom ``/v1/messages`` admits ``admitted`` for."""
    settings = merged(policies)
    env = {**PATCHBAY_ENV, **(TELEMETRY_ENV if telemetry else {}), **settings.get("env", {})}
    settings["env"] = env
    if settings.get("model") not in admitted:
        # Claude Code refuses to start when its default model (claude-opus-4-7 in 2.1.332) is not in
        # availableModels ("none of them can be used as the default model"): name one it may use
        settings.pop("model", None)
        if admitted:
            settings["model"] = admitted[0]
    settings["availableModels"] = list(admitted)
    settings["availableModelsMatch"] = "exact"
    settings["enforceAvailableModels"] = True
    return settings


def checksum(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (opaque comparison; ``*`` is Claude Desktop's probe, not a match)."""
    if not if_none_match:
        return False
    for item in if_none_match.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item == etag:
            return True
    return False
