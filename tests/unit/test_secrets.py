"""Where the gateway token and API keys live when the OS keychain cannot keep them."""

from __future__ import annotations

import stat
from pathlib import Path

import keyring
import pytest
from keyring.backends import null

from app.host import secrets
from tests.fakes.keyring_backend import MemoryKeyring


class ForgetfulKeyring(MemoryKeyring):
    """Accepts every password and keeps none (a misconfigured or read-only keychain)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        pass


@pytest.mark.parametrize("backend", [null.Keyring(), ForgetfulKeyring()], ids=["null", "forgetful"])
def test_a_keychain_that_keeps_nothing_gives_one_token_from_a_private_file(tmp_path: Path, monkeypatch, backend):
    monkeypatch.delenv(secrets.TOKEN_ENV, raising=False)
    keyring.set_keyring(backend)
    token_file = tmp_path / "gateway-token"
    first, source = secrets.gateway_token(token_file)
    again, source_again = secrets.gateway_token(token_file)  # what `patchbay env` sees next to `serve`
    assert first == again and (source, source_again) == ("file", "file")
    assert token_file.read_text().strip() == first
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_the_null_keyring_is_no_keychain_for_api_keys(monkeypatch, patchbay_home):
    keyring.set_keyring(null.Keyring())
    assert not secrets.keychain_available()
    secrets.set_api_key("openrouter", "sk-or-123")  # not silently dropped: kept in the private file
    assert secrets.get_api_key("openrouter") == "sk-or-123"
    key_file = patchbay_home / "data" / secrets.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "private file" in secrets.store_label() and str(key_file) in secrets.store_label()


def test_a_key_stored_before_a_keychain_existed_is_still_found(monkeypatch, patchbay_home):
    keyring.set_keyring(null.Keyring())
    secrets.set_api_key("openrouter", "sk-or-early")
    keyring.set_keyring(MemoryKeyring())  # the user installs gnome-keyring later
    assert secrets.keychain_available() and secrets.get_api_key("openrouter") == "sk-or-early"
    secrets.set_api_key("openrouter", "sk-or-new")
    assert secrets.get_api_key("openrouter") == "sk-or-new"
