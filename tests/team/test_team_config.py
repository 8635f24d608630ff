"""``[team]`` and ``[[team.groups]]``: the issue's example loads; each mistake is one ConfigError
naming the file, the line and what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError
from app.config.team import GroupPolicy, load_team
from app.team.chain import build_chain
from app.team.iap import IAP_JWKS_URL
from tests.config_text import ANTHROPIC_CLIENT

BACKENDS = ANTHROPIC_CLIENT + """
[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "http://127.0.0.1:11434"
auth = "none"

[[backends]]
id = "bedrock"
kind = "bedrock"
region = "us-east-1"
models = ["us.anthropic.claude-sonnet-4-5-20250929-v1:0"]
"""

EXAMPLE = BACKENDS + """
[team]
identity = ["iap", "alb", "cloudflare", "oidc", "keys"]
iap_audience = "/projects/123456789/global/backendServices/987654321"
alb_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"
alb_region = "us-east-1"
cloudflare_team = "corp"
cloudflare_audience = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"
oidc_issuer = "https://accounts.google.com"
oidc_audience = "patchbay"
user_claim = "email"
groups_claim = "groups"

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
backends = ["anthropic", "bedrock", "ollama"]
models = ["claude-sonnet-*", "claude-haiku-*", "qwen3-*"]
max_output_tokens = 32000

[[team.groups]]
name = "contractors"
members = ["group:contractors@corp.example"]
backends = ["ollama"]

[[budgets]]
scope = "each-user"
period = "month"
limit_usd = 150
warn_at = 0.8
action = "downgrade:ollama,qwen3-coder:30b"

[[budgets]]
scope = "group:contractors"
period = "day"
limit_usd = 5
"""


def fails(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_team(text, Path("/etc/patchbay/config.toml"))
    return str(info.value)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    seen = 0
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError(needle)


def test_the_issue_example_loads() -> None:
    team = load_team(EXAMPLE)
    assert team is not None
    assert team.identity == ("iap", "alb", "cloudflare", "oidc", "keys")
    assert team.iap_jwks_url == IAP_JWKS_URL and team.clock_skew_s == 30.0
    assert team.groups == (
        GroupPolicy("eng", ("*@corp.example",), ("anthropic", "bedrock", "ollama"),
                    ("claude-sonnet-*", "claude-haiku-*", "qwen3-*"), 32000),
        GroupPolicy("contractors", ("group:contractors@corp.example",), ("ollama",), None, None),
    )


def test_the_example_builds_a_chain_in_order(tmp_path: Path) -> None:
    from app.team.keystore_sqlite import SqliteKeyStore

    team = load_team(EXAMPLE)
    assert team is not None
    store = SqliteKeyStore(tmp_path / "usage.sqlite3")
    chain = build_chain(team, keys=store)
    assert chain.sources == team.identity
    store.close()
    with pytest.raises(ValueError):
        build_chain(team)


def test_no_team_section_is_single_user_mode() -> None:
    assert load_team(BACKENDS) is None


@pytest.mark.parametrize("body, needle, words", [
    ('[team]\nidentity = ["iap"]\n', "identity", 'team.identity lists "iap" but team.iap_audience is not set'),
    ('[team]\nidentity = ["ldap"]\n', "identity", "unknown source 'ldap'"),
    ('[team]\nidentity = ["keys", "keys"]\n', "identity", "names a source twice"),
    ('[team]\nidentity = []\n', "identity", "team.identity is []"),
    ('[team]\nidentity = ["keys"]\nidentiy = 1\n', "identiy", "unknown key team.identiy"),
    ('[team]\nidentity = ["keys"]\noidc_audience = "x"\n', "oidc_audience",
     'team.oidc_audience is set but team.identity does not list "oidc"'),
    ('[team]\nidentity = ["oidc"]\noidc_issuer = "http://idp.corp.example"\noidc_audience = "p"\n',
     "oidc_issuer", "Write an https:// address"),
    ('[team]\nidentity = ["alb"]\nalb_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/1"'
     '\nalb_region = "eu-west-1"\n', "alb_region", "is not the region in alb_arn"),
    ('[team]\nidentity = ["alb"]\nalb_arn = "gw"\n', "alb_arn", "team.alb_arn is 'gw'"),
    ('[team]\nidentity = ["keys"]\nclock_skew_s = "30"\n', "clock_skew_s", "team.clock_skew_s is '30'"),
    ('[team]\nidentity = ["keys"]\nclock_skew_s = 3600\n', "clock_skew_s", "between 0 and 300"),
    ('[team]\nidentity = ["keys"]\n\n[[team.groups]]\nmembers = ["*@corp.example"]\n', "[[team.groups]]",
     "group #1 has no name"),
    ('[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\n\n[[team.groups]]\nname = "eng"\n', None,
     'the group name "eng" is used twice'),
    ('[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\nbackends = ["openrouter"]\n', "backends = [",
     "allows the backend 'openrouter', which is not configured"),
    ('[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\nmodels = "claude-*"\n', 'models = "claude',
     'group "eng" models is'),
    ('[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\nmax_output_tokens = 0\n', "max_output_tokens",
     "Write a positive whole number"),
    ('[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\nmodel = ["x"]\n', "model =",
     "unknown key team.groups[1].model"),
])
def test_each_mistake_names_its_line(body: str, needle: str | None, words: str) -> None:
    text = BACKENDS + body
    msg = fails(text)
    assert msg.startswith("/etc/patchbay/config.toml"), msg
    assert words in msg, msg
    if needle is not None:
        assert f"line {line_of(text, needle)}:" in msg, msg
    assert msg.rstrip().endswith("."), msg


def test_a_duplicate_group_points_at_its_second_name() -> None:
    text = BACKENDS + '[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\n\n[[team.groups]]\nname = "eng"\n'
    second = line_of(text, 'name = "eng"', 2)
    assert f"line {second}:" in fails(text)


def test_team_budget_scopes() -> None:
    text = BACKENDS + '[[budgets]]\nscope = "each-user"\nlimit_usd = 10\n'
    msg = fails(text)
    assert 'budget #1 has the team scope "each-user", but there is no [team] section' in msg
    assert f"line {line_of(text, '[[budgets]]')}:" in msg
    team = BACKENDS + '[team]\nidentity = ["keys"]\n\n[[team.groups]]\nname = "eng"\n'
    assert "which [[team.groups]] does not define" in fails(team + '[[budgets]]\nscope = "group:ops"\nlimit_usd = 1\n')
    assert "Write the user's e-mail" in fails(team + '[[budgets]]\nscope = "user:alice"\nlimit_usd = 1\n')
    assert "which is not configured" in fails(team + '[[budgets]]\nscope = "backend:nope"\nlimit_usd = 1\n')
    assert 'Write scope = "all", "each-user"' in fails(team + '[[budgets]]\nscope = "everyone"\nlimit_usd = 1\n')
    for scope in ("all", "each-user", "user:alice@corp.example", "group:eng", "backend:ollama"):
        assert load_team(team + f'[[budgets]]\nscope = "{scope}"\nlimit_usd = 1\n') is not None


def test_urls_may_be_plain_http_only_on_loopback() -> None:
    text = BACKENDS + ('[team]\nidentity = ["iap"]\niap_audience = "/projects/1/apps/p"\n'
                       'iap_jwks_url = "http://127.0.0.1:9999/iap/public_key-jwk"\n')
    team = load_team(text)
    assert team is not None and team.iap_jwks_url.startswith("http://127.0.0.1")
