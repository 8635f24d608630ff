"""Policy as plain data: two users in two groups, allowed and refused models, output caps,
routing candidates, and which budgets a request charges."""

from __future__ import annotations

from app.budgets.limits import budget_matches
from app.config import BudgetConfig
from app.config.team import GroupPolicy
from app.team.identity import Identity
from app.team.policy import Decision, PolicyDenied, decide, permitted, subject_of, user_groups

ENG = GroupPolicy("eng", ("*@corp.example",), ("anthropic", "bedrock", "ollama"),
                  ("claude-sonnet-*", "claude-haiku-*", "qwen3-*"), 32000)
RESEARCH = GroupPolicy("research", ("group:research-*",), ("anthropic",), ("claude-opus-*",), None)
CONTRACTORS = GroupPolicy("contractors", ("*@vendor.example",), ("ollama",), None, 8000)
GROUPS = (ENG, RESEARCH, CONTRACTORS)

ALICE = Identity("alice@corp.example", ("research-ml",), "oidc")  # eng by e-mail, research by IdP group
BOB = Identity("bob@vendor.example", (), "iap")  # contractors only
KEYED = Identity("kim@elsewhere.example", ("contractors",), "keys")  # a key issued with --group contractors
STRANGER = Identity("zed@elsewhere.example", ("unrelated",), "oidc")


def test_groups_come_from_email_patterns_idp_groups_and_key_groups() -> None:
    assert user_groups(GROUPS, ALICE) == ("eng", "research")
    assert user_groups(GROUPS, BOB) == ("contractors",)
    assert user_groups(GROUPS, KEYED) == ("contractors",)
    assert user_groups(GROUPS, STRANGER) == ()
    assert user_groups(GROUPS, Identity("ALICE@CORP.EXAMPLE")) == ("eng",)  # patterns ignore case


def test_two_users_two_groups_allowed_and_refused() -> None:
    assert decide(GROUPS, ALICE, "anthropic", "claude-sonnet-4-5-20250929").allowed
    assert decide(GROUPS, ALICE, "anthropic", "claude-opus-4-1-20250805").allowed  # via research
    assert decide(GROUPS, BOB, "ollama", "qwen3-coder:30b").allowed
    refused = decide(GROUPS, BOB, "anthropic", "claude-sonnet-4-5")
    assert not refused.allowed and refused.rule == 'team.groups "contractors" backends'
    assert "bob@vendor.example may not use the backend anthropic" in (refused.message or "")
    assert '"contractors" allows ollama' in (refused.message or "")
    model = decide(GROUPS, ALICE, "bedrock", "claude-opus-4-1")
    assert not model.allowed and model.rule == 'team.groups "eng", "research" models'
    assert "claude-sonnet-*, claude-haiku-*, qwen3-*" in (model.message or "")
    nobody = decide(GROUPS, STRANGER, "ollama", "qwen3-coder:30b")
    assert not nobody.allowed and nobody.rule == "team.groups members"
    assert "in none of this team gateway's groups" in (nobody.message or "")


def test_a_refusal_is_a_403_permission_error_naming_the_rule() -> None:
    d = decide(GROUPS, BOB, "anthropic", "claude-sonnet-4-5")
    err = PolicyDenied(d)
    assert (err.status, err.error_type) == (403, "permission_error")
    assert "team policy" in err.message and "contractors" in err.message


def test_the_upstream_model_decides_in_any_of_its_spellings_and_the_requested_name_never_widens_it() -> None:
    bedrock_id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert decide(GROUPS, ALICE, "bedrock", bedrock_id).allowed  # claude-sonnet-* in Bedrock's spelling
    assert decide(GROUPS, ALICE, "bedrock", bedrock_id, requested_model="claude-sonnet-4-5").allowed
    # a pin or a rule sending Opus upstream for a request that named an allowed model is refused
    sneaky = decide(GROUPS, ALICE, "bedrock", "claude-opus-4-1", requested_model="claude-sonnet-4-5")
    assert not sneaky.allowed and sneaky.rule == 'team.groups "eng", "research" models'
    msg = decide(GROUPS, ALICE, "bedrock", "claude-opus-4-1", requested_model="opus").message or ""
    assert "opus (claude-opus-4-1)" in msg


def test_output_caps_take_the_most_generous_group_that_allows_the_request() -> None:
    assert decide(GROUPS, ALICE, "anthropic", "claude-sonnet-4-5").max_output_tokens == 32000
    assert decide(GROUPS, ALICE, "anthropic", "claude-opus-4-1").max_output_tokens is None  # research: no cap
    d = decide(GROUPS, BOB, "ollama", "qwen3-coder:30b")
    assert d.max_output_tokens == 8000
    assert d.cap(64000) == 8000 and d.cap(1000) == 1000 and d.cap(None) == 8000
    assert Decision(True, ()).cap(64000) == 64000


def test_without_groups_every_verified_user_may_use_everything() -> None:
    d = decide((), STRANGER, "anthropic", "claude-opus-4-1")
    assert d.allowed and d.groups == () and d.max_output_tokens is None


def test_routing_candidates_are_filtered_in_order() -> None:
    candidates = [("anthropic", "claude-opus-4-1"), ("bedrock", "claude-sonnet-4-5"), ("ollama", "qwen3-coder:30b")]
    assert permitted(GROUPS, BOB, candidates) == [("ollama", "qwen3-coder:30b")]
    assert permitted(GROUPS, ALICE, candidates) == candidates
    assert permitted(GROUPS, STRANGER, candidates) == []


def test_budget_scopes_resolve_to_the_counters_a_request_charges() -> None:
    budgets = [
        BudgetConfig("all", "month", 5000),
        BudgetConfig("each-user", "month", 150),
        BudgetConfig("user:Alice@corp.example", "day", 40),
        BudgetConfig("group:contractors", "day", 20),
        BudgetConfig("backend:anthropic", "month", 3000),
        BudgetConfig("group:eng", "week", 900),
    ]

    def charged(identity: Identity | None, groups: tuple[str, ...], backend: str) -> list[tuple[int, str]]:
        """What admission charges for a request to ``backend``: each budget's counter for this sender,
        the backend budgets only on their backend."""
        user = identity.user if identity is not None else None
        return [(i, s) for i, b in enumerate(budgets)
                if (s := subject_of(b.scope, user, groups)) is not None and budget_matches(b, backend)]

    assert charged(ALICE, user_groups(GROUPS, ALICE), "anthropic") == [
        (0, "all"), (1, "user:alice@corp.example"), (2, "user:alice@corp.example"), (4, "backend:anthropic"),
        (5, "group:eng")]
    assert charged(BOB, user_groups(GROUPS, BOB), "ollama") == [
        (0, "all"), (1, "user:bob@vendor.example"), (3, "group:contractors")]
    assert [s for _i, s in charged(None, (), "anthropic")] == ["all", "backend:anthropic"]
