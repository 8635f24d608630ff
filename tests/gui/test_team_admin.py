"""An admin's look at the team from the desktop app: a config with only ``[ledger] url`` (no
``[team]``: the app's own gateway stays single-user), logged in as a PostgreSQL role that may only
read. The Team page shows the keys, the audit trail, spend and each user's budget state under the
policy the team's gateway recorded; the app's own ledger writer and the key buttons say in words
that this role may only read. Everything against the real PostgreSQL of tests/pg.py."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import psycopg

from app.budgets.limits import period_bounds
from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import Usage, finished_request
from app.ledger.pg import PgStore
from app.ledger.spool import Spool
from app.ledger.writer import Ledger
from app.team.audit import record_policy
from app.team.keystore_pg import PgKeyStore
from tests.gateway.conftest import config_text
from tests.gui.conftest import ask, wait_for, write_config

GATEWAY_POLICY = '''
[team]
identity = ["iap", "keys"]
iap_audience = "/projects/1/global/backendServices/2"

[[team.groups]]
name = "eng"
members = ["*@corp.example"]

[[team.groups]]
name = "research"
members = ["group:research"]

[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 10
blocked_message = "Ask #platform for more."
'''


def _spend(user: str, groups: tuple[str, ...], dollars: float, at: float):
    """A request costing ``dollars`` (claude-sonnet-4-5 output: $15 per million tokens)."""
    e = finished_request(f"r-{user}-{at}", at, model="claude-sonnet-4-5", usage=Usage(0, round(dollars / 15e-6)))
    return dataclasses.replace(e, user=user, groups=groups, identity_source="keys")


def _team_gateway_was_here(url: str, tmp: Path) -> None:
    """What the team's gateways leave in the ledger database: the tables, two users' spend, the
    policy they enforce (config.loaded) and a key made with `patchbay team key create`."""
    cfg = parse_config(config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9",
                                     "auth": "none", "local": False}], active="anthropic") + GATEWAY_POLICY,
                       Path("/etc/patchbay/gateway.toml"))
    now = time.time()
    today = period_bounds("day", now)[0]
    at = today + (now - today) / 2
    led = Ledger(tmp / "gw.sqlite3", prices=PriceBook.load(cfg), store=PgStore(url), spool=Spool(tmp / "gw-spool"))
    led.start()
    led.record(_spend("alice@corp.example", ("eng",), 12.0, at))  # over her $10: blocked
    led.record(_spend("bob@lab.example", ("research",), 3.0, at))
    assert led.drain()
    led.close()
    store = PgKeyStore(url)
    try:
        assert record_policy(store, cfg, who="patchbay@gateway-1")
        store.create("bob@lab.example", ("research",), created_by="root@admin-box")
    finally:
        store.close()


def _viewer(url: str) -> str:
    """A role that may connect and SELECT, nothing else; the URL to log in as it."""
    db = url.rsplit("/", 1)[1]
    role = f"viewer_{db}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'viewer-pw'")
        conn.execute(f'GRANT CONNECT ON DATABASE "{db}" TO {role}')
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    return url.replace("postgresql://postgres@", f"postgresql://{role}@")


def _raw(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_an_admin_looks_at_the_team_ledger_with_a_read_only_role(start_app, pg_server, patchbay_home, upstreams,
                                                                  qtbot, tmp_path: Path, monkeypatch):
    url = pg_server.create_db()
    _team_gateway_was_here(url, tmp_path)
    viewer = _viewer(url)
    monkeypatch.setenv("PATCHBAY_TOKEN", "tok")
    monkeypatch.setenv("PB_VIEWER_PASSWORD", "viewer-pw")
    a, b = upstreams
    config = write_config(patchbay_home / "config.toml", a.url, b.url,
                          f'\n[ledger]\nurl = "{viewer}"\npassword = "env:PB_VIEWER_PASSWORD"\n')
    running = start_app(config)
    win = running.window
    assert not win.nav.item(win.nav.count() - 1).isHidden()
    win.show_page("team")
    page = win.page("team")

    wait_for(qtbot, lambda: page.keys.rowCount() == 1 and page.by_user.rowCount() == 2)
    assert page.keys.item(0, 1).text() == "bob@lab.example" and page.keys.item(0, 3).text() == "active"
    summary = page.summary.text()
    assert "read-only" in summary and "Policy recorded by patchbay@gateway-1" in summary, summary
    assert "/etc/patchbay/gateway.toml" in summary and "identity from iap, keys" in summary
    assert "groups: eng, research" in summary
    assert [page.group.itemText(i) for i in range(page.group.count())] == ["", "eng", "research"]
    assert [page.by_user.item(r, 0).text() for r in range(2)] == ["alice@corp.example", "bob@lab.example"]
    # the budget states under the gateway's each-user budget, not this app's own config (it has none)
    rows = [[page.budgets.item(r, c).text() for c in range(6)] for r in range(page.budgets.rowCount())]
    assert rows == [["alice@corp.example", "each user / month $10.00", "$12.00", "$10.00", "120%", "blocked"],
                    ["bob@lab.example", "each user / month $10.00", "$3.00", "$10.00", "30%", "ok"]]
    actions = [page.audit.item(r, 2).text() for r in range(page.audit.rowCount())]
    assert actions == ["key.created", "config.loaded"]
    # this app looked: it recorded no policy of its own
    assert _raw(url, "SELECT count(*) FROM team_audit WHERE action = 'config.loaded'") == [(1,)]

    # the app's own gateway still works; its rows cannot go to a ledger this role may only read
    wait_for(qtbot, lambda: running.bridge.ledger.view() is not None)
    assert running.bridge.ledger.view().text.startswith("Ledger read-only")
    banner = [m for m in win.messages() if m.key == "ledger-degraded"]
    assert banner and banner[0].title == "This app may only read the team ledger", banner
    assert "may only read" in banner[0].text and "Traceback" not in banner[0].text
    assert ask(running, qtbot, stream=False).content[0].text
    wait_for(qtbot, lambda: "1 row in the spool" in running.bridge.ledger.view().text)
    assert not [m for m in win.messages() if m.key == "ledger-write"]  # nothing said to be lost
    assert _raw(url, "SELECT count(*) FROM requests") == [(2,)]

    # creating and revoking a key: refused by the database, said in plain words
    page.email.setText("carol@corp.example")
    page.create_button.click()
    said = [m for m in win.messages() if m.key == "team"]
    assert said and said[0].title == "The key was not created", said
    assert "may only read the team ledger" in said[0].text and "patchbay team key create" in said[0].text
    assert page.secret.text() == "" and page.email.text() == "carol@corp.example"
    page.tabs.setCurrentIndex(2)
    page.keys.selectRow(0)
    assert page.revoke_button.isEnabled()
    page.revoke_button.click()
    said = [m for m in win.messages() if m.key == "team"]
    assert said and said[0].title.endswith("was not revoked") and "may only read" in said[0].text
    assert _raw(url, "SELECT user_id, revoked_at FROM team_keys") == [("bob@lab.example", None)]
    assert page.keys.rowCount() == 1 and page.keys.item(0, 3).text() == "active"


def test_before_any_gateway_recorded_its_policy_the_page_says_so(qtbot):
    from app.bridge.data_team import TeamView
    from app.bridge.jobs import Jobs
    from app.bridge.notices import Notices
    from app.bridge.team import Team
    from app.views.team import TeamPage

    page = TeamPage(Team(Jobs(), Notices()))
    qtbot.addWidget(page)
    page.show_view(TeamView(True, admin_view=True))
    assert "no team gateway has recorded its policy yet" in page.summary.text()
    assert "Spend, keys and the audit trail show" in page.summary.text()
