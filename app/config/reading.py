"""Reading one TOML table with messages that point at the line: the error, the helpers every section's parser
shares, and the URL checks several sections make."""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config file that cannot be used. ``str()`` is the whole message for the user."""


class Where:
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
RANGES: dict[str, tuple[float, float, str]] = {
    "gateway.max_body_mb": (0.001, 1024, "32"),
    "gateway.ping_interval_s": (0.05, 3600, "10"),
    "gateway.upstream_timeout_s": (0.1, 86400, "600"),
    "ledger.capture_retention_days": (0, 36500, "14"),
    "ledger.retention_days": (1, 36500, "365"),
}  # [routes] numbers have their own checks in _parse_routes; nan anywhere is refused by check_values


def get_key(table: dict[str, Any], key: str, types: type | tuple[type, ...], where: Where, ctx: str,
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
    bounds = RANGES.get(f"{ctx}{key}")
    if bounds is not None and isinstance(value, (int, float)):
        lo, hi, example = bounds
        if not lo <= value <= hi:  # also false for nan
            raise where.fail(f"{ctx}{key} is {value!r}, outside the range that works ({lo:g} to {hi:g})",
                             f"Write a number in that range, e.g. {key} = {example}.",
                             line=line or where.line_of(rf"^\s*{re.escape(key)}\s*="), key=f"{ctx}{key}")
    return value


def check_values(node: Any, where: Where, path: str = "", depth: int = 0) -> None:
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
            check_values(v, where, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(node, list):
        for v in node:
            check_values(v, where, path, depth + 1)


def unknown_keys(t: dict[str, Any], known: set[str], ctx: str, where: Where, start: int = 0) -> None:
    for key in t:
        if key not in known:
            raise where.fail(
                f"unknown key {ctx}{key}",
                f"Known keys here: {', '.join(sorted(known))}.",
                line=where.line_of(rf"^\s*{re.escape(key)}\s*=", start=start), key=f"{ctx}{key}",
            )


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


def secure_url(url: str) -> bool:
    """HTTPS, or plain HTTP to this machine only: where an identity provider's keys may come from."""
    return url.startswith("https://") or (url.startswith("http://") and is_loopback_url(url))
