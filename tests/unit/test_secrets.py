"""Where the gateway token and API keys live when the OS keychain cannot keep them."""

from __future__ import annotations

import stat
from pathlib import Path

import keyring
import pytest
from keyring.backends import null

from app.services import secrets
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


def test_the_null_keyring_is_no_keychain_for_api_keys(monkeypatch):
    keyring.set_keyring(null.Keyring())
    assert not secrets.keychain_available()
    with pytest.raises(secrets.NoKeychainError) as err:
        secrets.set_api_key("openrouter", "sk-or-123")  # would be silently dropped otherwise
    assert 'auth = "env:NAME"' in str(err.value)
