"""An in-memory keyring backend: a real ``keyring`` backend that keeps secrets in a dict.

CI machines have no OS keychain; tests and the screenshot script install this one so nothing
ever touches a developer's real keychain."""

from __future__ import annotations

import keyring.backend


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class FileKeyring(keyring.backend.KeyringBackend):
    """The same, kept in the JSON file ``$PB_TEST_KEYRING_FILE``: for child processes (an
    ``apiKeyHelper`` that Claude Code runs) selected with
    ``PYTHON_KEYRING_BACKEND=tests.fakes.keyring_backend.FileKeyring``."""

    priority = 1  # type: ignore[assignment]

    def _load(self) -> dict[str, str]:
        import json
        import os

        try:
            with open(os.environ["PB_TEST_KEYRING_FILE"], encoding="utf-8") as f:
                data: dict[str, str] = json.load(f)
                return data
        except FileNotFoundError:
            return {}

    def _save(self, data: dict[str, str]) -> None:
        import json
        import os

        with open(os.environ["PB_TEST_KEYRING_FILE"], "w", encoding="utf-8") as f:
            json.dump(data, f)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        data.pop(f"{service}/{username}", None)
        self._save(data)


class LockedKeyring(MemoryKeyring):
    """A keychain that exists but refuses to store (locked, or its D-Bus service does not answer)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        from keyring.errors import PasswordSetError

        raise PasswordSetError("the collection is locked")
