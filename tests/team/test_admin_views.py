"""Admin views that tell the truth about team budgets.

- ``patchbay usage`` shows each person's standing under a per-person budget (their own rows), not
  the whole ledger's spend against one person's limit;
- ``patchbay team budgets`` lists the org-wide ``all`` and ``backend:`` budgets too;
- a budget change's audit entry says what changed, before and after, and whose config file it is;
- a developer refused by the org-wide budget of a team gateway is told to ask their admin, not to
  edit "Patchbay's settings" (the gateway on a real port, a person verified by the fake IdP).
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import time
from pathlib import Path

import httpx
import pytest

from app.__main__ import main as cli
from app.core import Engine
from app.events import Usage, finished_request
from app.ledger.writer import Ledger
from app.paths import default_paths
from tests.fakes.chunks import anthropic_message
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicJSON, FakeUpstream
from tests.gateway.conftest import config_text
from tests.unit.test_ledger import PRICES

BUDGETS = '''
[[budgets]]
scope = "each-user"
period = "month"
limit_usd = {each}

[[budgets]]
scope = "all"
period = "month"
limit_usd = 50
'''


def team_config(url: str, each: float = 10) -> str:
    return config_text([{"id": "anthropic", "kind": "anthropic", "base_url": url, "auth": "none", "local": False}],
                       active="anthropic") + '''
[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
''' + BUDGETS.format(each=each)


def _spent(patchbay_home: Path) -> Path:
    """A config and a ledger where alice spent $10.70 and bob $7.60 this month."""
    paths = default_paths()
    paths.ensure()
    config = patchbay_home / "team.toml"
    config.write_text(team_config("https://api.anthropic.com"))
    ledger = Ledger(paths.ledger_file, prices=PRICES)
    ledger.start()
    now = time.time()
    for user, dollars in (("alice@corp.example", 10.7), ("bob@corp.example", 7.6)):
        e = finished_request(f"r-{user}", now - 60, model="claude-sonnet-4-5", usage=Usage(0, round(dollars / 15e-6)))
        ledger.record(dataclasses.replace(e, user=user, groups=("eng",), identity_source="keys"))
    assert ledger.flush(10)
    ledger.close()
    return config


def test_usage_shows_each_persons_own_standing_under_a_per_person_budget(
        patchbay_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _spent(patchbay_home)
    assert cli(["--config", str(config), "usage"]) == 0
    out = capsys.readouterr().out
    budgets = out[out.index("Budgets:"):].splitlines()[1:]
    assert [line.split(", ")[0].strip() for line in budgets] == [
        "each-user / month $10 alice@corp.example: $10.70 spent (107%)",
        "each-user / month $10 bob@corp.example: $7.60 spent (76%)",
        "all / month $50: $18.30 spent (37%)",
    ]


def test_team_budgets_lists_the_org_wide_budget(patchbay_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _spent(patchbay_home)
    assert cli(["team", "budgets", "--config", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    got = [(r["subject"], r["kind"], r["budget"], round(r["spent_usd"], 2), r["requests"]) for r in rows]
    assert got == [("alice@corp.example", "user", "each-user / month $10", 10.7, 1),
                   ("bob@corp.example", "user", "each-user / month $10", 7.6, 1),
                   ("everyone", "all", "all / month $50", 18.3, 2)]


def test_a_budget_change_is_audited_before_and_after_with_whose_file_it_is(
        patchbay_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", "tok")
    patchbay_home.mkdir(parents=True)
    with FakeUpstream(wire="anthropic") as up:
        cfg = patchbay_home / "config.toml"
        cfg.write_text(team_config(up.url))
        eng = Engine()
        eng.start()
        try:
            cfg.write_text(team_config(up.url, each=25).replace("scope = \"all\"", "scope = \"backend:anthropic\""))
            eng.reload()
        finally:
            eng.stop()
    assert cli(["team", "audit", "--json"]) == 0
    entries = [e for e in json.loads(capsys.readouterr().out) if e["action"] == "config.loaded"]
    assert entries[-1]["detail"]["changes"] == [
        'budget "each-user / month" limit_usd: 10.0 -> 25.0',
        'budget "backend:anthropic / month" added: limit_usd 50.0, action \'block\'',
        'budget "all / month" removed (limit_usd 50.0)',
    ]
    assert entries[-1]["detail"]["config_owner"] == getpass.getuser()
    assert cli(["team", "audit"]) == 0
    assert f"(config file owned by {getpass.getuser()})" in capsys.readouterr().out


def test_the_org_budget_refusal_on_a_team_gateway_sends_a_developer_to_their_admin(
        patchbay_home: Path, idp: FakeIdP) -> None:
    up = FakeUpstream(lambda req: AnthropicJSON(anthropic_message(model=req.json["model"], usage=(1000, 10_000))),
                      wire="anthropic").start()
    text = config_text([{"id": "anthropic", "kind": "anthropic", "base_url": up.url, "auth": "none",
                         "local": False}], active="anthropic") + f'''
[team]
identity = ["oidc"]
oidc_issuer = "{idp.oidc_issuer}"
oidc_audience = "patchbay"

[[budgets]]
scope = "all"
period = "day"
limit_usd = 1
'''
    patchbay_home.mkdir(parents=True, exist_ok=True)
    (patchbay_home / "config.toml").write_text(text)
    eng = Engine()
    eng.start()
    try:
        headers = {"authorization": "Bearer " + idp.oidc_token("alice@corp.example", aud="patchbay")}
        body = {"model": "claude-opus-4-1", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=eng.url, timeout=15) as http:
            for _ in range(4):  # $0.765 a request: the third finds the $1 used up
                r = http.post("/v1/messages", headers=headers, json=body)
                assert eng.ledger.drain(10)
                if r.status_code != 200:
                    break
    finally:
        eng.stop()
        up.stop()
    assert r.status_code == 429, r.text
    message = r.json()["error"]["message"]
    assert 'budget "all / day $1"' in message and "ask your Patchbay admin" in message
    assert "Patchbay's settings" not in message
