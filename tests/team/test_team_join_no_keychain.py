"""Issue 26 item 2: `patchbay team join` on a laptop with no keychain keeps the team key in the private
file (0600) and says so; `patchbay team credential` (Claude Code's helper) prints it; leave removes it."""

from __future__ import annotations

import json
import stat

import keyring
from keyring.backends import fail

from app.__main__ import main as cli
from tests.team.test_team_join import _join, keys_gateway  # noqa: F401 - the fixture


def test_join_without_a_keychain_keeps_the_key_in_the_private_file(patchbay_home, tmp_path, monkeypatch,
                                                                   keys_gateway, capsys):  # noqa: F811
    keyring.set_keyring(fail.Keyring())
    url, store = keys_gateway
    _, key = store.create("dana@corp.example")
    settings = tmp_path / "claude" / "settings.json"
    assert _join(monkeypatch, settings, url, stdin=key + "\n") == 0
    out = capsys.readouterr().out
    assert "private file readable only by you" in out and key not in out
    path = patchbay_home / "data" / "api-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["keys"] == {"patchbay/team-key": key}
    assert cli(["team", "credential"]) == 0 and capsys.readouterr().out.strip() == key
    assert cli(["team", "leave", "--settings", str(settings)]) == 0
    assert json.loads(path.read_text())["keys"] == {}
