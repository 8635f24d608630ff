"""``patchbay team budgets``: an admin's text and JSON view of each person's and group's standing,
from the ledger the gateways' config names (this machine's SQLite file, or PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from app.__main__ import main as cli
from app.config import LedgerSettings
from app.events import Usage, finished_request
from app.ledger.pg import PgStore
from app.ledger.spool import Spool
from app.ledger.writer import Ledger
from app.paths import default_paths
from tests.unit.test_ledger import PRICES

CONFIG = '''
[[backends]]
id = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
auth = "keyring"

[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]

[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 10
warn_at = 0.5

[[budgets]]
scope = "group:eng"
period = "month"
limit_usd = 100
action = "downgrade:anthropic,claude-haiku-4-5"
'''


def spend(ledger: Ledger, user: str, dollars: float, n: int) -> None:
    """``n`` requests by ``user`` (group eng) costing ``dollars`` in all (sonnet output: $15 per million)."""
    now = time.time()
    for i in range(n):
        e = finished_request(f"r-{user}-{i}", now - 60 - i, model="claude-sonnet-4-5",
                             usage=Usage(0, round(dollars / n / 15e-6)))
        ledger.record(dataclasses.replace(e, user=user, groups=("eng",), identity_source="keys"))


@pytest.mark.parametrize("store", ["sqlite", "pg"])
def test_team_budgets_prints_each_persons_standing(store: str, patchbay_home: Path, request: pytest.FixtureRequest,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    paths = default_paths()
    paths.ensure()
    config = patchbay_home / "team.toml"
    if store == "pg":
        url = request.getfixturevalue("pg_server").create_db()
        config.write_text(CONFIG + f'\n[ledger]\nurl = "{url}"\n')
        ledger = Ledger(paths.ledger_file, prices=PRICES, settings=LedgerSettings(), store=PgStore(url),
                        spool=Spool(patchbay_home / "spool.sqlite3"))
    else:
        config.write_text(CONFIG)
        ledger = Ledger(paths.ledger_file, prices=PRICES, settings=LedgerSettings())
    ledger.start()
    spend(ledger, "alice@corp.example", 6.0, 3)
    spend(ledger, "bob@corp.example", 1.0, 2)
    assert ledger.flush(10)
    ledger.close()

    assert cli(["team", "budgets", "--config", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    got = [(r["subject"], r["budget"], round(r["spent_usd"], 2), r["state"], r["requests"]) for r in rows]
    assert got == [("alice@corp.example", "each-user / month $10", 6.0, "warn", 3),
                   ("bob@corp.example", "each-user / month $10", 1.0, "ok", 2),
                   ("eng", "group:eng / month $100", 7.0, "ok", 5)]

    assert cli(["--config", str(config), "team", "budgets"]) == 0  # the global --config, before the command
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["WHO", "BUDGET", "SPENT", "LIMIT", "USED", "STATE", "RESETS"]
    assert text[1].split()[:9] == ["alice@corp.example", "each-user", "/", "month", "$10", "$6.00", "$10.00", "60%",
                                   "warn"]


def test_team_budgets_says_what_is_missing(patchbay_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["team", "budgets", "--config", str(patchbay_home / "nope.toml")]) == 2
    assert "there is no config file" in capsys.readouterr().err
    patchbay_home.mkdir(parents=True, exist_ok=True)
    plain = patchbay_home / "plain.toml"
    plain.write_text(CONFIG.split("[[budgets]]")[0])
    assert cli(["team", "budgets", "--config", str(plain)]) == 0
    assert "has no budgets" in capsys.readouterr().out
