"""Who sent each request reaches the ledger on both stores (SQLite and the real PostgreSQL of
tests/pg.py): user, groups, identity source and client address per row, and `patchbay usage
--by user|group` reads them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from app.__main__ import main as cli
from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import Usage, finished_request
from tests.books import Books
from tests.gateway.conftest import config_text

CFG = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9",
                                 "auth": "none", "local": False}], active="anthropic"))


@pytest.fixture(params=["sqlite", "pg"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Books:
    return Books(request.param, tmp_path, request.getfixturevalue("pg_server") if request.param == "pg" else None)


def _ev(rid: str, user: str | None, groups: tuple[str, ...], source: str | None, cost_tokens: int):
    e = finished_request(rid, time.time() - 60, backend="anthropic", model="claude-sonnet-4-5",
                         usage=Usage(cost_tokens, 1000))
    return dataclasses.replace(e, user=user, groups=groups, identity_source=source, client_addr="10.0.0.7")


def test_rows_name_who_sent_them_and_usage_groups_by_user_and_group(books: Books, capsys, monkeypatch):
    led = books.ledger(PriceBook.load(CFG))
    led.start()
    led.record(_ev("r1", "alice@corp.example", ("eng",), "oidc", 1_000_000))
    led.record(_ev("r2", "bob@lab.example", ("research", "eng"), "keys", 2_000_000))
    led.record(_ev("r3", None, (), None, 10))
    assert led.flush()
    led.close()
    rows = sorted(books.raw("SELECT request_id, user_id, groups, identity_source, client_addr FROM requests"))
    assert rows == [("r1", "alice@corp.example", "eng", "oidc", "10.0.0.7"),
                    ("r2", "bob@lab.example", "research,eng", "keys", "10.0.0.7"), ("r3", None, None, None, "10.0.0.7")]
    reader = books.reader()
    try:
        by_user = reader.totals(None, None, "user")
        assert [(t.key, t.requests) for t in by_user] == [("bob@lab.example", 1), ("alice@corp.example", 1), ("-", 1)]
        assert by_user[0].cost_usd > by_user[1].cost_usd > 0
        by_group = {t.key: t.requests for t in reader.totals(None, None, "group")}
        assert by_group == {"eng": 2, "research": 1, "-": 1}
    finally:
        reader.close()
    if books.kind == "sqlite":
        monkeypatch.setenv("PATCHBAY_HOME", str(books.tmp / "home"))
        (books.tmp / "home" / "data").mkdir(parents=True)
        books.path.rename(books.tmp / "home" / "data" / "usage.sqlite3")
        assert cli(["usage", "--by", "user", "--json", "--since", "2000-01-01"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert [r["key"] for r in out["rows"]] == ["bob@lab.example", "alice@corp.example", "-"]
