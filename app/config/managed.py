"""Two pieces of ``[team]`` read by ``app/config/team.py``: a group's Claude Code managed settings
(``[team.groups.managed_settings]``) and what happens to Claude Code's telemetry (``[team.telemetry]``).

    [[team.groups]]
    name = "eng"
    models = ["claude-sonnet-*"]
    [team.groups.managed_settings]        # any key of Claude Code's managed-settings.json
    model = "claude-sonnet-4-6"
    permissions = { deny = ["WebFetch"] }
    [team.groups.managed_settings.env]
    SOME_VAR = "eng"

    [team.telemetry]
    collect = true                         # accept and keep POST /v1/{metrics,logs,traces} (default)
    retention_days = 30                    # rows older than this are deleted
    forward_to = "https://otel.corp.example:4318"   # also relay each request as it came (optional)

``availableModels`` (and its companions) may not be written: Patchbay derives them from the
group's ``models`` and ``backends``, the rules ``/v1/messages`` enforces (app/proxy/team_catalog.py), so
the settings pushed can never disagree with what the gateway admits. A ``model`` the group's own
``models`` do not allow is refused here for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config.reading import ConfigError, secure_url

# keys Patchbay writes itself from the group policy; a company's value would contradict it
DERIVED_KEYS = ("availableModels", "availableModelsMatch", "enforceAvailableModels")
DEFAULT_RETENTION_DAYS = 30.0

Fail = Callable[[str, str], ConfigError]  # (what is wrong, what to write) -> the error to raise


@dataclass(frozen=True)
class TelemetryConfig:
    """``[team.telemetry]``."""

    collect: bool = True
    retention_days: float = DEFAULT_RETENTION_DAYS
    forward_to: str | None = None


def parse_managed_settings(name: str, value: Any, models_ok: Callable[[str], bool],
                           fail: Fail) -> dict[str, Any] | None:
    """A group's ``managed_settings`` table as the JSON object it is served as (None: not written).
    ``models_ok(model)``: the group's own ``models`` allow it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail(f'group "{name}" managed_settings is {value!r}',
                   "Write it as a [team.groups.managed_settings] table of Claude Code settings.")
    try:
        settings = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise fail(f'group "{name}" managed_settings holds a value JSON cannot carry (a date or time?)',
                   "Write dates and times as strings.") from None
    for key in DERIVED_KEYS:
        if key in settings:
            raise fail(f'group "{name}" managed_settings sets {key}',
                       "Remove it: Patchbay derives the model allow-list from the group's models and "
                       "backends, the same rules /v1/messages enforces.")
    env = settings.get("env")
    if env is not None and (not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values())):
        raise fail(f'group "{name}" managed_settings.env is {env!r}',
                   'Write [team.groups.managed_settings.env] with string values, e.g. SOME_VAR = "1".')
    model = settings.get("model")
    if model is not None and (not isinstance(model, str) or not models_ok(model)):
        raise fail(f'group "{name}" managed_settings.model is {model!r}, which the group\'s models do not allow',
                   "Name a model the group's models list allows, or remove the line.")
    return settings


def parse_telemetry(value: Any, fail: Fail) -> TelemetryConfig:
    if value is None:
        return TelemetryConfig()
    if not isinstance(value, dict):
        raise fail(f"team.telemetry is {value!r}", "Write it as a [team.telemetry] table.")
    unknown = sorted(set(value) - {"collect", "retention_days", "forward_to"})
    if unknown:
        raise fail(f"unknown key team.telemetry.{unknown[0]}",
                   "Known keys here: collect, forward_to, retention_days.")
    collect = value.get("collect", True)
    if not isinstance(collect, bool):
        raise fail(f"team.telemetry.collect is {collect!r}", "Write true or false.")
    days = value.get("retention_days", DEFAULT_RETENTION_DAYS)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= 3650:
        raise fail(f"team.telemetry.retention_days is {days!r}",
                   "Write a number of days above 0 and at most 3650 (30 is the default).")
    forward = value.get("forward_to")
    if forward is not None and (not isinstance(forward, str) or not secure_url(forward.strip())):
        raise fail(f"team.telemetry.forward_to is {forward!r}",
                   "Write the collector's https:// base address (plain http only to this machine's "
                   "loopback); /v1/metrics, /v1/logs and /v1/traces are appended.")
    return TelemetryConfig(collect, float(days), forward.strip().rstrip("/") if forward else None)
