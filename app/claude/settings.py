"""Connect Claude Code to Patchbay through ``~/.claude/settings.json`` without harming the file.

Users keep hooks, plugins, a status line and permissions in that file; a tool that loads it and
dumps it again loses formatting at best and their set-up at worst. Here the file is edited as
*text*: :mod:`app.claude.jsonspans` finds where the ``env`` object and its members are, only our
own keys are inserted or replaced, and every other byte stays as it was (key order, indentation,
escapes, line endings, a missing final newline).

- :func:`connect` writes a timestamped backup first, then the file atomically (keeping its mode,
  writing through a symlink to its target), and records in a state file what each of our keys
  held before (its raw JSON text, or that it was absent).
- :func:`disconnect` puts back exactly what was there: connect then disconnect gives identical
  bytes. A value that is JSON-equal to what Patchbay wrote is Patchbay's, however it is laid out
  now (Claude Code rewrites the whole file with two-space indentation whenever it saves). Keys
  the user changed in between are left as they are; edits to other parts survive, and the
  answer names what was left and why. A ``"model": "backend,model"`` that ``/model`` saved
  (it would fail against Anthropic) is removed on request (:func:`remove_gateway_model`).
  When Patchbay created the file (it did not exist), Disconnect deletes it again, unless the user
  added something to it since, in which case only our keys go.
- :func:`status` reads the file and says whether Claude Code points at this gateway, at another
  one, or whether something else changed our keys since we connected.

A file that is not strict JSON (comments, trailing commas, …) is never written; the error names
the line and column. Reading the file, its members, backups and the atomic write are in
app/claude/settings_file.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.claude import settings_file as sf
from app.claude.jsonspans import Node, remove_member, scan, set_member
from app.claude.settings_file import BACKUPS_KEPT as BACKUPS_KEPT  # re-exported: callers know them as settings.*
from app.claude.settings_file import SettingsFileError as SettingsFileError
from app.claude.settings_file import settings_path as settings_path
from app.claude.settings_file import settings_path_note as settings_path_note

BASE_URL = "ANTHROPIC_BASE_URL"
AUTH_TOKEN = "ANTHROPIC_AUTH_TOKEN"
NONESSENTIAL = "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
HINT_HEADERS = "CLAUDE_CODE_GATEWAY_HINT_HEADERS"  # Claude Code says what each request is for (routing)
# deferred tools + ToolSearch (MCP tools loaded on demand: about half the prompt in a session with
# many of them); safe behind Patchbay, which shows every backend's model what a tool_reference loaded
TOOL_SEARCH = "ENABLE_TOOL_SEARCH"
MODEL = "model"  # where `/model` saves its choice
ALIAS_KEYS = {"haiku": "ANTHROPIC_DEFAULT_HAIKU_MODEL", "sonnet": "ANTHROPIC_DEFAULT_SONNET_MODEL",
              "opus": "ANTHROPIC_DEFAULT_OPUS_MODEL"}
STATUS_LINE = "statusLine"
STATE_VERSION = 1


@dataclass(frozen=True)
class Entry:
    where: str  # "env" | "top"
    key: str
    before: str | None  # raw JSON text of the value before we connected; None: the key was absent
    ours: str  # raw JSON text we wrote


@dataclass
class State:
    settings_path: str
    entries: list[Entry]
    file_before: str | None = None  # the whole text, when the file was absent (None + absent) or blank
    file_absent: bool = False
    env_absent: bool = False
    env_inner: str = ""  # what was between the braces of an empty env object
    top_inner: str = ""  # what was between the braces of an empty top-level object
    written_sha256: str = ""
    connected_at: float = 0.0
    before_sha256: str = ""  # the bytes before the first connect ("" for a file that was absent)
    # digests of each top-level value (and each env member, as "env.NAME") before the first connect
    before_members: dict[str, str] | None = None
    # the top-level "model" before the first connect (its raw JSON text; None: absent), so that
    # `disconnect --remove-model` puts the user's own choice back in place of a backend,model
    model_before: str | None = None

    def to_json(self) -> str:
        d: dict[str, Any] = {"version": STATE_VERSION, **self.__dict__}
        d["entries"] = [e.__dict__ for e in self.entries]
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> State:
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION:
            raise ValueError("unknown state layout")
        d.pop("version")
        d["entries"] = [Entry(**e) for e in d["entries"]]
        return cls(**d)


@dataclass(frozen=True)
class ConnectResult:
    path: Path
    changed: bool  # False: the file already said all this
    backup: Path | None
    skipped: tuple[str, ...] = ()  # keys left alone (a statusLine of the user's own)


@dataclass(frozen=True)
class DisconnectResult:
    path: Path
    changed: bool
    backup: Path | None
    removed_file: bool = False
    kept: tuple[str, ...] = ()  # our keys that something else changed since: left as they are
    message: str = ""
    others: tuple[str, ...] = ()  # settings not Patchbay's that changed since it connected (kept)
    same_settings: bool | None = None  # JSON-equal to the file before connect (None: unknown)
    identical: bool = False  # byte for byte what the file held before connect
    gateway_model: str | None = None  # a "model": "backend,model" left in the file
    removed_model: str | None = None  # the one removed on request
    restored_model: str | None = None  # what "model" held before Patchbay connected, put back in its place

    def summary(self) -> str:
        """What Disconnect did, in sentences: what was put back, what was left and why."""
        parts: list[str] = []
        if self.removed_file:
            parts.append(f"Removed {self.path}, which Patchbay had created.")
        elif self.changed:
            if self.identical:
                parts.append(f"{self.path} is back to what it held before Patchbay connected.")
            elif self.same_settings:
                parts.append(f"{self.path} holds the same settings as before Patchbay connected; only its layout "
                             "differs, because something rewrote the file since (Claude Code does whenever it "
                             "saves a setting).")
            else:
                parts.append(f"Patchbay's keys in {self.path} are back to what they held before it connected.")
        if self.removed_model and self.restored_model is not None:
            parts.append(f'Put back "model": "{self.restored_model}" (what it held before Patchbay connected) in place '
                         f'of "{self.removed_model}", which Claude Code\'s /model had saved.')
        elif self.removed_model:
            parts.append(f'Removed "model": "{self.removed_model}", which Claude Code\'s /model had saved.')
        if self.message:
            parts.append(self.message)
        return " ".join(parts)


@dataclass(frozen=True)
class Status:
    state: str  # connected | not_connected | other_gateway | outdated | changed | invalid
    path: Path
    message: str  # one sentence for the user
    base_url: str | None = None
    edited_since: bool = False  # the file changed since we wrote it (our keys may still be intact)
    options: tuple[str, ...] = field(default=())  # our optional keys in place: nonessential, aliases, statusline

    @property
    def connected(self) -> bool:
        return self.state == "connected"


def load_state(state_file: Path) -> State | None:
    try:
        return State.from_json(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _wanted(values: dict[str, str], top: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = [("env", k, json.dumps(v, ensure_ascii=False)) for k, v in values.items()]
    out += [("top", k, json.dumps(v, ensure_ascii=False)) for k, v in top.items()]
    return out


def connect(path: Path, state_file: Path, backup_dir: Path, values: dict[str, str],
            top_if_absent: dict[str, Any] | None = None) -> ConnectResult:
    """Put ``values`` into the ``env`` object of ``path`` and each of ``top_if_absent`` at the top
    level where the user has no such key; remember what was there before in ``state_file``."""
    path = sf.real_path(path)
    data, text = sf.read_text(path)
    old = load_state(state_file)
    file_absent = data is None
    blank = text is None or not text.strip()
    work = "{\n}\n" if blank else str(text)
    root = sf.parse(path, work)
    env = sf.env_object(path, root)
    top_keys = dict(top_if_absent or {})
    skipped = tuple(k for k in top_keys if sf.raw_value(work, root, k) is not None and not
                    (old and any(e.where == "top" and e.key == k for e in old.entries)))
    for k in skipped:
        top_keys.pop(k)

    # A reconnect (new token or port) keeps, for each key that still holds what we wrote, what was
    # there before the first connect; a key something else changed since starts afresh from its
    # current value (Disconnect then gives back that other tool's setting).
    prev = {(e.where, e.key): e for e in old.entries
            if sf.same_value(sf.raw_value(work, env if e.where == "env" else root, e.key), e.ours)} \
        if old is not None and old.settings_path == str(path) else {}
    reuse = bool(prev)
    state = State(str(path), [], file_before=text if blank else None, file_absent=file_absent,
                  env_absent=env is None, env_inner="", top_inner="")
    state.before_sha256 = sf.digest(data) if data is not None else ""
    state.before_members = sf.members_digest(text)
    state.model_before = sf.raw_value(work, root, MODEL)
    if reuse and old:
        state.file_before, state.file_absent = old.file_before, old.file_absent
        state.env_absent, state.env_inner, state.top_inner = old.env_absent, old.env_inner, old.top_inner
        state.before_sha256, state.before_members = old.before_sha256, old.before_members
        state.model_before = old.model_before
    if not root.members and not (reuse and old):
        state.top_inner = work[root.start + 1 : root.end - 1]
    if env is not None and not env.members and not (reuse and old):
        state.env_inner = work[env.start + 1 : env.end - 1]

    new = work
    wanted = _wanted(values, top_keys)
    # a key an earlier connect set that this one does not (the user unticked an option) goes back
    for (where, key), e in reversed(list(prev.items())):
        if not any(w == where and k == key for w, k, _ in wanted):
            new, _ok = _undo(new, e, state)
    root = scan(new)
    env = root.get("env")[-1].value if root.get("env") else None
    if env is None:
        new = set_member(new, root, "env", "{}")
    for where, key, raw in wanted:
        root = scan(new)
        obj = root if where == "top" else root.get("env")[-1].value
        earlier = prev.get((where, key))
        state.entries.append(Entry(where, key, earlier.before if earlier else sf.raw_value(new, obj, key), raw))
        new = set_member(new, obj, key, raw)
    expected = _expected(work, prev, wanted, values, top_keys)
    if json.loads(new.lstrip("\ufeff")) != expected:  # never write what we did not mean
        raise SettingsFileError(f"Patchbay could not edit {path} safely, so it changed nothing. Please report this "
                                "with a copy of the file (without secrets).")
    backup = None
    changed = new != text
    if changed:
        if data is not None:
            backup = sf.backup(path, data, backup_dir)
        sf.write(path, new)
    state.written_sha256 = sf.digest(new.encode("utf-8"))
    state.connected_at = time.time()
    from app.config.disk import atomic_write

    atomic_write(state_file, state.to_json())
    return ConnectResult(path, changed, backup, skipped)


def _expected(work: str, prev: dict[tuple[str, str], Entry], wanted: list[tuple[str, str, str]],
              values: dict[str, str], top_keys: dict[str, Any]) -> Any:
    """What the settings must hold after :func:`connect`, worked out on the parsed JSON: the keys
    an earlier connect set and this one does not back as they were, then ``values`` and ``top_keys``."""
    expected = json.loads(work.lstrip("\ufeff"))
    for (where, key), e in prev.items():
        if not any(w == where and k == key for w, k, _ in wanted):
            target = expected if where == "top" else expected.get("env", {})
            if e.before is None:
                target.pop(key, None)
            else:
                target[key] = json.loads(e.before)
    expected.setdefault("env", {})
    expected["env"].update(values)
    for k, v in top_keys.items():
        expected[k] = v
    return expected


def gateway_model(text: str) -> str | None:
    """The top-level ``"model"`` when it is a Patchbay ``backend,model`` name (what ``/model
    backend,model`` saves): Claude Code would send it to Anthropic after Disconnect, which refuses it."""
    try:
        value = json.loads(text.lstrip("\ufeff") or "{}").get(MODEL)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and "," in value and value.split(",", 1)[0].strip() else None


def _drop_model(text: str, state: State | None) -> tuple[str, str | None]:
    """``text`` without its ``"model"``, or with the user's own from before Patchbay connected put
    back (``state.model_before``, unless that was a backend,model name too); and the value put back."""
    root = scan(text)
    earlier = state.model_before if state is not None else None
    value = sf.string_value(earlier)
    if earlier is not None and value is not None and gateway_model(json.dumps({MODEL: value})) is None:
        return set_member(text, root, MODEL, earlier), value
    return remove_member(text, root, MODEL, empty_inner=state.top_inner if state else ""), None


def remove_gateway_model(path: Path, backup_dir: Path) -> str | None:
    """Remove a ``"model": "backend,model"`` from ``path`` (a backup first); the value removed, or None."""
    path = sf.real_path(path)
    data, text = sf.read_text(path)
    if text is None:
        return None
    sf.parse(path, text)
    value = gateway_model(text)
    if value is None:
        return None
    sf.backup(path, data or b"", backup_dir)
    sf.write(path, _drop_model(text, None)[0])
    return value


def drop_stale_token(path: Path, state_file: Path, backup_dir: Path, token: str) -> bool:
    """Remove ``ANTHROPIC_AUTH_TOKEN`` when it holds the gateway token but no record says Patchbay
    wrote it (set by hand, or by a Patchbay that kept no record): there it would hide the user's
    own login. True when it went (a backup first)."""
    path = sf.real_path(path)
    old = load_state(state_file)
    if old is not None and any(e.key == AUTH_TOKEN for e in old.entries):
        return False  # connect's own record undoes it
    data, text = sf.read_text(path)
    if text is None:
        return False
    env = sf.env_object(path, sf.parse(path, text))
    if env is None or sf.string_value(sf.raw_value(text, env, AUTH_TOKEN)) != token:
        return False
    sf.backup(path, data or b"", backup_dir)
    sf.write(path, remove_member(text, env, AUTH_TOKEN))
    return True


def disconnect(path: Path, state_file: Path, backup_dir: Path, *, gateway_url: str | None = None,
               remove_model: bool = False) -> DisconnectResult:
    """Undo :func:`connect`: each key we set gets back its old value or goes away, when it still
    holds what we wrote (or the same value laid out otherwise). Without a record (connected by an
    older Patchbay, or by hand), removes ``ANTHROPIC_BASE_URL``/``ANTHROPIC_AUTH_TOKEN`` only when
    they point at ``gateway_url``. ``remove_model``: also remove a ``"model": "backend,model"``
    saved since (which Anthropic would refuse); otherwise the answer says it is there."""
    path = sf.real_path(path)
    state = load_state(state_file)
    data, text = sf.read_text(path)
    if text is None:
        state_file.unlink(missing_ok=True)
        return DisconnectResult(path, False, None, message=f"{path} does not exist; there was nothing to undo.")
    root = sf.parse(path, text)
    env = sf.env_object(path, root)
    if state is None or state.settings_path != str(path):
        if gateway_url and sf.string_value(sf.raw_value(text, env, BASE_URL)) == gateway_url:
            state = State(str(path), [Entry("env", BASE_URL, None, sf.raw_value(text, env, BASE_URL) or ""),
                                      Entry("env", AUTH_TOKEN, None, sf.raw_value(text, env, AUTH_TOKEN) or "")]
                          + _header_entry(sf.string_value(sf.raw_value(text, env, "ANTHROPIC_CUSTOM_HEADERS"))))
        else:
            model = gateway_model(text)
            if model is not None and remove_model:
                removed = remove_gateway_model(path, backup_dir)
                return DisconnectResult(path, True, None, removed_model=removed,
                                        message="Patchbay had not connected it otherwise, so nothing else changed.")
            return DisconnectResult(path, False, None, gateway_model=model,
                                    message=f"Patchbay has not connected {path}, so it changed nothing."
                                    + (_model_note(model) if model else ""))
    new = text
    kept: list[str] = []
    for e in reversed(state.entries):
        new, ok = _undo(new, e, state)
        if not ok:
            kept.append(e.key)
    before = state.before_members
    model = gateway_model(new)
    if model is not None and before is not None and before.get(MODEL) == sf.canon(model):
        model = None  # it was there before Patchbay connected: the user's own
    removed_model = restored_model = None
    if model is not None and remove_model:
        new, restored_model = _drop_model(new, state)
        removed_model, model = model, None
    root = scan(new)
    env_found = root.get("env")
    if state.env_absent and env_found and env_found[-1].value.kind == "object" and not env_found[-1].value.members:
        new = remove_member(new, root, "env", empty_inner=state.top_inner)
    now = sf.members_digest(new)
    ours = {e.key if e.where == "top" else f"env.{e.key}" for e in state.entries}
    others = tuple(k for k in sorted(set(now) | set(before or {}))
                   if k not in ours and (before or {}).get(k) != now.get(k)) if before is not None else ()
    removed_file = False
    if (state.file_absent or state.file_before is not None) and json.loads(new.lstrip("\ufeff")) == {} and not kept:
        # the file was absent or blank before we connected and holds nothing else now
        if data is not None:
            sf.backup(path, data, backup_dir)
        if state.file_absent:
            path.unlink()
            removed_file = True
        else:
            sf.write(path, state.file_before or "")
        state_file.unlink(missing_ok=True)
        return DisconnectResult(path, True, None, removed_file=removed_file, kept=tuple(kept),
                                same_settings=True, identical=not state.file_absent, removed_model=removed_model,
                                restored_model=restored_model)
    backup = None
    if new != text:
        backup = sf.backup(path, data or b"", backup_dir)
        sf.write(path, new)
    state_file.unlink(missing_ok=True)
    identical = bool(state.before_sha256) and sf.digest(new.encode("utf-8")) == state.before_sha256
    same = (now == before and not kept) if before is not None else None
    return DisconnectResult(path, new != text, backup, kept=tuple(kept),
                            message=_disconnect_notes(path, state, kept, others, model), others=others,
                            same_settings=same, identical=identical, gateway_model=model,
                            removed_model=removed_model, restored_model=restored_model)


def _disconnect_notes(path: Path, state: State, kept: list[str], others: tuple[str, ...], model: str | None) -> str:
    """What :func:`disconnect` tells the user it left as it was, and why."""
    notes: list[str] = []
    if kept:
        notes.append(f"{_names(kept)} changed since Patchbay connected (not to what Patchbay wrote), so Patchbay left "
                     f"{'it' if len(kept) == 1 else 'them'} as {'it is' if len(kept) == 1 else 'they are'}.")
    if state.file_absent and not kept:
        notes.append(f"Patchbay had created {path} but kept it, because it now holds settings Patchbay did not "
                     f"write: {_names(others) or 'see the file'}.")
    elif others:
        notes.append(f"Left as they are, because they changed after Patchbay connected and are not Patchbay's: "
                     f"{_names(others)}.")
    if model is not None:
        notes.append(_model_note(model).strip())
    return " ".join(notes)


def _names(keys: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f'"{k}"' for k in keys)


def _model_note(model: str) -> str:
    return (f' "model" is still "{model}" (saved by Claude Code\'s /model while it used Patchbay); without Patchbay '
            "Claude Code would send that name to Anthropic, which refuses it. Run `patchbay disconnect "
            "--remove-model` to remove it, or pick a model with /model.")


def _undo(text: str, e: Entry, state: State) -> tuple[str, bool]:
    """``text`` with ``e.key`` back to what it was before we connected, if it still holds what we
    wrote; ``False`` when something else changed it since (then it is left alone)."""
    root = scan(text)
    if e.where == "top":
        obj: Node | None = root
    else:
        found = root.get("env")
        obj = found[-1].value if found else None
    if obj is None or obj.kind != "object":
        return text, True
    current = sf.raw_value(text, obj, e.key)
    if current is None:
        return text, True
    if not sf.same_value(current, e.ours):
        return _undo_header_line(text, obj, e, current, state)
    if e.before is None:
        return remove_member(text, obj, e.key, empty_inner=state.env_inner if e.where == "env" else state.top_inner), True
    return set_member(text, obj, e.key, e.before), True


def _undo_header_line(text: str, obj: Node, e: Entry, current: str, state: State) -> tuple[str, bool]:
    """``ANTHROPIC_CUSTOM_HEADERS`` edited since we connected (a header of the user's added): only
    our ``x-patchbay-token`` line goes, the user's lines stay. Any other key: left alone (False)."""
    from app.claude import auth as ca

    value, ours = sf.string_value(current), sf.string_value(e.ours)
    line = next((ln for ln in (ours or "").splitlines() if ln.split(":", 1)[0].strip().lower() == ca.TOKEN_HEADER),
                None)
    if e.where != "env" or e.key != ca.CUSTOM_HEADERS or value is None or line is None or \
            not ca.has_header(value, ca.TOKEN_HEADER, line.split(":", 1)[1].strip()):
        return text, False
    rest = ca.drop_header(value)
    if rest is None:
        return remove_member(text, obj, e.key, empty_inner=state.env_inner), True
    return set_member(text, obj, e.key, json.dumps(rest, ensure_ascii=False)), True


# --------------------------------------------------------------------------- status


def status(path: Path, state_file: Path, gateway_url: str, token: str) -> Status:
    """Where ``path`` points Claude Code, compared with this gateway and with what we wrote."""
    path = sf.real_path(path)
    try:
        data, text = sf.read_text(path)
        if text is None:
            return Status("not_connected", path, f"{path} does not exist yet; Connect creates it with the keys that point Claude Code at Patchbay.")
        root = sf.parse(path, text if text.strip() else "{}")
        env = sf.env_object(path, root)
    except SettingsFileError as exc:
        return Status("invalid", path, str(exc))
    state = load_state(state_file)
    if state is not None and state.settings_path != str(path):
        state = None
    base = sf.string_value(sf.raw_value(text, env, BASE_URL))
    header = _token_header(sf.string_value(sf.raw_value(text, env, "ANTHROPIC_CUSTOM_HEADERS")), token)
    ours_now = base == gateway_url and (sf.string_value(sf.raw_value(text, env, AUTH_TOKEN)) == token or header)
    edited = state is not None and sf.digest(data) != state.written_sha256
    options: list[str] = []
    if sf.raw_value(text, env, NONESSENTIAL) is not None:
        options.append("nonessential")
    if any(sf.raw_value(text, env, k) is not None for k in ALIAS_KEYS.values()):
        options.append("aliases")
    if state is not None and any(e.key == STATUS_LINE and sf.same_value(sf.raw_value(text, root, STATUS_LINE), e.ours)
                                 for e in state.entries):
        options.append("statusline")
    opts = tuple(options)
    if state is not None:
        changed = [e.key for e in state.entries
                   if not sf.same_value(sf.raw_value(text, env if e.where == "env" else root, e.key), e.ours)]
        if changed and not ours_now:
            where = f" (it now points at {base})" if base and base != gateway_url else ""
            return Status("changed", path, f"Something else changed {', '.join(changed)} in {path} since Patchbay "
                          f"connected{where}. Connect again to point Claude Code back at Patchbay.", base, edited, opts)
        if not changed and not ours_now:
            return Status("outdated", path, f"{path} points Claude Code at Patchbay with an old address or token. "
                          "Connect again to update it.", base, edited, opts)
    if ours_now and not header:  # connected by an older Patchbay
        return Status("outdated", path, f"{path} points Claude Code at Patchbay the old way: the token as "
                      "ANTHROPIC_AUTH_TOKEN, which takes the place of a Claude subscription login or API key. Connect "
                      "again to send the token in its own header instead.", base, edited, opts)
    if ours_now:
        note = (" It was edited since Patchbay connected (by you or another tool); Patchbay's keys are still in "
                "place.") if edited else ""
        return Status("connected", path, f"{path} points Claude Code at Patchbay.{note}", base, edited, opts)
    if base:
        return Status("other_gateway", path, f"{path} points Claude Code at {base}, not at Patchbay. Connect "
                      "replaces that (Disconnect puts it back).", base, False, opts)
    return Status("not_connected", path, f"Claude Code does not use Patchbay yet. Connect adds its keys to the env "
                  f"of {path}; everything else in it stays as it is.", None, False, opts)


def _header_entry(headers: str | None) -> list[Entry]:
    """Without a record of what connect wrote: our token line of ANTHROPIC_CUSTOM_HEADERS, as an
    entry whose undo removes just that line."""
    from app.claude import auth as ca

    ours = [ln for ln in (headers or "").splitlines() if ln.split(":", 1)[0].strip().lower() == ca.TOKEN_HEADER]
    return [Entry("env", ca.CUSTOM_HEADERS, None, json.dumps(ours[0]))] if ours else []


def _token_header(headers: str | None, token: str) -> bool:
    from app.claude import auth as ca

    return ca.has_header(headers, ca.TOKEN_HEADER, token)
