"""deploy/config.toml is a real team config: ``patchbay serve --config deploy/config.toml`` starts
(before, its ``auth = "client"`` backend was refused in team mode), and with its placeholders
pointed at a test IdP, upstream and PostgreSQL it does what README's "Roll out to a team" says to
verify: a person signed in at the IdP is served on the team's key, an issued key works, the Admin
API takes the admin key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.conftest import REPO, spawn_gateway
from tests.e2e.test_admin_api import quick_upstream, stream
from tests.fakes.idp import FakeIdP

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM drain is POSIX")]

DEPLOY = REPO / "deploy" / "config.toml"
TEAM_KEY = "sk-ant-team-" + "t" * 30  # the Anthropic key the gateway holds
ENV = {"PATCHBAY_DB_PASSWORD": "db-pw", "ANTHROPIC_API_KEY": TEAM_KEY, "PATCHBAY_ADMIN_KEY": "adm-" + "a" * 40}
BODY: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def test_serve_starts_on_the_deploy_config_as_shipped(tmp_path: Path) -> None:
    # the file itself (--config given again wins), its database unreachable here: it starts anyway
    gw = spawn_gateway("", tmp_path / "home", extra_args=("--config", str(DEPLOY)), extra_env=ENV, timeout_s=40)
    try:
        assert httpx.get(f"{gw.url}/health").json()["status"] == "ok"
        r = httpx.post(f"{gw.url}/v1/messages", json=BODY)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        a = httpx.get(f"{gw.url}/v1/organizations/spend_limits", headers={"x-api-key": ENV["PATCHBAY_ADMIN_KEY"]})
        assert a.status_code == 503 and a.json()["error"]["type"] == "api_error", a.text
        assert "db-pw" not in a.text and "bug in Patchbay" not in a.text
    finally:
        gw.stop()
    assert "auth = \"client\"" not in gw.log()


def test_the_deploy_config_verified_as_the_readme_says(tmp_path: Path, pg_server: object) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    up = quick_upstream(record=True)
    try:
        with FakeIdP() as idp:
            text = DEPLOY.read_text().replace("https://api.anthropic.com", up.url) \
                .replace("https://idp.corp.example", idp.oidc_issuer) \
                .replace("postgresql://patchbay@db:5432/patchbay", url)
            gw = spawn_gateway(text, tmp_path / "home", extra_env=ENV, timeout_s=40)
            try:
                person = idp.oidc_token("alice@corp.example", aud="gw-client")
                stream(gw.url, person, BODY)
                sent = up.requests_to("/v1/messages")[-1].headers
                assert sent["x-api-key"] == TEAM_KEY and person not in str(sent)  # the team's key, not hers
                made = gw.cli("team", "key", "create", "bob@corp.example", "--config", str(gw.config_path))
                assert made.returncode == 0, made.stderr
                key = next(w for w in made.stdout.split() if w.startswith("pbk_"))
                stream(gw.url, key, BODY)
                cap = httpx.post(f"{gw.url}/v1/organizations/spend_limits",
                                 headers={"x-api-key": ENV["PATCHBAY_ADMIN_KEY"]},
                                 json={"scope": {"type": "user", "user_id": "bob@corp.example"}, "amount": "0",
                                       "period": "daily"})
                assert cap.status_code == 200, cap.text
                with pytest.raises(anthropic.RateLimitError):
                    stream(gw.url, key, BODY)
            finally:
                gw.stop()
            assert gw.proc.returncode == 0, gw.log()
    finally:
        up.stop()
