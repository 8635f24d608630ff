"""The real Claude Code CLI against a cap set through the Admin API: served before, and after the
cap lands it stops at once with Patchbay's sentence naming the Admin API's limit (429
``billing_error`` with ``x-should-retry: false``), not after minutes of retries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import spawn_gateway
from tests.e2e.test_admin_api import ENV, quick_upstream, team
from tests.e2e.test_outage_answers import claude
from tests.fakes.idp import FakeIdP
from tests.serve_config import OPUS_PRICES, serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM drain is POSIX")]


def test_claude_code_stops_at_a_cap_set_through_the_admin_api(tmp_path: Path, claude_bin: Path) -> None:
    up = quick_upstream()
    try:
        with FakeIdP() as idp:
            text = serve_config(up.url, port0=False, model="priced", prices=OPUS_PRICES,
                                extra=team(idp.oidc_issuer).replace('identity = ["oidc"]', 'identity = ["oidc", "keys"]'))
            gw = spawn_gateway(text, tmp_path / "gw", extra_env=ENV)
            try:
                made = gw.cli("team", "key", "create", "erin@corp.example", "--config", str(gw.config_path))
                key = next(w for w in made.stdout.split() if w.startswith("pbk_"))
                took, out = claude(claude_bin, tmp_path / "before", gw.url, key, helper=False)
                result = json.loads(out[out.index("{"):out.rindex("}") + 1])
                assert result["is_error"] is False and result["result"], out
                r = httpx.post(f"{gw.url}/v1/organizations/spend_limits", headers={"x-api-key": ENV["PB_ADMIN_KEY"]},
                               json={"scope": {"type": "user", "user_id": "erin@corp.example"}, "amount": "0",
                                     "period": "daily", "blocked_message": "Ask #finops."})
                assert r.status_code == 200, r.text
                took, out = claude(claude_bin, tmp_path / "after", gw.url, key, helper=False)
                print(f"\nClaude Code exited {took:.1f} s after starting, past the Admin API cap")
                assert "Admin API" in out and "Ask #finops." in out, out
                assert took < 20, out
            finally:
                gw.stop()
    finally:
        up.stop()
