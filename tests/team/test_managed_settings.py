"""GET /managed/settings and GET /v1/models per group, through a real ``patchbay serve`` on
loopback (team keys in its SQLite ledger, made by ``patchbay team key create``) and httpx:
Claude Code's wrapper and checksum, ETag / If-None-Match (304 before, 200 after a SIGHUP reload),
one group never sees another's models or settings, a person in two groups gets the merge
docs/team.md states, the pushed ``availableModels`` is exactly what /v1/messages admits, and an
unidentified caller gets 401 in Anthropic's shape with ``x-should-retry: false``."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GatewayProcess, spawn_gateway
from tests.fakes import AnthropicJSON, anthropic_message
from tests.fakes.upstreams import FakeUpstream, ReceivedRequest, Response

ALICE = "alice@corp.example"  # eng
BOB = "bob@lab.example"  # research (from his key's --group)
CAROL = "carol@corp.example"  # eng, and research from her key's --group
CATALOG = {"main": ["claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5"], "local": ["qwen3-coder"]}


def team_config(main: str, local: str, *, eng_env: str = "eng") -> str:
    return f'''[gateway]
port = 0

[[backends]]
id = "main"
kind = "anthropic"
base_url = "{main}"
auth = "none"
models = {json.dumps(CATALOG["main"])}

[[backends]]
id = "local"
kind = "anthropic"
base_url = "{local}"
auth = "none"
models = {json.dumps(CATALOG["local"])}

[active]
backend = "main"

[team]
identity = ["keys"]

[[team.groups]]
name = "eng"
members = ["*@corp.example"]
backends = ["main"]
models = ["claude-sonnet-*", "claude-haiku-*"]
[team.groups.managed_settings]
model = "claude-sonnet-4-6"
permissions = {{ deny = ["WebFetch"], allow = ["Bash(ls)"], defaultMode = "default" }}
[team.groups.managed_settings.env]
TEAM = "{eng_env}"

[[team.groups]]
name = "research"
members = ["group:research"]
backends = ["main", "local"]
models = ["claude-opus-*", "qwen3-*"]
[team.groups.managed_settings]
model = "claude-opus-4-7"
includeCoAuthoredBy = false
permissions = {{ deny = ["Bash(curl:*)"], defaultMode = "acceptEdits" }}
[team.groups.managed_settings.env]
TEAM = "research"
RESEARCH_ONLY = "1"
'''


def _answer(req: ReceivedRequest) -> Response | None:
    if not req.path.endswith("/v1/messages"):
        return None
    return AnthropicJSON(anthropic_message("ok", model=str((req.json or {}).get("model") or "x")))


class Team:
    def __init__(self, gw: GatewayProcess, keys: dict[str, str]) -> None:
        self.gw, self.keys = gw, keys

    def auth(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}

    def get(self, path: str, who: str | None, **headers: str) -> httpx.Response:
        h = (self.auth(who) if who else {}) | headers
        return httpx.get(self.gw.url + path, headers=h, timeout=15)


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    with FakeUpstream(_answer, wire="anthropic") as main, FakeUpstream(_answer, wire="anthropic") as local:
        gw = spawn_gateway(team_config(main.url, local.url), tmp_path / "gw")
        try:
            keys = {}
            for who, group in ((ALICE, ()), (BOB, ("--group", "research")), (CAROL, ("--group", "research"))):
                made = gw.cli("team", "key", "create", who, *group)
                assert made.returncode == 0, made.stderr
                keys[who] = made.stdout.strip()
            yield Team(gw, keys)
        finally:
            gw.stop()


def _checksum(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_settings_wrapper_checksum_and_etag_304_until_a_sighup_changes_them(team: Team) -> None:
    r = team.get("/managed/settings", ALICE)
    assert r.status_code == 200, r.text
    body = r.json()
    settings = body["settings"]
    assert body["checksum"] == body["uuid"] == _checksum(settings)
    assert r.headers["etag"] == f'"{body["checksum"]}"'
    assert r.headers["cache-control"] == "private, no-cache"
    assert settings["env"]["TEAM"] == "eng" and settings["model"] == "claude-sonnet-4-6"
    assert settings["permissions"] == {"deny": ["WebFetch"], "allow": ["Bash(ls)"], "defaultMode": "default"}
    # what makes Claude Code work best through Patchbay, and the telemetry export (collected by default)
    for key, value in {"CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1", "ENABLE_TOOL_SEARCH": "true",
                       "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1", "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
                       "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"}.items():
        assert settings["env"][key] == value

    etag = r.headers["etag"]
    same = team.get("/managed/settings", ALICE, **{"if-none-match": etag})
    assert (same.status_code, same.content) == (304, b"")
    assert same.headers["etag"] == etag
    assert team.get("/managed/settings", ALICE, **{"if-none-match": '"sha256:other"'}).status_code == 200
    assert team.get("/managed/settings", ALICE, **{"if-none-match": "*"}).status_code == 200  # Desktop's probe

    cfg = team.gw.config_path
    cfg.write_text(cfg.read_text().replace('TEAM = "eng"', 'TEAM = "eng-2"'))
    team.gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config reloaded" not in team.gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    changed = team.get("/managed/settings", ALICE, **{"if-none-match": etag})
    assert changed.status_code == 200, "a changed group's settings come back whole, never 304"
    assert changed.json()["settings"]["env"]["TEAM"] == "eng-2"
    assert changed.headers["etag"] != etag
    assert team.get("/managed/settings", ALICE, **{"if-none-match": changed.headers["etag"]}).status_code == 304


def test_a_group_never_sees_another_groups_models_or_settings(team: Team) -> None:
    a = team.get("/managed/settings", ALICE).json()["settings"]
    b = team.get("/managed/settings", BOB).json()["settings"]
    a_models = {m["id"] for m in team.get("/v1/models?limit=1000", ALICE).json()["data"]}
    b_models = {m["id"] for m in team.get("/v1/models?limit=1000", BOB).json()["data"]}
    assert a_models == {"claude-sonnet-4-6", "claude-haiku-4-5"}
    assert b_models == {"claude-opus-4-7", "local,qwen3-coder"}
    assert not any("opus" in m or "qwen" in m for m in a["availableModels"])
    assert not any("sonnet" in m or "haiku" in m for m in b["availableModels"])
    assert "RESEARCH_ONLY" not in a["env"] and b["env"]["TEAM"] == "research"
    assert b["model"] == "claude-opus-4-7" and b["permissions"]["deny"] == ["Bash(curl:*)"]
    assert a["availableModelsMatch"] == b["availableModelsMatch"] == "exact"


def test_a_person_in_two_groups_gets_them_merged_in_config_order(team: Team) -> None:
    c = team.get("/managed/settings", CAROL).json()["settings"]
    assert c["env"]["TEAM"] == "eng" and c["env"]["RESEARCH_ONLY"] == "1"  # per variable, first group wins
    assert c["model"] == "claude-sonnet-4-6"  # eng comes first in the config
    assert c["includeCoAuthoredBy"] is False  # set by research alone
    assert c["permissions"] == {"deny": ["WebFetch", "Bash(curl:*)"], "allow": ["Bash(ls)"],
                                "defaultMode": "default"}
    assert set(c["availableModels"]) >= {"claude-sonnet-4-6", "claude-opus-4-7", "local,qwen3-coder"}


@pytest.mark.parametrize("who", [ALICE, BOB, CAROL])
def test_the_pushed_model_list_is_exactly_what_messages_admits(team: Team, who: str) -> None:
    settings = team.get("/managed/settings", who).json()["settings"]
    listed = [m["id"] for m in team.get("/v1/models", who).json()["data"]]
    names = [m for ms in CATALOG.values() for m in ms] + [f"{b},{m}" for b, ms in CATALOG.items() for m in ms]
    admitted = []
    for name in names:
        r = httpx.post(team.gw.url + "/v1/messages", headers=team.auth(who), timeout=15,
                       json={"model": name, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code in (200, 403), r.text
        if r.status_code == 200:
            admitted.append(name)
    assert sorted(settings["availableModels"]) == sorted(admitted)
    assert set(listed) <= set(admitted) and len(listed) == len(set(listed))
    assert settings["model"] in admitted


@pytest.mark.parametrize("path,method", [("/managed/settings", "GET"), ("/v1/models", "GET"),
                                         ("/v1/metrics", "POST"), ("/v1/logs", "POST")])
@pytest.mark.parametrize("credential", [None, "Bearer pbk_not_a_real_key_0000000000000000"])
def test_an_unidentified_caller_gets_401_that_claude_code_does_not_retry(team: Team, path: str, method: str,
                                                                         credential: str | None) -> None:
    headers = {"authorization": credential} if credential else {}
    r = httpx.request(method, team.gw.url + path, headers=headers, content=b"" if method == "POST" else None,
                      timeout=15)
    assert r.status_code == 401
    assert r.headers["x-should-retry"] == "false"
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["request_id"] == r.headers["request-id"]
    assert "pbk_not_a_real_key" not in r.text



def test_a_revoked_key_sent_as_an_api_key_helper_sends_it_stays_the_429_that_ends_claude_code(team: Team) -> None:
    """Claude Code sends an apiKeyHelper's output as both headers and retries a 401 for minutes
    there; the key verifier's 429 (docs/team.md) is kept on these endpoints too."""
    listed = json.loads(team.gw.cli("team", "key", "list", "--json").stdout)
    bob_key = next(k for k in listed if k["user"] == BOB)
    assert team.gw.cli("team", "key", "revoke", bob_key["id"]).returncode == 0
    time.sleep(1.0)  # the verifier asks the store again within 0.5 s

    def fetch(who: str) -> httpx.Response:
        key = team.keys[who]
        return httpx.get(team.gw.url + "/managed/settings", headers={"authorization": f"Bearer {key}",
                                                                     "x-api-key": key}, timeout=15)

    assert fetch(ALICE).status_code == 200
    r = fetch(BOB)
    assert (r.status_code, r.json()["error"]["type"], r.headers["x-should-retry"]) == (429, "permission_error", "false")
    alone = team.get("/managed/settings", BOB)
    assert (alone.status_code, alone.headers["x-should-retry"]) == (401, "false")
