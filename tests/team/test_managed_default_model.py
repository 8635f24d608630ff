"""Pushed settings always name a default model the person may use.

Claude Code 2.1.332 refuses to start under ``availableModels`` that leave out its own default model
(claude-opus-4-7): "none of them can be used as the default model". A group that writes no ``model`` (or one its
policy does not admit) must not lock its people out of Claude Code.
"""

from __future__ import annotations

from app.config.team import GroupPolicy
from app.team.managed import settings_for


def test_a_group_without_a_model_gets_one_it_may_use() -> None:
    eng = GroupPolicy("eng", models=("claude-sonnet-*",))
    s = settings_for([eng], ["claude-sonnet-4-6", "claude-sonnet-4-5"], telemetry=False)
    assert s["model"] == "claude-sonnet-4-6"
    assert s["availableModels"] == ["claude-sonnet-4-6", "claude-sonnet-4-5"]


def test_a_model_the_policy_refuses_is_replaced_and_none_is_named_when_nothing_is_allowed() -> None:
    eng = GroupPolicy("eng", models=("claude-sonnet-*",), managed_settings={"model": "claude-opus-4-7"})
    assert settings_for([eng], ["claude-sonnet-4-6"], telemetry=False)["model"] == "claude-sonnet-4-6"
    assert "model" not in settings_for([eng], [], telemetry=False)
