"""The ``[team.login]`` config the sign-in tests write, and a device flow driven as the CLI and a
browser drive it (shared by tests/team/test_signin.py and tests/e2e/test_signin_claude.py)."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from tests.fakes.browser import Browser
from tests.fakes.oidc_issuer import FakeIssuer

SECRET_ENV = "PB_TEST_OIDC_CLIENT_SECRET"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def login_team(issuer: FakeIssuer, public_url: str) -> str:
    return f'''
[team]
identity = ["oidc"]
oidc_issuer = "{issuer.url}"
oidc_audience = "{issuer.client_id}"

[team.login]
client_id = "{issuer.client_id}"
client_secret = "env:{SECRET_ENV}"
public_url = "{public_url}"

[[team.groups]]
name = "eng"
members = ["group:eng"]
'''


def poll(http: httpx.Client, base: str, device_code: str) -> httpx.Response:
    return http.post(f"{base}/oauth/token", data={"grant_type": DEVICE_GRANT, "device_code": device_code},
                     headers={"user-agent": "claude-code/2.1.332"})


def sign_in(base: str, *, poll_base: str | None = None, wait_s: float = 0.0) -> dict[str, Any]:
    """The whole device flow: discovery, device authorization, the browser leg, the poll that gets
    tokens (after ``wait_s``: the code's interval). The token answer, plus ``device_code``."""
    with httpx.Client(timeout=15, trust_env=False) as http:
        doc = http.get(f"{base}/.well-known/oauth-authorization-server").json()
        dev = http.post(doc["device_authorization_endpoint"], data={"surface": "claude_code"}).json()
        browser = Browser()
        try:
            done = browser.sign_in(dev["verification_uri_complete"])
        finally:
            browser.close()
        assert done.status_code == 200 and "signed in as" in done.text, done.text
        time.sleep(wait_s)
        got = poll(http, poll_base or base, dev["device_code"])
        assert got.status_code == 200, got.text
        return got.json() | {"device_code": dev["device_code"]}
