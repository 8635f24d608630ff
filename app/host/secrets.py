"""API keys and the gateway token, kept in the OS keychain through ``keyring``.

Where no keychain exists (a bare Linux desktop without a Secret Service, a server, a container),
API keys (and the team key, the ledger password) go to ``api-keys.json`` in the data folder instead:
a plain file readable only by the user (0600), labelled as such wherever a key is stored, so
``auth = "keyring"`` works unchanged. A key is looked up in the keychain first, then in that file
(a keychain installed later does not lose the keys stored before it). The gateway token falls back
to its own file, ``gateway-token``.
"""

from __future__ import annotations

import os
import secrets as _secrets
import stat
from pathlib import Path
from typing import Any

SERVICE = "patchbay"
TOKEN_ACCOUNT = "gateway-token"
TOKEN_ENV = "PATCHBAY_TOKEN"


class NoKeychainError(Exception):
    """No usable OS keychain. ``str()`` says what to do."""


class SecretError(Exception):
    """A secret that should be there is not. ``str()`` says what to do."""


def _keyring() -> Any:  # the keyring module, with a working backend
    import keyring
    from keyring.backends import fail, null

    kr = keyring.get_keyring()
    if isinstance(kr, (fail.Keyring, null.Keyring)):  # null: chosen by the user, and keeps nothing
        raise NoKeychainError(
            "No OS keychain is available on this machine, so API keys cannot be stored safely. "
            'Use auth = "env:NAME" for the backend and export the key in that variable, or install '
            "a keychain (on Linux: a Secret Service such as gnome-keyring or KWallet, or `pip install "
            "keyrings.alt` for a file-based one)."
        )
    return keyring


KEY_FILE = "api-keys.json"
_ABOUT = ("Patchbay's API keys, kept in this plain file (readable only by you) because no OS keychain "
          "was found. Anyone who can read your files as you can read them.")


def key_file() -> Path:
    from app.paths import default_paths

    return default_paths().data_dir / KEY_FILE


class FileStore:
    """The keyring calls Patchbay uses, on ``api-keys.json`` (0600): where no OS keychain exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        import json

        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        keys = data.get("keys") if isinstance(data, dict) else None
        return {k: v for k, v in keys.items() if isinstance(v, str)} if isinstance(keys, dict) else {}

    def _save(self, keys: dict[str, str]) -> None:
        import json

        _write_private(self.path, json.dumps({"about": _ABOUT, "keys": keys}, indent=1, sort_keys=True))

    def get_password(self, service: str, account: str) -> str | None:
        return self._load().get(f"{service}/{account}")

    def set_password(self, service: str, account: str, password: str) -> None:
        keys = self._load()
        keys[f"{service}/{account}"] = password
        self._save(keys)

    def delete_password(self, service: str, account: str) -> None:
        keys = self._load()
        if keys.pop(f"{service}/{account}", None) is not None:
            self._save(keys)


def _store() -> Any:
    """Where keys are written: the OS keychain, else the private file."""
    try:
        return _keyring()
    except NoKeychainError:
        return FileStore(key_file())


def store_label() -> str:
    """Where a stored key goes, in words for the user."""
    if keychain_available():
        return "the OS keychain"
    return f"a private file readable only by you ({key_file()}), as there is no OS keychain here"


def _lookup(account: str) -> str | None:
    """A stored secret: the keychain's, else the private file's."""
    value = _keyring().get_password(SERVICE, account) if keychain_available() else None
    return value or FileStore(key_file()).get_password(SERVICE, account)


def keychain_available() -> bool:
    try:
        _keyring()
        return True
    except NoKeychainError:
        return False


def get_api_key(backend_id: str) -> str | None:
    try:
        return _lookup(f"backend:{backend_id}")
    except Exception as exc:  # locked keychain, D-Bus errors, ...
        raise NoKeychainError(
            f"The OS keychain did not answer ({type(exc).__name__}). Unlock it and try again, or use "
            f'auth = "env:NAME" for the backend "{backend_id}".'
        ) from None


def set_api_key(backend_id: str, key: str) -> None:
    key = key.strip()
    if not key:
        raise SecretError("The API key is empty. Paste the key your provider gave you.")
    kr = _store()
    try:
        kr.set_password(SERVICE, f"backend:{backend_id}", key)
    except Exception as exc:
        raise NoKeychainError(
            f"The OS keychain refused to store the key ({type(exc).__name__}). Unlock it and try again, "
            f'or use auth = "env:NAME" for the backend "{backend_id}".'
        ) from None


def delete_api_key(backend_id: str) -> None:
    stores: list[Any] = [FileStore(key_file())] + ([_keyring()] if keychain_available() else [])
    for kr in stores:
        try:
            kr.delete_password(SERVICE, f"backend:{backend_id}")
        except Exception:
            pass


def resolve_backend_key(backend_id: str, auth: str) -> str | None:
    """The key a backend sends upstream, or None for ``client`` / ``none`` and for credentials
    that are fetched per request (``aws``, ``google``, ``command:...``: see app/proxy/credentials.py).

    Raises SecretError (or NoKeychainError) with a sentence when the key is missing.
    """
    if auth in ("client", "none", "aws", "google") or auth.startswith("command:"):
        return None
    if auth.startswith("env:"):
        name = auth[4:]
        value = os.environ.get(name)
        if not value:
            raise SecretError(
                f'The backend "{backend_id}" takes its API key from the environment variable {name}, '
                f"which is not set. Export it before starting Patchbay (export {name}=...)."
            )
        return value
    key = get_api_key(backend_id)
    if not key:
        raise SecretError(
            f'No API key is stored for the backend "{backend_id}". Add it on the Backends page, or run '
            f"`patchbay key set {backend_id}`."
        )
    return key


def new_token() -> str:
    return "pb-" + _secrets.token_urlsafe(24)


def gateway_token(token_file: Path, *, create: bool = True) -> tuple[str, str]:
    """The token clients must present, and where it came from ("env", "keychain", "file").

    ``PATCHBAY_TOKEN`` wins; then the keychain; where no keychain exists, a 0600 file.
    """
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env, "env"
    try:
        kr = _keyring()
        tok = kr.get_password(SERVICE, TOKEN_ACCOUNT)
        if tok:
            return tok, "keychain"
        if not create:
            raise SecretError("No gateway token exists yet. Start Patchbay once to create one.")
        tok = new_token()
        kr.set_password(SERVICE, TOKEN_ACCOUNT, tok)
        if kr.get_password(SERVICE, TOKEN_ACCOUNT) == tok:
            return tok, "keychain"
        # a keychain that does not keep what it is given: each process would invent its own token
    except NoKeychainError:
        pass
    except SecretError:
        raise
    except Exception:
        pass
    if token_file.exists():
        tok = token_file.read_text(encoding="utf-8").strip()
        if tok:
            return tok, "file"
    if not create:
        raise SecretError("No gateway token exists yet. Start Patchbay once to create one.")
    tok = new_token()
    _write_private(token_file, tok)
    return tok, "file"


def regenerate_token(token_file: Path) -> tuple[str, str]:
    tok = new_token()
    try:
        kr = _keyring()
        kr.set_password(SERVICE, TOKEN_ACCOUNT, tok)
        return tok, "keychain"
    except Exception:
        _write_private(token_file, tok)
        return tok, "file"


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
