"""Which cap applies to a person (app/team/spend_limits.py): the most specific level, the API's
replacing the config's within a level; a null amount hides the levels below."""

from __future__ import annotations

import pytest

from app.config import BudgetConfig
from app.team.spend_limits import ApiBudget, LimitError, SpendLimit, budgets_for, parse_limit, resolve

ALICE = "alice@corp.example"
EACH = BudgetConfig("each-user", "day", 50.0)
MINE = BudgetConfig(f"user:{ALICE}", "day", 20.0)
POOL = BudgetConfig("group:eng", "day", 500.0)


def lim(kind: str, who: str, cents: int | None, period: str = "daily", i: int = 0) -> SpendLimit:
    return SpendLimit(f"spl_{i:032x}", kind, who, period, cents)


def test_the_most_specific_cap_applies_and_the_api_replaces_the_config_within_a_level() -> None:
    org, eng, sales = lim("organization", "", 700, i=1), lim("rbac_group", "eng", 300, i=2), lim("rbac_group", "sales", 100, i=3)
    assert resolve([EACH], [], ALICE, ("eng",), "daily").origin == "config"  # the config's default
    assert resolve([EACH], [org], ALICE, ("eng",), "daily").limit == org  # API org over config each-user
    assert resolve([EACH], [org, eng], ALICE, ("eng",), "daily").limit == eng  # a group over the org
    assert resolve([EACH], [org, eng, sales], ALICE, ("eng", "sales"), "daily").limit == sales  # the lowest group
    assert resolve([EACH, MINE], [org, eng], ALICE, ("eng",), "daily").budget == MINE  # config user:EMAIL over groups
    mine = lim("user", ALICE, None, i=4)  # unlimited, from the API: hides everything below
    assert resolve([EACH, MINE], [org, eng, mine], ALICE, ("eng",), "daily").amount_cents is None
    assert resolve([EACH], [org], ALICE, (), "weekly") is None  # another period


def test_budgets_for_swaps_the_per_seat_budgets_and_keeps_pooled_ones() -> None:
    got = budgets_for((EACH, POOL), [lim("organization", "", 250, i=1)], ALICE, ("eng",))
    assert POOL in got and EACH not in got
    api = [b for b in got if isinstance(b, ApiBudget)]
    assert len(api) == 1 and api[0].scope == f"user:{ALICE}" and api[0].limit_usd == 2.5
    assert "Admin API" in api[0].label
    assert budgets_for((EACH, POOL), [lim("user", ALICE, None)], ALICE, ()) == (POOL,)
    assert budgets_for((EACH,), [lim("user", "bob@corp.example", 1)], ALICE, ()) == (EACH,)  # not hers


@pytest.mark.parametrize(("body", "message"), [
    ({"scope": {"type": "organization"}, "amount": 5, "period": "daily"}, "amount: Expected string, received number"),
    ({"scope": {"type": "organization"}, "amount": "5", "period": "hourly"},
     "period: Invalid enum value. Expected 'daily' | 'weekly' | 'monthly', received 'hourly'"),
    ({"scope": {"type": "team"}, "amount": "5", "period": "daily"},
     "scope.type: Invalid enum value. Expected 'user' | 'rbac_group' | 'organization', received 'team'"),
    ({"scope": {"type": "organization"}, "amount": "5.5", "period": "daily"},
     "amount: '5.5' is not a whole number of US cents (write e.g. \"500\" for $5.00)"),
])
def test_bodies_refused_in_the_reference_words(body: dict[str, object], message: str) -> None:
    with pytest.raises(LimitError) as exc:
        parse_limit(body, ["cloud"])
    assert str(exc.value) == message


def test_actions_name_a_configured_backend() -> None:
    body = {"scope": {"type": "user", "user_id": "Alice@Corp.example"}, "amount": "5", "period": "daily"}
    assert parse_limit(body | {"action": "downgrade:local,qwen3"}, ["local"]).action == "downgrade:local,qwen3"
    assert parse_limit(body, []).scope_id == ALICE
    with pytest.raises(LimitError):
        parse_limit(body | {"action": "downgrade:nowhere"}, ["local"])
