"""The append-only audit trail in the ledger database: keys created and revoked (by the CLI),
a config with new policy loaded (by the engine, at start and on reload, once per new policy),
`patchbay team audit [--since] [--json|--csv]`, and no way to change or delete an entry."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from app.__main__ import main as cli
from app.core import Engine
from app.team.keystore_sqlite import SqliteKeyStore
from tests.fakes.upstreams import FakeUpstream
from tests.gateway.conftest import config_text


def _config(url: str, models: str) -> str:
    return config_text([{"id": "main", "kind": "anthropic", "base_url": url, "auth": "none"}], active="main") + f'''

[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
models = {models}
'''


def test_admin_actions_and_policy_loads_are_audited(patchbay_home: Path, monkeypatch, capsys):
    monkeypatch.setenv("PATCHBAY_TOKEN", "tok")
    patchbay_home.mkdir(parents=True)
    with FakeUpstream(wire="anthropic") as up:
        cfg = patchbay_home / "config.toml"
        cfg.write_text(_config(up.url, '["claude-sonnet-*"]'))
        assert cli(["team", "key", "create", "alice@corp.example", "--group", "eng"]) == 0
        secret = capsys.readouterr().out.strip()
        eng = Engine()
        eng.start()
        try:
            eng.reload()  # the same policy: nothing new to record
            cfg.write_text(_config(up.url, '["claude-*"]'))
            eng.reload()
        finally:
            eng.stop()
    listed = json.loads((cli(["team", "key", "list", "--json"]), capsys.readouterr().out)[1])
    assert cli(["team", "key", "revoke", listed[0]["id"]]) == 0
    capsys.readouterr()

    assert cli(["team", "audit", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in entries] == ["key.created", "config.loaded", "config.loaded", "key.revoked"]
    assert entries[0]["detail"]["user"] == "alice@corp.example" and entries[0]["subject"] == listed[0]["id"]
    assert entries[1]["detail"]["changes"] == ["first policy recorded"]
    assert entries[2]["detail"]["changes"] == ['group "eng" models: [\'claude-sonnet-*\'] -> [\'claude-*\']']
    assert all("@" in e["actor"] for e in entries)
    assert secret not in json.dumps(entries)

    assert cli(["team", "audit", "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["seq", "at_utc", "actor", "action", "subject", "detail"] and len(rows) == 5
    assert cli(["team", "audit"]) == 0
    text = capsys.readouterr().out
    assert "key.revoked" in text and 'group "eng" models' in text
    assert cli(["team", "audit", "--since", "2999-01-01"]) == 0
    assert "No admin actions recorded in that period." in capsys.readouterr().out
    assert cli(["team", "audit", "--since", "yesterday"]) == 2


def test_the_audit_table_refuses_updates_and_deletes(tmp_path: Path):
    store = SqliteKeyStore(tmp_path / "usage.sqlite3")
    store.create("alice@corp.example", created_by="admin@host")
    store.close()
    conn = sqlite3.connect(tmp_path / "usage.sqlite3")
    for sql in ("UPDATE team_audit SET actor = 'someone else'", "DELETE FROM team_audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    assert conn.execute("SELECT count(*), min(actor) FROM team_audit").fetchone() == (1, "admin@host")
    conn.close()
