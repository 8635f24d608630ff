"""auth = "command:<cmd>": a company gateway behind an identity-aware proxy that only takes the
token a command prints. The command here is a real shell command that prints a token from a
file (so the test can rotate it) and counts its runs; the fake gateway accepts only the tokens
the test says are current."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.fakes.cloud import bearer_guard
from tests.fakes.upstreams import FakeUpstream
from tests.gateway.conftest import config_text

USER = [{"role": "user", "content": "hello"}]


class Issuer:
    """The identity provider's side: what the command prints, and what the gateway accepts."""

    def __init__(self, directory: Path) -> None:
        self.token_file = directory / "token"
        self.runs_file = directory / "runs"
        self.accepted: set[str] = set()
        self.issue("idtoken-1")

    def issue(self, token: str, *, revoke_old: bool = False) -> None:
        if revoke_old:
            self.accepted.clear()
        self.accepted.add(token)
        self.token_file.write_text(token + "\n")

    @property
    def command(self) -> str:
        # counts its runs, then prints the current token (with a newline, as real tools do)
        script = self.token_file.with_name("print-token.sh")
        script.write_text(f'echo x >> "{self.runs_file}"\ncat "{self.token_file}"\n')
        return f"sh {script}"

    @property
    def runs(self) -> int:
        return len(self.runs_file.read_text().split()) if self.runs_file.exists() else 0


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer(tmp_path)


@pytest.fixture
def company(issuer: Issuer) -> Iterator[FakeUpstream]:
    with FakeUpstream(wire="anthropic", guard=bearer_guard(lambda: issuer.accepted)) as up:
        yield up


def _gateway(start_gateway, url: str, command: str, **kw: object):  # type: ignore[no-untyped-def]
    return start_gateway(config_text([{"id": "company", "kind": "anthropic", "base_url": url,
                                       "auth": f"command:{command}", **kw}], active="company"))


def _ask(gw) -> str:  # type: ignore[no-untyped-def]
    with gw.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
        return s.get_final_message().content[0].text


def test_token_from_the_command_is_sent_and_cached(issuer, company, start_gateway):
    gw = _gateway(start_gateway, company.url, issuer.command)
    assert _ask(gw) == "Hello from the fake upstream."
    assert _ask(gw) == "Hello from the fake upstream."
    assert issuer.runs == 1  # cached for token_ttl_s (300 s by default)
    sent = company.requests[-1]
    assert sent.headers["authorization"] == "Bearer idtoken-1"
    assert sent.headers["x-api-key"] == "idtoken-1"  # kind anthropic: both headers, like apiKeyHelper


def test_a_401_refreshes_once_and_retries(issuer, company, start_gateway):
    gw = _gateway(start_gateway, company.url, issuer.command)
    _ask(gw)
    issuer.issue("idtoken-2", revoke_old=True)  # the proxy stops taking the cached token
    assert _ask(gw) == "Hello from the fake upstream."
    assert [r.headers["authorization"] for r in company.requests] == [
        "Bearer idtoken-1", "Bearer idtoken-1", "Bearer idtoken-2"]
    assert issuer.runs == 2
    fin = gw.finished(2)[-1]
    assert fin.error_type is None and fin.status == 200


def test_a_second_401_reaches_the_client_after_one_retry(issuer, company, start_gateway):
    gw = _gateway(start_gateway, company.url, issuer.command)
    issuer.accepted.clear()  # the command's token is never accepted (wrong audience, say)
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    # a credential Patchbay holds, refused: Claude Code is told not to retry (app/proxy/stops.py)
    assert info.value.status_code == 424 and info.value.response.headers["x-should-retry"] == "false"
    assert "invalid or expired identity token" in str(info.value)  # the upstream's own words
    assert "from its auth command" in str(info.value)
    assert len(company.requests) == 2 and issuer.runs == 2


def test_the_token_is_renewed_early_in_the_background(issuer, company, start_gateway):
    gw = _gateway(start_gateway, company.url, issuer.command, token_ttl_s=3)
    _ask(gw)
    issuer.issue("idtoken-2")  # both are good for now
    time.sleep(2.5)  # past 80 % of the token's life, not yet at its end
    _ask(gw)  # answered with the cached token at once, while a new one is fetched
    deadline = time.monotonic() + 10
    while issuer.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    _ask(gw)
    assert [r.headers["authorization"] for r in company.requests] == [
        "Bearer idtoken-1", "Bearer idtoken-1", "Bearer idtoken-2"]
    assert issuer.runs == 2


def test_a_failing_command_gives_a_clear_error(tmp_path, company, start_gateway):
    script = tmp_path / "login.sh"
    script.write_text("echo 'ERROR: Reauthentication required.' >&2\nexit 3\n")
    cmd = f"sh {script}"
    gw = _gateway(start_gateway, company.url, cmd)
    with pytest.raises(anthropic.AuthenticationError) as info:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    text = info.value.body["error"]["message"]
    assert cmd in text and "exit code 3" in text and "Reauthentication required." in text
    assert "Run the command in a terminal" in text
    assert company.requests == []


def test_a_command_that_prints_nothing_is_an_error(company, start_gateway):
    gw = _gateway(start_gateway, company.url, "true")
    with pytest.raises(anthropic.AuthenticationError) as info:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    assert "printed nothing on stdout" in str(info.value)


def test_openai_kind_sends_the_token_as_bearer(issuer, start_gateway):
    with FakeUpstream(wire="openai", guard=bearer_guard(lambda: issuer.accepted)) as up:
        gw = start_gateway(config_text([{"id": "corp", "kind": "openai", "base_url": up.url + "/v1",
                                         "auth": f"command:{issuer.command}", "models": ["gpt-fake"]}],
                                       active="corp"))
        _ask(gw)
        sent = up.requests[-1]
        assert sent.headers["authorization"] == "Bearer idtoken-1" and "x-api-key" not in sent.headers


def test_count_tokens_uses_the_token_too(issuer, company, start_gateway):
    gw = _gateway(start_gateway, company.url, issuer.command)
    assert gw.client().messages.count_tokens(model="claude-x", messages=USER).input_tokens > 0
    assert company.requests[-1].path == "/v1/messages/count_tokens"
    assert company.requests[-1].headers["authorization"] == "Bearer idtoken-1"


def test_concurrent_requests_share_one_run_of_the_command(issuer, company, start_gateway):
    from concurrent.futures import ThreadPoolExecutor

    gw = _gateway(start_gateway, company.url, issuer.command)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _ask(gw), range(6)))
    assert answers == ["Hello from the fake upstream."] * 6
    assert issuer.runs == 1 and len(company.requests) == 6
