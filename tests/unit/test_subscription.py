"""Which requests a Claude subscription pays for, and the unified rate-limit headers read back."""

from __future__ import annotations

import httpx

from app.claude.subscription_windows import windows_text
from app.config import BackendConfig
from app.proxy.subscription import parse_unified, served_under_subscription

CLIENT = BackendConfig(id="anthropic", kind="anthropic", base_url="https://api.anthropic.com", auth="client")
STORED = BackendConfig(id="company", kind="anthropic", base_url="https://llm.corp.example", auth="keychain")
OAT = "sk-ant-oat01-abc"
KEY = "sk-ant-api03-abc"
BETA = "claude-code-20250219, oauth-2025-04-20"


def test_only_an_oauth_bearer_forwarded_by_a_client_backend_is_the_plans() -> None:
    assert served_under_subscription(CLIENT, OAT, BETA)
    assert served_under_subscription(CLIENT, OAT, None)  # the token's own prefix says it
    assert served_under_subscription(CLIENT, "opaque-oauth-token", BETA)  # the beta says it
    assert not served_under_subscription(STORED, OAT, BETA)  # Patchbay's stored key pays there
    assert not served_under_subscription(CLIENT, OAT, BETA, bearer_is_token=True)  # our gateway token
    # an API key is money, whatever betas come with it: no budget is dodged by adding one
    assert not served_under_subscription(CLIENT, KEY, BETA)
    assert not served_under_subscription(CLIENT, OAT, BETA, api_key=KEY)
    assert not served_under_subscription(CLIENT, None, BETA, api_key=KEY)


def test_the_unified_headers_are_read_as_claude_code_reads_them() -> None:
    h = httpx.Headers({
        "Anthropic-Ratelimit-Unified-Status": "allowed_warning", "anthropic-ratelimit-unified-reset": "1780003600",
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-5h-utilization": "0.63", "anthropic-ratelimit-unified-5h-reset": "1780003600",
        "anthropic-ratelimit-unified-7d-utilization": "0.21", "anthropic-ratelimit-unified-7d-reset": "1780300000",
        "anthropic-ratelimit-unified-overage-status": "rejected",
        "anthropic-ratelimit-unified-overage-utilization": "nan",  # not a number: left out
    })
    got = parse_unified(h, "anthropic", now=1_780_000_000.0)
    assert got is not None
    assert (got.status, got.representative_claim, got.reset) == ("allowed_warning", "five_hour", 1780003600.0)
    assert (got.five_hour_utilization, got.five_hour_reset) == (0.63, 1780003600.0)
    assert (got.seven_day_utilization, got.seven_day_reset) == (0.21, 1780300000.0)
    assert got.overage_status == "rejected" and got.overage_utilization is None
    assert parse_unified(httpx.Headers({"anthropic-ratelimit-requests-limit": "50"}), "anthropic") is None


def test_a_window_that_has_reset_is_not_shown() -> None:
    now = 1_780_000_000.0
    state = {"observed_at": now - 60, "five_hour_utilization": 0.9, "five_hour_reset": now - 1,
             "seven_day_utilization": 0.4, "seven_day_reset": now + 86400 * 3}
    assert windows_text(state, now) == "week 40 %"
    assert windows_text({**state, "seven_day_reset": now - 1}, now) == ""
    assert windows_text(None, now) == ""
