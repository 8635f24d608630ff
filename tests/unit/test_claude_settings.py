"""Connecting Claude Code edits ~/.claude/settings.json as text: our keys in, nothing else touched,
and Disconnect gives back the identical bytes. Real files in a temporary HOME."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.claude import settings as cs
from app.claude.jsonspans import JSONTextError, scan, set_member

URL = "http://127.0.0.1:8787"
TOKEN = "pb-token-123"
# what Connect writes for a user without an Anthropic login (app/claude/auth.py)
VALUES = {cs.BASE_URL: URL, cs.AUTH_TOKEN: TOKEN, "ANTHROPIC_CUSTOM_HEADERS": f"x-patchbay-token: {TOKEN}"}

HOOKS_FILE = """{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "permissions": {
    "allow": ["Bash(npm run lint)", "Read(~/.zshrc)"],
    "deny": ["Read(./.env)"],
    "defaultMode": "acceptEdits"
  },
  "hooks": {
    "PreToolUse": [
      {"matcher": "Bash", "hooks": [{"type": "command", "command": "~/.claude/hooks/check.sh \\"$1\\""}]}
    ],
    "Stop": [{"hooks": [{"type": "command", "command": "notify-send 'done' \\u2714"}]}]
  },
  "enabledPlugins": {"formatter@anthropic-tools": true, "deploy@team": false},
  "statusLine": {"type": "command", "command": "~/.claude/statusline.sh", "padding": 0},
  "env": {
    "DISABLE_TELEMETRY": "1",
    "BASH_DEFAULT_TIMEOUT_MS": "60000"
  },
  "model": "opus",
  "cleanupPeriodDays": 30
}
"""

SAMPLES = {
    "hooks, plugins, statusLine, permissions": HOOKS_FILE,
    "tabs, no final newline": '{\n\t"model": "sonnet",\n\t"env": {\n\t\t"FOO": "bar"\n\t}\n}',
    "compact": '{"env":{"FOO":"1"},"hooks":{"Stop":[]},"x":[1,2.5e3,null,true]}',
    "unicode escapes and raw unicode": '{\n  "greeting": "h\\u00e9llo \\ud83d\\ude00 — naïve",\n  "env": {"NAME": "Zoë"}\n}\n',
    "env absent": '{\n    "model": "opus",\n    "includeCoAuthoredBy": false\n}\n',
    "env empty": '{\n  "env": {},\n  "model": "opus"\n}\n',
    "env empty with spaces": '{\n  "env": {  },\n  "model": "opus"\n}\n',
    "env empty, only key": '{"env": {}}',
    "our keys with other values": ('{\n  "env": {\n    "ANTHROPIC_BASE_URL": "https://corp-gateway.example.com",\n'
                                   '    "ANTHROPIC_AUTH_TOKEN": "corp-secret",\n    "OTHER": "x"\n  }\n}\n'),
    "empty object": "{}",
    "empty object with a newline inside": "{\n}\n",
    "CRLF line endings": '{\r\n  "env": {\r\n    "A": "1"\r\n  },\r\n  "model": "opus"\r\n}\r\n',
    "byte-order mark": '\ufeff{\n  "model": "opus"\n}\n',
    "odd spacing around colons": '{ "env" : { "A" : "1" } , "b" :2 }',
    "env first and only": '{\n  "env": {\n    "ANTHROPIC_BASE_URL": "http://old:1"\n  }\n}\n',
    "deep nesting": '{"a": {"b": {"c": {"d": [[[{"e": "f"}]]]}}}, "env": {"Z": "z"}}\n',
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    (h / ".claude").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(h / ".claude"))
    return h


@pytest.fixture
def files(home: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    data = tmp_path / "patchbay-data"
    return cs.settings_path(), data / "claude-code-connection.json", data / "claude-settings-backups"


def _members_raw(text: str) -> dict[str, str]:
    root = scan(text)
    return {m.key: text[m.key_start : m.value.end] for m in root.members}


def _env_raw(text: str) -> dict[str, str]:
    root = scan(text)
    env = root.get("env")
    if not env:
        return {}
    return {m.key: text[m.key_start : m.value.end] for m in env[0].value.members}


def test_settings_path_follows_claude_config_dir(home: Path, monkeypatch: pytest.MonkeyPatch):
    assert cs.settings_path() == home / ".claude" / "settings.json"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home / "elsewhere"))
    assert cs.settings_path() == home / "elsewhere" / "settings.json"
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    assert cs.settings_path() == home / ".claude" / "settings.json"


@pytest.mark.parametrize("name", list(SAMPLES))
def test_connect_changes_only_our_keys_and_disconnect_restores_the_bytes(name: str, files):
    path, state, backups = files
    original = SAMPLES[name]
    path.write_bytes(original.encode())
    os.chmod(path, 0o640)
    before = json.loads(original.lstrip("\ufeff"))

    result = cs.connect(path, state, backups, VALUES)

    after_text = path.read_bytes().decode()
    after = json.loads(after_text.lstrip("\ufeff"))
    expected = dict(before)
    expected["env"] = {**before.get("env", {}), **VALUES}
    assert after == expected
    # every other top-level member, and every other env member, is the same text as before
    old_top, new_top = _members_raw(original), _members_raw(after_text)
    assert {k: v for k, v in new_top.items() if k != "env"} == {k: v for k, v in old_top.items() if k != "env"}
    assert {k: v for k, v in _env_raw(after_text).items() if k not in VALUES} == \
        {k: v for k, v in _env_raw(original).items() if k not in VALUES}
    # and what lies outside the env object did not move: the text before it is a prefix
    if "env" in old_top:
        env_at = original.index(old_top["env"])
        assert after_text[:env_at] == original[:env_at]
    assert after_text.startswith("\ufeff") == original.startswith("\ufeff")
    assert after_text.endswith("\n") == original.endswith("\n")
    assert ("\r\n" in after_text) == ("\r\n" in original)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert result.changed and result.backup is not None and result.backup.read_bytes() == original.encode()
    assert cs.status(path, state, URL, TOKEN).state == "connected"

    out = cs.disconnect(path, state, backups)
    assert path.read_bytes() == original.encode()
    assert out.changed and not out.kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not state.exists()
    assert cs.status(path, state, URL, TOKEN).state in ("not_connected", "other_gateway")


def test_a_file_that_did_not_exist_is_created_and_removed_again(files):
    path, state, backups = files
    assert not path.exists()
    cs.connect(path, state, backups, VALUES)
    assert json.loads(path.read_text()) == {"env": VALUES}
    assert path.read_text() == ('{\n  "env": {\n    "ANTHROPIC_BASE_URL": "http://127.0.0.1:8787",\n'
                                '    "ANTHROPIC_AUTH_TOKEN": "pb-token-123",\n'
                                '    "ANTHROPIC_CUSTOM_HEADERS": "x-patchbay-token: pb-token-123"\n  }\n}\n')
    out = cs.disconnect(path, state, backups)
    assert out.removed_file and not path.exists()


def test_a_created_file_the_user_added_to_is_kept_without_our_keys(files):
    path, state, backups = files
    cs.connect(path, state, backups, VALUES)
    text = path.read_text()
    path.write_text(set_member(text, scan(text), "model", '"opus"'))
    out = cs.disconnect(path, state, backups)
    assert not out.removed_file
    assert json.loads(path.read_text()) == {"model": "opus"}


def test_a_blank_file_gets_its_blank_text_back(files):
    path, state, backups = files
    path.write_text("  \n")
    cs.connect(path, state, backups, VALUES)
    cs.disconnect(path, state, backups)
    assert path.read_text() == "  \n"


@pytest.mark.parametrize("name", ["hooks, plugins, statusLine, permissions", "compact", "env absent", "env empty"])
def test_edits_made_while_connected_survive_disconnect(name: str, files):
    """The user changes another part of the file while connected: Disconnect removes only our
    keys, and the result is exactly the original with the user's edit."""
    path, state, backups = files
    original = SAMPLES[name]
    path.write_text(original)
    cs.connect(path, state, backups, VALUES)

    def user_edit(text: str) -> str:
        text = set_member(text, scan(text), "model", '"haiku"')
        return set_member(text, scan(text), "userAdded", '{"k": [1, 2]}')

    path.write_text(user_edit(path.read_text()))
    cs.disconnect(path, state, backups)
    assert path.read_text() == user_edit(original)


def test_reconnect_with_a_new_token_still_restores_the_first_original(files):
    path, state, backups = files
    original = SAMPLES["our keys with other values"]
    path.write_text(original)
    cs.connect(path, state, backups, VALUES)
    cs.connect(path, state, backups, {cs.BASE_URL: "http://127.0.0.1:9999", cs.AUTH_TOKEN: "new",
                                      "ANTHROPIC_CUSTOM_HEADERS": "x-patchbay-token: new"})
    assert json.loads(path.read_text())["env"][cs.AUTH_TOKEN] == "new"
    assert cs.status(path, state, URL, TOKEN).state == "outdated"
    assert cs.status(path, state, "http://127.0.0.1:9999", "new").state == "connected"
    cs.disconnect(path, state, backups)
    assert path.read_text() == original


def test_an_option_left_out_on_reconnect_is_taken_back_out(files):
    path, state, backups = files
    original = SAMPLES["hooks, plugins, statusLine, permissions"]
    path.write_text(original)
    cs.connect(path, state, backups, {**VALUES, cs.NONESSENTIAL: "1", cs.ALIAS_KEYS["haiku"]: "ollama,qwen3:8b"})
    st_ = cs.status(path, state, URL, TOKEN)
    assert st_.connected and set(st_.options) == {"nonessential", "aliases"}
    cs.connect(path, state, backups, VALUES)
    env = json.loads(path.read_text())["env"]
    assert cs.NONESSENTIAL not in env and cs.ALIAS_KEYS["haiku"] not in env
    cs.disconnect(path, state, backups)
    assert path.read_text() == original


def test_our_key_changed_by_someone_else_is_left_alone_and_reported(files):
    path, state, backups = files
    original = SAMPLES["env absent"]
    path.write_text(original)
    cs.connect(path, state, backups, VALUES)
    text = path.read_text()
    env = scan(text).get("env")[0].value
    path.write_text(set_member(text, env, cs.BASE_URL, '"https://other-tool.example"'))
    st_ = cs.status(path, state, URL, TOKEN)
    assert st_.state == "changed" and cs.BASE_URL in st_.message and "other-tool.example" in st_.message
    out = cs.disconnect(path, state, backups)
    assert out.kept == (cs.BASE_URL,) and cs.BASE_URL in out.message
    data = json.loads(path.read_text())
    assert data["env"] == {cs.BASE_URL: "https://other-tool.example"} and data["model"] == "opus"


def test_status_names_each_situation(files):
    path, state, backups = files
    assert cs.status(path, state, URL, TOKEN).state == "not_connected"
    path.write_text('{"env": {"ANTHROPIC_BASE_URL": "https://gw.example"}}')
    s = cs.status(path, state, URL, TOKEN)
    assert s.state == "other_gateway" and s.base_url == "https://gw.example" and "gw.example" in s.message
    cs.connect(path, state, backups, VALUES)
    assert cs.status(path, state, URL, TOKEN).state == "connected"
    text = path.read_text()
    path.write_text(set_member(text, scan(text), "model", '"opus"'))
    s = cs.status(path, state, URL, TOKEN)
    assert s.connected and s.edited_since and "edited since" in s.message
    path.write_text("{oops")
    s = cs.status(path, state, URL, TOKEN)
    assert s.state == "invalid" and "line 1, column 2" in s.message


def test_connected_by_hand_or_an_older_patchbay_counts_as_connected(files):
    path, state, backups = files
    path.write_text(json.dumps({"env": VALUES, "model": "opus"}, indent=2))
    assert cs.status(path, state, URL, TOKEN).connected
    out = cs.disconnect(path, state, backups, gateway_url=URL)
    assert out.changed and json.loads(path.read_text()) == {"env": {}, "model": "opus"}  # env itself was theirs
    path.write_text(json.dumps({"env": {cs.BASE_URL: "https://elsewhere"}}))
    out = cs.disconnect(path, state, backups, gateway_url=URL)
    assert not out.changed and "has not connected" in out.message
    assert json.loads(path.read_text()) == {"env": {cs.BASE_URL: "https://elsewhere"}}


BAD = {
    "a line comment": ('{\n  "env": {}, // mine\n  "a": 1\n}\n', "line 2, column 14", "comment"),
    "a block comment": ('/* settings */\n{}', "line 1, column 1", "comment"),
    "a trailing comma": ('{\n  "a": 1,\n}\n', "line 3, column 1", "trailing comma"),
    "single quotes": ("{'a': 1}", "line 1, column 2", "double-quoted"),
    "an array": ("[1, 2]", "", "not an object"),
    "cut short": ('{"env": {"A": "1"', "line 1, column 18", "never closed"),
    "NaN": ('{"a": NaN}', "line 1, column 7", "NaN"),
    "env not an object": ('{"env": ["A=1"]}', "", '"env" is a array'),
    "env twice": ('{"env": {}, "env": {}}', "", 'names "env" 2 times'),
    "a raw tab in a string": ('{"a": "x\ty"}', "line 1, column 9", "control character"),
    "two values": ('{} {}', "line 1, column 4", "more text"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_file_that_is_not_strict_json_is_left_untouched_with_a_sentence(name: str, files):
    path, state, backups = files
    text, where, words = BAD[name]
    path.write_text(text)
    mtime = path.stat().st_mtime_ns
    with pytest.raises(cs.SettingsFileError) as info:
        cs.connect(path, state, backups, VALUES)
    msg = str(info.value)
    assert str(path) in msg and where in msg and words in msg and "changed nothing" in msg
    assert path.read_text() == text and path.stat().st_mtime_ns == mtime
    assert not state.exists() and not backups.exists()


def test_not_utf8_is_refused(files):
    path, state, backups = files
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(cs.SettingsFileError, match="not UTF-8"):
        cs.connect(path, state, backups, VALUES)
    assert path.read_bytes() == b'{"a": "\xff"}'


def test_statusline_goes_in_only_where_the_user_has_none(files):
    path, state, backups = files
    mine = {"type": "command", "command": "patchbay-statusline"}
    original = SAMPLES["env absent"]
    path.write_text(original)
    cs.connect(path, state, backups, VALUES, {cs.STATUS_LINE: mine})
    assert json.loads(path.read_text())[cs.STATUS_LINE] == mine
    assert "statusline" in cs.status(path, state, URL, TOKEN).options
    cs.disconnect(path, state, backups)
    assert path.read_text() == original

    theirs = SAMPLES["hooks, plugins, statusLine, permissions"]
    path.write_text(theirs)
    result = cs.connect(path, state, backups, VALUES, {cs.STATUS_LINE: mine})
    assert result.skipped == (cs.STATUS_LINE,)
    assert json.loads(path.read_text())[cs.STATUS_LINE]["command"] == "~/.claude/statusline.sh"
    cs.disconnect(path, state, backups)
    assert path.read_text() == theirs


def test_a_symlinked_settings_file_stays_a_symlink(files, tmp_path: Path):
    path, state, backups = files
    target = tmp_path / "dotfiles" / "claude-settings.json"
    target.parent.mkdir()
    target.write_text(SAMPLES["compact"])
    path.symlink_to(target)
    cs.connect(path, state, backups, VALUES)
    assert path.is_symlink() and json.loads(target.read_text())["env"][cs.AUTH_TOKEN] == TOKEN
    cs.disconnect(path, state, backups)
    assert path.is_symlink() and target.read_text() == SAMPLES["compact"]


def test_connecting_twice_writes_once_and_backups_are_capped(files):
    path, state, backups = files
    path.write_text(SAMPLES["compact"])
    assert cs.connect(path, state, backups, VALUES).changed
    again = cs.connect(path, state, backups, VALUES)
    assert not again.changed and again.backup is None
    for i in range(cs.BACKUPS_KEPT + 3):
        cs.connect(path, state, backups, {**VALUES, cs.AUTH_TOKEN: f"t{i}"})
    assert len(list(backups.glob("settings.json.*.bak"))) == cs.BACKUPS_KEPT
    cs.disconnect(path, state, backups)
    assert path.read_text() == SAMPLES["compact"]


def test_scanner_positions_point_at_the_fault():
    with pytest.raises(JSONTextError) as info:
        scan('{\n  "a": 1\n  "b": 2\n}')
    assert (info.value.line, info.value.column) == (3, 3)
    assert "missing ','" in info.value.reason


# --------------------------------------------------------------------------- property


_key = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_scalar = st.none() | st.booleans() | st.integers(-10**6, 10**6) | \
    st.floats(allow_nan=False, allow_infinity=False, width=32) | st.text(max_size=12)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=4),
                     max_leaves=12)
_env = st.dictionaries(st.sampled_from(["FOO", "DISABLE_TELEMETRY", cs.BASE_URL, cs.AUTH_TOKEN, "Ünï"]),
                       st.text(max_size=10), max_size=4)
_doc = st.builds(lambda d, env, has_env: {**d, "env": env} if has_env else {k: v for k, v in d.items() if k != "env"},
                 st.dictionaries(_key, _json, max_size=6), _env, st.booleans())
_layout = st.fixed_dictionaries({
    "indent": st.sampled_from([None, 0, 1, 2, 4, "\t", "   "]),
    "ensure_ascii": st.booleans(),
    "sort_keys": st.booleans(),
    "separators": st.sampled_from([None, (",", ":"), (", ", ": "), (" ,", " : ")]),
    "newline": st.sampled_from(["", "\n", "\r\n", "\n\n"]),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_doc, layout=_layout)
def test_any_json_object_round_trips_byte_for_byte(files, doc: dict, layout: dict):
    path, state, backups = files
    newline = layout.pop("newline")
    text = json.dumps(doc, **layout) + newline
    if layout["indent"] is not None and newline == "\r\n":
        text = text.replace("\n", "\r\n")
    path.write_bytes(text.encode())
    state.unlink(missing_ok=True)
    cs.connect(path, state, backups, VALUES)
    after = path.read_bytes().decode()
    assert json.loads(after) == {**doc, "env": {**doc.get("env", {}), **VALUES}}
    assert {k: v for k, v in _members_raw(after).items() if k != "env"} == \
        {k: v for k, v in _members_raw(text).items() if k != "env"}
    cs.disconnect(path, state, backups)
    assert path.read_bytes() == text.encode()


# --------------------------------------------------------------------------- after Claude Code rewrote the file

STATUS = {"type": "command", "command": "python -I -S -c 'import statusline' --ledger /x", "padding": 0}


def claude_code_saves(path: Path, **changes: object) -> None:
    """What Claude Code does when it saves a setting (e.g. after /model): the whole file rewritten
    with two-space indentation, keys in its order, the change applied."""
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False))


def test_a_reformatted_statusline_is_still_patchbays_and_the_created_file_goes(files):
    path, state, backups = files
    cs.connect(path, state, backups, VALUES, {cs.STATUS_LINE: STATUS})
    assert '"statusLine": {"type": "command"' in path.read_text()  # written on one line
    claude_code_saves(path)
    assert cs.status(path, state, URL, TOKEN).connected and "statusline" in cs.status(path, state, URL, TOKEN).options
    out = cs.disconnect(path, state, backups)
    assert out.removed_file and not path.exists() and out.kept == ()
    assert out.summary() == f"Removed {path}, which Patchbay had created."


def test_a_model_saved_by_slash_model_is_named_and_removed_on_request(files):
    path, state, backups = files
    cs.connect(path, state, backups, VALUES, {cs.STATUS_LINE: STATUS})
    claude_code_saves(path, model="deepseek,deepseek-chat")
    out = cs.disconnect(path, state, backups)
    # only "model" is left, and the answer says exactly that, and why the file stays
    assert json.loads(path.read_text()) == {"model": "deepseek,deepseek-chat"}
    assert out.gateway_model == "deepseek,deepseek-chat" and out.others == ("model",)
    text = out.summary()
    assert "back to what it held before" not in text
    assert 'kept it, because it now holds settings Patchbay did not write: "model"' in text
    assert '"model" is still "deepseek,deepseek-chat"' in text and "--remove-model" in text
    assert cs.remove_gateway_model(path, backups) == "deepseek,deepseek-chat"
    assert json.loads(path.read_text()) == {}

    path.unlink()
    cs.connect(path, state, backups, VALUES, {cs.STATUS_LINE: STATUS})
    claude_code_saves(path, model="deepseek,deepseek-chat")
    out = cs.disconnect(path, state, backups, remove_model=True)
    assert out.removed_file and out.removed_model == "deepseek,deepseek-chat" and not path.exists()
    assert "Removed \"model\": \"deepseek,deepseek-chat\"" in out.summary()


def test_after_a_reformat_disconnect_says_the_settings_are_back_but_not_the_layout(files):
    path, state, backups = files
    original = SAMPLES["env absent"]  # four-space indentation
    path.write_text(original)
    cs.connect(path, state, backups, VALUES, {cs.STATUS_LINE: STATUS})
    claude_code_saves(path)
    out = cs.disconnect(path, state, backups)
    assert json.loads(path.read_text()) == json.loads(original)
    assert out.same_settings and not out.identical and out.others == () and out.kept == ()
    assert "holds the same settings as before Patchbay connected; only its layout differs" in out.summary()

    path.write_text(original)
    cs.connect(path, state, backups, VALUES)
    out = cs.disconnect(path, state, backups)
    assert path.read_text() == original and out.identical
    assert out.summary() == f"{path} is back to what it held before Patchbay connected."


def test_other_settings_changed_since_are_named_and_kept(files):
    path, state, backups = files
    path.write_text(HOOKS_FILE)
    cs.connect(path, state, backups, VALUES)
    claude_code_saves(path, model="sonnet", cleanupPeriodDays=7)
    out = cs.disconnect(path, state, backups)
    after = json.loads(path.read_text())
    assert after["model"] == "sonnet" and cs.BASE_URL not in after["env"]
    assert out.others == ("cleanupPeriodDays", "model") and out.gateway_model is None  # "sonnet" is no gateway name
    assert not out.same_settings
    assert ('Left as they are, because they changed after Patchbay connected and are not Patchbay\'s: '
            '"cleanupPeriodDays", "model".') in out.summary()
    assert "Patchbay's keys in" in out.summary()


def test_a_backend_model_the_user_had_before_connecting_is_theirs(files):
    path, state, backups = files
    path.write_text('{"model": "corp,claude-x"}')
    cs.connect(path, state, backups, VALUES)
    out = cs.disconnect(path, state, backups, remove_model=True)
    assert path.read_text() == '{"model": "corp,claude-x"}' and out.gateway_model is None and out.removed_model is None


def test_connect_turns_on_claude_codes_hint_headers(files, tmp_path: Path):
    from app.claude import connect as claude_code
    from app.paths import Paths

    path, _state, _backups = files
    paths = Paths(tmp_path / "cfg", tmp_path / "data", tmp_path / "logs")
    paths.ensure()
    claude_code.connect(paths, URL, TOKEN, settings=path)
    assert json.loads(path.read_text())["env"][cs.HINT_HEADERS] == "1"
    assert json.loads(path.read_text())["env"][cs.TOOL_SEARCH] == "true"
    out = claude_code.disconnect(paths, URL, settings=path)
    assert out.removed_file and not path.exists()


def test_connect_keeps_the_users_own_tool_search_setting(files, tmp_path: Path):
    from app.claude import connect as claude_code
    from app.paths import Paths

    path, _state, _backups = files
    path.write_text('{"env": {"ENABLE_TOOL_SEARCH": "auto:5"}}')
    paths = Paths(tmp_path / "cfg", tmp_path / "data", tmp_path / "logs")
    paths.ensure()
    claude_code.connect(paths, URL, TOKEN, settings=path)
    assert json.loads(path.read_text())["env"][cs.TOOL_SEARCH] == "auto:5"
    claude_code.disconnect(paths, URL, settings=path)
    assert json.loads(path.read_text()) == {"env": {"ENABLE_TOOL_SEARCH": "auto:5"}}


def test_remove_model_puts_back_the_model_the_user_had_before_connecting(files):
    path, state, backups = files
    path.write_text('{\n  "model": "opus",\n  "hooks": {}\n}\n')
    cs.connect(path, state, backups, VALUES)
    claude_code_saves(path, model="deepseek,deepseek-chat")  # /model deepseek,deepseek-chat while connected
    cs.connect(path, state, backups, VALUES)  # a reconnect (new token, new port) keeps what was there first
    out = cs.disconnect(path, state, backups, remove_model=True)
    assert json.loads(path.read_text()) == {"model": "opus", "hooks": {}}
    assert (out.removed_model, out.restored_model, out.gateway_model) == ("deepseek,deepseek-chat", "opus", None)
    assert ('Put back "model": "opus" (what it held before Patchbay connected) in place of '
            '"deepseek,deepseek-chat"') in out.summary()


def test_remove_model_removes_it_where_there_was_none_before(files):
    path, state, backups = files
    path.write_text('{"hooks": {}}')
    cs.connect(path, state, backups, VALUES)
    claude_code_saves(path, model="deepseek,deepseek-chat")
    out = cs.disconnect(path, state, backups, remove_model=True)
    assert json.loads(path.read_text()) == {"hooks": {}} and out.restored_model is None
    assert out.removed_model == "deepseek,deepseek-chat"
