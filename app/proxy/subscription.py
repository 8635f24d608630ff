"""Requests served under a Claude subscription, and the subscription's usage windows.

A Claude Code signed in with a Pro / Max subscription sends ``Authorization: Bearer
sk-ant-oat01-…`` and the beta ``oauth-2025-04-20`` (docs/protocol.md §6). Forwarded to an
Anthropic backend with ``auth = "client"``, such a request is paid by the subscription, not by
the API: its price is an API-equivalent value, not money spent (``served_under_subscription``).

Anthropic answers such requests with the ``anthropic-ratelimit-unified-*`` headers: the 5-hour
and 7-day windows' utilisation (a fraction, 0.63 = 63 %) and reset times (Unix seconds), the
overall status and the overage (extra usage) state. ``parse_unified`` reads them into a
:class:`~app.events.SubscriptionLimits`; the names are the ones Claude Code 2.1.332 reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from app.config import BackendConfig
from app.events import SubscriptionLimits

OAUTH_BETA = "oauth-2025-04-20"
OAUTH_TOKEN_PREFIX = "sk-ant-oat"  # a claude.ai OAuth access token (sk-ant-oat01-…)
API_KEY_PREFIX = "sk-ant-api"  # an Anthropic API key (sk-ant-api03-…), also sent as a bearer by the SDK
SUBSCRIPTION = "subscription"  # RequestFinished.plan and the ledger's ``plan`` column
PREFIX = "anthropic-ratelimit-unified-"


def is_oauth(bearer: str | None, beta: str | None) -> bool:
    """The client's bearer is a claude.ai OAuth token (a subscription login): its ``sk-ant-oat``
    prefix, or the OAuth beta beside it (Anthropic then takes the bearer as OAuth, or refuses it)."""
    if not bearer or bearer.startswith(API_KEY_PREFIX):  # an API key as a bearer is money, whatever the betas
        return False
    return bearer.startswith(OAUTH_TOKEN_PREFIX) or OAUTH_BETA in (b.strip() for b in (beta or "").split(","))


def served_under_subscription(backend: BackendConfig, bearer: str | None, beta: str | None,
                              bearer_is_token: bool = False, api_key: str | None = None,
                              api_key_is_token: bool = False) -> bool:
    """Whether ``backend`` serves this request under the caller's subscription: an Anthropic
    backend that forwards the caller's own credential, and that credential is an OAuth bearer
    (never Patchbay's own gateway token). An API key forwarded beside it is money: a request that
    carries one is never counted as the plan's (no budget can be dodged with an added beta)."""
    if backend.kind != "anthropic" or backend.auth != "client" or bearer_is_token:
        return False
    if api_key and not api_key_is_token:
        return False
    return is_oauth(bearer, beta)


def _number(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        n = float(value)
    except ValueError:
        return None
    return n if math.isfinite(n) else None


def parse_unified(headers: Mapping[str, str], backend: str, now: float | None = None) -> SubscriptionLimits | None:
    """The unified rate-limit state in an upstream's response headers (lower-case names, as
    httpx gives them), or None when it sent none of them (an API-key request, another provider)."""
    # one search of all the names at once (C code), not a Python call per header (Anthropic sends ~20)
    if "\n" + PREFIX not in "\n" + "\n".join(headers).lower():
        return None

    def text(name: str) -> str | None:
        v = headers.get(PREFIX + name)
        return v.strip() if v is not None and v.strip() else None

    def num(name: str) -> float | None:
        return _number(headers.get(PREFIX + name))

    return SubscriptionLimits(
        backend=backend, observed_at=time.time() if now is None else now,
        status=text("status"),  # allowed | allowed_warning | rejected
        representative_claim=text("representative-claim"),  # five_hour | seven_day | …: the binding window
        reset=num("reset"),  # when the binding window resets
        five_hour_utilization=num("5h-utilization"), five_hour_reset=num("5h-reset"), five_hour_status=text("5h-status"),
        seven_day_utilization=num("7d-utilization"), seven_day_reset=num("7d-reset"), seven_day_status=text("7d-status"),
        overage_status=text("overage-status"),  # extra usage beyond the plan
        overage_utilization=num("overage-utilization"), overage_reset=num("overage-reset"),
        overage_disabled_reason=text("overage-disabled-reason"),
    )
