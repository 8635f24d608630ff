from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.idp import FakeIdP


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    """One IdP for a module's tests that do not rotate its keys."""
    with FakeIdP() as server:
        yield server


@pytest.fixture
def fresh_idp() -> Iterator[FakeIdP]:
    """An IdP of its own, for tests that rotate keys or count fetches."""
    with FakeIdP() as server:
        yield server
