"""The policy a gateway recorded in the audit trail, read back for an admin's Team page: identity,
groups and budgets (with blocked_message) from the newest config.loaded entry, on the real
PostgreSQL; a ledger where no gateway recorded one yet still shows keys and spend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from app.bridge.team_read import read_team
from app.config import BudgetConfig, parse_config
from app.ledger.pg import PgLedgerReader
from app.team.audit import digest, policy_of, record_policy
from app.team.keystore import AuditEntry
from app.team.keystore_pg import PgKeyStore
from app.team.recorded import policy_from, recorded_policy
from tests.gateway.conftest import config_text

BACKENDS = config_text([{"id": "anthropic", "kind": "anthropic", "base_url": "http://127.0.0.1:9", "auth": "none",
                         "local": False}], active="anthropic")
TEAM = '''
[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
'''
BUDGET = '''
[[budgets]]
scope = "each-user"
period = "week"
limit_usd = 25
warn_at = 0.5
action = "warn"
'''


def test_a_policy_without_blocked_message_keeps_its_digest_and_one_with_it_reads_back():
    cfg = parse_config(BACKENDS + TEAM + BUDGET)
    policy = policy_of(cfg)
    # the shape recorded before blocked_message was: the same digest, so no new config.loaded entry
    assert policy["budgets"] == [{"scope": "each-user", "period": "week", "limit_usd": 25.0, "warn_at": 0.5,
                                  "action": "warn"}]
    blocked = dataclasses.replace(cfg, budgets=[dataclasses.replace(cfg.budgets[0], blocked_message="Ask Ann.")])
    assert digest(policy_of(blocked)) != digest(policy)
    got = policy_from(AuditEntry(1, 100.0, "gw@host", "config.loaded", "/etc/gw.toml",
                                 {"digest": "x", "policy": policy_of(blocked)}))
    assert got.budgets == (BudgetConfig("each-user", "week", 25.0, 0.5, "warn", "Ask Ann."),)
    assert (got.identity, got.groups, got.actor, got.subject, got.skipped) == (("keys",), ("eng",), "gw@host",
                                                                               "/etc/gw.toml", 0)
    # an entry another build wrote oddly: what can be read is, the rest counted, never an exception
    odd = policy_from(AuditEntry(2, 1.0, "gw", "config.loaded", "c", {"policy": {
        "team": "?", "groups": ["x"], "budgets": [{"scope": "all", "period": "year", "limit_usd": 1}, "?",
                                                  {"scope": "user:a@b.c", "period": "day", "limit_usd": 2}]}}))
    assert (odd.identity, odd.groups, odd.skipped) == ((), (), 2)
    assert odd.budgets == (BudgetConfig("user:a@b.c", "day", 2.0),)


def test_the_admin_view_reads_the_newest_recorded_policy_or_says_there_is_none(pg_server):
    url = pg_server.create_db()
    store, reader = PgKeyStore(url), PgLedgerReader(url)
    try:
        store.create("alice@corp.example", ("eng",), created_by="root@box")
        assert recorded_policy(store) is None
        view, problem = read_team(None, store, reader, None)
        assert view.enabled and view.admin_view and view.policy_at is None and view.budgets == ()
        assert [k.user for k in view.keys] == ["alice@corp.example"]
        assert problem is not None and "no Patchbay tables" in problem  # no gateway wrote a row yet: said

        record_policy(store, parse_config(BACKENDS + TEAM, Path("/etc/a.toml")), who="gw@one")
        record_policy(store, parse_config(BACKENDS + TEAM + BUDGET, Path("/etc/b.toml")), who="gw@two")
        view, _ = read_team(None, store, reader, None)
        assert (view.policy_by, view.policy_file, view.identity, view.groups) == ("gw@two", "/etc/b.toml",
                                                                                 ("keys",), ("eng",))
        assert [a.action for a in view.audit] == ["config.loaded", "config.loaded", "key.created"]
    finally:
        reader.close()
        store.close()
