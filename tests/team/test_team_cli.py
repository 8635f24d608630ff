"""``patchbay team key create|list|revoke`` through the real entry point."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.__main__ import main
from app.team.identity import AuthError
from app.team.keys import KEY_PREFIX, KeysVerifier
from app.team.keystore_sqlite import SqliteKeyStore
from app.team.wording import parse_expiry

ROOT = Path(__file__).resolve().parents[2]


def test_create_prints_the_key_once_and_list_and_revoke_follow(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "usage.sqlite3")
    assert main(["team", "key", "create", "alice@corp.example", "--group", "eng", "--group", "eng",
                 "--expires", "90d", "--ledger", db]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith(KEY_PREFIX) and "\n" not in secret
    assert "shown this once" in err and secret not in err
    key_id = err.split("team key ")[1].split()[0]
    store = SqliteKeyStore(Path(db))
    identity = asyncio.run(KeysVerifier(store).verify({"authorization": f"Bearer {secret}"}))
    assert identity is not None and identity.user == "alice@corp.example" and identity.groups == ("eng",)

    assert main(["team", "key", "list", "--ledger", db]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "alice@corp.example" in listing and "active" in listing
    assert secret not in listing

    assert main(["team", "key", "revoke", key_id, "--ledger", db]) == 0
    assert "Revoked the team key" in capsys.readouterr().out
    with pytest.raises(AuthError):
        asyncio.run(KeysVerifier(store).verify({"authorization": f"Bearer {secret}"}))
    assert main(["team", "key", "revoke", key_id, "--ledger", db]) == 0
    assert "already revoked" in capsys.readouterr().out

    assert main(["team", "key", "list", "--json", "--ledger", db]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == key_id and rows[0]["status"] == "revoked" and rows[0]["expires_at"] > 0
    assert main(["team", "key", "list", "--active", "--ledger", db]) == 0
    assert "No team keys yet" in capsys.readouterr().out
    store.close()


def test_mistakes_are_sentences_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "usage.sqlite3")
    assert main(["team", "key", "create", "alice", "--ledger", db]) == 2
    assert "is not an e-mail address" in capsys.readouterr().err
    assert main(["team", "key", "create", "a@corp.example", "--expires", "soon", "--ledger", db]) == 2
    assert "is not a span or a date" in capsys.readouterr().err
    assert main(["team", "key", "create", "a@corp.example", "--group", "bad group", "--ledger", db]) == 2
    assert "is not a group name" in capsys.readouterr().err
    assert main(["team", "key", "revoke", "key_nope", "--ledger", db]) == 2
    assert "there is no team key 'key_nope'" in capsys.readouterr().err


def test_expiry_spans_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_expiry("90d", now) == now + 90 * 86400
    assert parse_expiry("12w", now) == now + 12 * 7 * 86400
    assert parse_expiry("never", now) is None
    assert parse_expiry("2030-01-01", now) == 1893456000.0
    with pytest.raises(ValueError):
        parse_expiry("2020-01-01", now)
    with pytest.raises(ValueError):
        parse_expiry("0d", now)


def test_the_installed_command_works(tmp_path: Path) -> None:
    env = {**os.environ, "PATCHBAY_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "app", "team", "key", "create", "bob@corp.example"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = subprocess.run([sys.executable, "-m", "app", "team", "key", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "bob@corp.example" in listed.stdout
    assert (tmp_path / "home").exists()
