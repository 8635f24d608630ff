"""Shared fixtures. No OS keychain exists on CI machines: every test gets an in-memory one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import keyring
import pytest

from tests.fakes.keyring_backend import MemoryKeyring

if TYPE_CHECKING:
    from tests.pg import PgServer


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    kr = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(kr)
    yield kr
    keyring.set_keyring(previous)


@pytest.fixture
def patchbay_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "patchbay-home"
    monkeypatch.setenv("PATCHBAY_HOME", str(home))
    monkeypatch.delenv("PATCHBAY_TOKEN", raising=False)
    return home


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # loopback tests must never go through a proxy a developer has set
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the whole run (tests/pg.py); each test makes its own
    database with ``pg_server.create_db()``."""
    from tests.pg import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of the test's own, for tests that stop and restart it (not the shared one)."""
    from tests.pg import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.destroy()
