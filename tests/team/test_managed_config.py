"""``[team.groups.managed_settings]`` and ``[team.telemetry]`` as the config loader reads them: what
it takes, and the sentence (with the line) for what it refuses, such as a model allow-list written
by hand (Patchbay derives it from the group policy) or a model the group may not use."""

from __future__ import annotations

import pytest

from app.config import ConfigError
from app.config.managed import TelemetryConfig
from app.config.team import load_team

HEAD = '[team]\nidentity = ["keys"]\n'
GROUP = '\n[[team.groups]]\nname = "eng"\nmodels = ["claude-sonnet-*"]\n[team.groups.managed_settings]\n'


def test_managed_settings_and_telemetry_are_read() -> None:
    team = load_team(HEAD + '[team.telemetry]\nretention_days = 7\nforward_to = "https://otel.corp.example/"\n'
                     + GROUP + 'model = "claude-sonnet-4-6"\n[team.groups.managed_settings.env]\nA = "1"\n')
    assert team is not None
    assert team.telemetry == TelemetryConfig(True, 7.0, "https://otel.corp.example")
    assert team.groups[0].managed_settings == {"model": "claude-sonnet-4-6", "env": {"A": "1"}}
    plain = load_team(HEAD)
    assert plain is not None and plain.telemetry == TelemetryConfig()


@pytest.mark.parametrize("body,words,line", [
    ('availableModels = ["claude-opus-4-7"]\n', "managed_settings sets availableModels", 7),
    ('model = "claude-opus-4-7"\n', "which the group's models do not allow", 7),
    ('[team.groups.managed_settings.env]\nA = 1\n', "managed_settings.env is {'A': 1}", 7),
    ('when = 1979-05-27T07:32:00Z\n', "a value JSON cannot carry", 7),
])
def test_what_a_groups_managed_settings_may_not_say(body: str, words: str, line: int) -> None:
    with pytest.raises(ConfigError) as err:
        load_team(HEAD + GROUP + body)
    assert words in str(err.value) and f"line {line}" in str(err.value)


@pytest.mark.parametrize("body,words", [
    ("retention_days = 0", "retention_days is 0"),
    ('forward_to = "http://otel.corp.example"', "https://"),
    ("keep = true", "unknown key team.telemetry.keep"),
    ('collect = "yes"', "collect is 'yes'"),
])
def test_what_team_telemetry_may_not_say(body: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_team(HEAD + "[team.telemetry]\n" + body + "\n")
    assert words in str(err.value) and "line 3" in str(err.value)
