"""``patchbay team join URL`` / ``leave`` / ``credential`` on a developer's laptop: settings.json
merged and given back byte for byte, the key kept in the keychain (never in a file), the helper
command Claude Code runs printing it, and the team gateway asked first whether it accepts it."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.__main__ import main as cli
from app.config import parse_config
from app.events import EventHub
from app.host.secrets import resolve_backend_key
from app.proxy.server import ProxyRuntime
from app.team.chain import build_chain
from app.team.keystore_sqlite import SqliteKeyStore
from tests.fakes.upstreams import FakeUpstream
from tests.gateway.conftest import TOKEN, config_text

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = ('{\r\n    "permissions": {"allow": ["Bash(ls)"]},\r\n    "env": {"FOO": "bar"},\r\n'
            '    "hooks": {}   \r\n}')


@pytest.fixture
def keys_gateway(tmp_path: Path) -> Iterator[tuple[str, SqliteKeyStore]]:
    with FakeUpstream(wire="anthropic", models=("claude-sonnet-4-5",)) as up:
        cfg = parse_config(config_text([{"id": "main", "kind": "anthropic", "base_url": up.url, "auth": "none",
                                         "models": ["claude-sonnet-4-5"]}], active="main")
                           + '\n[team]\nidentity = ["keys"]\n')
        store = SqliteKeyStore(tmp_path / "team.sqlite3")
        rt = ProxyRuntime(cfg, token=TOKEN, hub=EventHub(), keys=resolve_backend_key,
                          identity=build_chain(cfg.team, keys=store))
        rt.start()
        try:
            yield rt.url, store
        finally:
            rt.stop(timeout=5)
            store.close()


def _join(monkeypatch: pytest.MonkeyPatch, settings: Path, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli(["team", "join", *args, "--settings", str(settings)])


def test_join_then_leave_gives_back_the_same_bytes(patchbay_home, tmp_path, monkeypatch, keys_gateway, capsys,
                                                   memory_keyring):
    url, store = keys_gateway
    _, key = store.create("alice@corp.example")
    settings = tmp_path / "claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_bytes(ORIGINAL.encode())
    assert _join(monkeypatch, settings, url, stdin=key + "\n") == 0
    out = capsys.readouterr().out
    assert "1 model open to you" in out and key not in out
    merged = json.loads(settings.read_text())
    assert merged["env"] == {"FOO": "bar", "ANTHROPIC_BASE_URL": url}
    assert merged["permissions"] == {"allow": ["Bash(ls)"]} and "team" in merged["apiKeyHelper"]
    assert key not in settings.read_text(), "the key lives in the keychain, never in settings.json"
    assert memory_keyring.store[("patchbay", "team-key")] == key
    assert cli(["team", "credential"]) == 0 and capsys.readouterr().out.strip() == key
    assert cli(["team", "leave", "--settings", str(settings)]) == 0
    assert settings.read_bytes() == ORIGINAL.encode()
    assert ("patchbay", "team-key") not in memory_keyring.store
    assert cli(["team", "credential"]) == 2 and "no team key is stored" in capsys.readouterr().err


def test_join_with_a_key_command_and_into_no_file_at_all(patchbay_home, tmp_path, monkeypatch, keys_gateway):
    url, store = keys_gateway
    _, key = store.create("bob@corp.example")
    settings = tmp_path / "claude" / "settings.json"
    command = shlex.join([sys.executable, "-c", f"print({key!r})"])
    assert _join(monkeypatch, settings, url, "--key-command", command) == 0
    merged = json.loads(settings.read_text())
    assert merged == {"env": {"ANTHROPIC_BASE_URL": url}, "apiKeyHelper": command}
    assert cli(["team", "leave", "--settings", str(settings)]) == 0
    assert not settings.exists(), "a file join created goes away again"


def test_join_refuses_what_it_cannot_do_safely(patchbay_home, tmp_path, monkeypatch, keys_gateway, capsys):
    url, store = keys_gateway
    settings = tmp_path / "settings.json"
    # a key the gateway does not know: refused by the gateway, nothing written
    assert _join(monkeypatch, settings, url, stdin="pbk_" + "x" * 43) == 2
    err = capsys.readouterr().err
    assert "refused the credential (401)" in err and "x" * 43 not in err and not settings.exists()
    assert _join(monkeypatch, settings, url, stdin="sk-ant-not-a-team-key") == 2
    assert "not a Patchbay team key" in capsys.readouterr().err
    assert _join(monkeypatch, settings, "http://patchbay.corp.example", "--no-check", stdin="pbk_" + "y" * 43) == 2
    assert "plain http to another machine" in capsys.readouterr().err
    for text, what in (('{"apiKeyHelper": "my-own-helper"}', "apiKeyHelper of your own"),
                       ('{"env": {"ANTHROPIC_AUTH_TOKEN": "t"}}', "env.ANTHROPIC_AUTH_TOKEN")):
        settings.write_text(text)
        _, key = store.create("carol@corp.example")
        assert _join(monkeypatch, settings, url, stdin=key) == 2
        assert what in capsys.readouterr().err and settings.read_text() == text


def test_the_helper_command_prints_the_key_from_the_keychain_in_a_process_of_its_own(tmp_path):
    from app.claude.team_join import credential_command

    ring = tmp_path / "ring.json"
    ring.write_text(json.dumps({"patchbay/team-key": "pbk_" + "k" * 43}))
    env = {"PATH": os.environ["PATH"], "PYTHON_KEYRING_BACKEND": "tests.fakes.keyring_backend.FileKeyring",
           "PB_TEST_KEYRING_FILE": str(ring), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    done = subprocess.run(credential_command(), shell=True, capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "pbk_" + "k" * 43 + "\n"
