"""Claude Code's ``settings.json`` as a file: where it is, reading it as text and finding its
members, the backups, the atomic write. Every way it can fail is a ``SettingsFileError`` whose
text is a sentence for the user, and nothing was written.

app/claude/settings.py edits the file with these (connect, disconnect, status);
app/claude/team_join.py reads it with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.claude.jsonspans import JSONTextError, Node, scan

BACKUPS_KEPT = 10


class SettingsFileError(Exception):
    """settings.json cannot be changed safely. ``str()`` is a sentence for the user; nothing was written."""


def settings_path() -> Path:
    """Claude Code's user settings: ``$CLAUDE_CONFIG_DIR/settings.json``, else ``~/.claude/settings.json``."""
    return Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "settings.json"


def settings_path_note(environ: Mapping[str, str] | None = None) -> str:
    """A sentence for the Connect button's page when the file may not be the one the user expects:
    PATCHBAY_HOME moves Patchbay's own files, never Claude Code's. "" when nothing needs saying."""
    env = os.environ if environ is None else environ
    if env.get("CLAUDE_CONFIG_DIR"):
        return "CLAUDE_CONFIG_DIR is set, so this is the settings.json of that Claude Code folder."
    if env.get("PATCHBAY_HOME"):
        return ("PATCHBAY_HOME moves only Patchbay's own files: this is the settings.json every Claude Code "
                "session of this user reads. To connect a separate Claude Code instead, start Patchbay with "
                "CLAUDE_CONFIG_DIR pointing at that Claude Code's folder.")
    return ""


# --------------------------------------------------------------------------- reading


def real_path(path: Path) -> Path:
    """Write through a symlink (dotfile managers link settings.json) rather than replacing it."""
    return path.resolve() if path.is_symlink() else path


def read_text(path: Path) -> tuple[bytes | None, str | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise SettingsFileError(f"{path} cannot be read ({exc.strerror}), so Patchbay changed nothing. Check "
                                "its permissions.") from None
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsFileError(f"{path} is not UTF-8 text (byte {exc.start}), so Patchbay changed nothing. Save "
                                "it as UTF-8 and try again.") from None


def parse(path: Path, text: str) -> Node:
    try:
        root = scan(text)
    except JSONTextError as exc:
        raise SettingsFileError(f"{path} is not valid JSON (line {exc.line}, column {exc.column}: {exc.reason}), so "
                                "Patchbay changed nothing. Fix that spot, then try again.") from None
    if root.kind != "object":
        raise SettingsFileError(f"{path} holds a JSON {root.kind}, not an object, so Patchbay changed nothing. "
                                "Claude Code expects an object: {{ … }}.")
    return root


def one_member(path: Path, obj: Node, key: str, where: str) -> Node | None:
    found = obj.get(key)
    if len(found) > 1:
        raise SettingsFileError(f'{path} names "{key}" {len(found)} times in {where}, so Patchbay changed nothing. '
                                "Keep one of them and try again.")
    return found[0].value if found else None


def env_object(path: Path, root: Node) -> Node | None:
    env = one_member(path, root, "env", "the top level")
    if env is not None and env.kind != "object":
        raise SettingsFileError(f'In {path}, "env" is a {env.kind}, not an object, so Patchbay changed nothing. '
                                'Claude Code expects "env": {{ "NAME": "value" }}.')
    return env


def raw_value(text: str, obj: Node | None, key: str) -> str | None:
    if obj is None:
        return None
    found = obj.get(key)
    return text[found[-1].value.start : found[-1].value.end] if found else None


def string_value(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        v = json.loads(raw)
    except ValueError:
        return None
    return v if isinstance(v, str) else None


def same_value(raw: str | None, ours: str | None) -> bool:
    """True when two raw JSON texts hold the same value, however they are laid out."""
    if raw is None or ours is None:
        return raw is ours
    if raw == ours:
        return True
    try:
        return bool(json.loads(raw) == json.loads(ours))
    except ValueError:
        return False


def canon(value: Any) -> str:
    """A short digest of one JSON value, whatever its layout (what ``members_digest`` keeps)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def members_digest(text: str | None) -> dict[str, str]:
    """A digest of each top-level value and each env member of a settings text (to say later
    what changed, without keeping the values: env may hold secrets)."""
    try:
        obj = json.loads((text or "{}").lstrip("\ufeff") or "{}")
    except ValueError:
        return {}
    if not isinstance(obj, dict):
        return {}
    out = {k: canon(v) for k, v in obj.items() if k != "env"}
    env = obj.get("env")
    if isinstance(env, dict):
        out.update({f"env.{k}": canon(v) for k, v in env.items()})
    elif "env" in obj:
        out["env"] = canon(env)
    return out


def digest(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


# --------------------------------------------------------------------------- writing


def backup(path: Path, data: bytes, backup_dir: Path) -> Path:
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = backup_dir / f"settings.json.{stamp}.bak"
    n = 1
    while dest.exists():
        dest = backup_dir / f"settings.json.{stamp}-{n}.bak"
        n += 1
    dest.write_bytes(data)
    old = sorted(backup_dir.glob("settings.json.*.bak"), key=lambda p: p.stat().st_mtime)
    for p in old[:-BACKUPS_KEPT]:
        p.unlink(missing_ok=True)
    return dest


def write(path: Path, text: str) -> None:
    from app.config import ConfigError
    from app.config.disk import atomic_write

    try:
        atomic_write(path, text.encode("utf-8"))
    except ConfigError as exc:
        raise SettingsFileError(str(exc)) from None
