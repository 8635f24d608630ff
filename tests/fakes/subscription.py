"""Anthropic's API as a Claude subscription (or an API key) meets it: one guard, one fake upstream.

``AccountGuard(oauth=..., api_key=...)`` lets a request through only with the account's own
credential, the way api.anthropic.com checks it (docs/protocol.md §1, "Subscription logins"):

- ``Authorization: Bearer sk-ant-oat01-…`` (a claude.ai subscription login) needs the beta
  ``oauth-2025-04-20`` in ``anthropic-beta`` (without it: 401 "OAuth authentication is currently
  not supported."), and then must be the subscription's token ("Invalid bearer token");
- an API key, in ``x-api-key`` or as a bearer (as the anthropic SDK 2.x sends it), must be the
  account's key ("invalid x-api-key");
- neither: 401 "x-api-key header is required".

Patchbay's own gateway token has no business upstream: a request that carries the
``x-patchbay-token`` header, or the gateway token in any header, is refused with 400 so that a
leak fails the test loudly. ``refused`` keeps the message of every refusal.

``SubscriptionAPI`` is a whole fake Anthropic API behind that guard: its answers to subscription
requests carry the ``anthropic-ratelimit-unified-*`` headers (the 5-hour and 7-day windows:
utilisation as a fraction, resets in Unix seconds; docs/protocol.md §6), set by ``.windows``;
API-key answers carry none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.fakes.chunks import anthropic_message, anthropic_text_events
from tests.fakes.upstreams import (
    AnthropicJSON,
    AnthropicStream,
    FakeUpstream,
    ReceivedRequest,
    Response,
    anthropic_error,
)

OAUTH_BETA = "oauth-2025-04-20"
OAUTH_TOKEN = "sk-ant-oat01-FakeSubscriptionAccessToken0123456789abcdefABCDEF"
REFRESH_TOKEN = "sk-ant-ort01-FakeSubscriptionRefreshToken0123456789abcdef"
API_KEY = "sk-ant-api03-FakeAccountApiKey0123456789abcdefABCDEF"
_OAUTH_PREFIX = "Bearer sk-ant-oat"


def is_oauth(req: ReceivedRequest) -> bool:
    """Whether the request came with a subscription's OAuth bearer (not an API key)."""
    return req.headers.get("authorization", "").startswith(_OAUTH_PREFIX)


class AccountGuard:
    def __init__(self, *, oauth: str | None = OAUTH_TOKEN, api_key: str | None = API_KEY,
                 gateway_token: str | None = None) -> None:
        self.oauth = oauth
        self.api_key = api_key
        self.gateway_token = gateway_token
        self.refused: list[str] = []  # the messages of the requests it refused

    def _refuse(self, status: int, error_type: str, message: str) -> Response:
        self.refused.append(message)
        return anthropic_error(status, error_type, message)

    def guard(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST":
            return None
        if "x-patchbay-token" in req.headers or (
                self.gateway_token and any(self.gateway_token in v for v in req.headers.values())):
            return self._refuse(400, "invalid_request_error", "Patchbay's gateway token reached the upstream.")
        auth = req.headers.get("authorization", "")
        if is_oauth(req):
            betas = [b.strip() for b in req.headers.get("anthropic-beta", "").split(",")]
            if OAUTH_BETA not in betas:
                return self._refuse(401, "authentication_error", "OAuth authentication is currently not supported.")
            if auth[7:] != self.oauth:
                return self._refuse(401, "authentication_error", "Invalid bearer token")
            return None
        key = req.headers.get("x-api-key") or (auth[7:] if auth.startswith("Bearer ") else None)
        if key is None:
            return self._refuse(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return self._refuse(401, "authentication_error", "invalid x-api-key")
        return None


def credentials_json(token: str = OAUTH_TOKEN, *, expires_at_ms: int = 4_102_444_800_000) -> dict[str, object]:
    """What Claude Code keeps in ``~/.claude/.credentials.json`` after a subscription login (Linux)."""
    return {"claudeAiOauth": {"accessToken": token, "refreshToken": REFRESH_TOKEN, "expiresAt": expires_at_ms,
                              "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}}


@dataclass
class Windows:
    five_hour: float = 0.63
    seven_day: float = 0.21
    five_hour_reset: float = field(default_factory=lambda: float(int(time.time()) + 2 * 3600))
    seven_day_reset: float = field(default_factory=lambda: float(int(time.time()) + 4 * 86400))
    status: str = "allowed"

    def headers(self) -> dict[str, str]:
        p = "anthropic-ratelimit-unified-"
        return {
            p + "status": self.status, p + "representative-claim": "five_hour",
            p + "reset": str(int(self.five_hour_reset)),
            p + "5h-utilization": f"{self.five_hour:g}", p + "5h-reset": str(int(self.five_hour_reset)),
            p + "5h-status": self.status,
            p + "7d-utilization": f"{self.seven_day:g}", p + "7d-reset": str(int(self.seven_day_reset)),
            p + "7d-status": "allowed",
            p + "overage-status": "rejected", p + "overage-disabled-reason": "org_level_disabled",
            p + "fallback-percentage": "0.5",
        }


class SubscriptionAPI:
    """The fake upstream (``.up``), its guard (``.account``) and what it served (``.credentials``:
    "oauth" / "api_key" per answered request)."""

    def __init__(self, model: str = "claude-fake", usage: tuple[int, int] = (12_000, 800),
                 gateway_token: str | None = None) -> None:
        self.windows = Windows()
        self.model = model
        self.usage = usage
        self.credentials: list[str] = []
        self.delay_s = 0.0  # between the events of a streamed answer
        self.account = AccountGuard(gateway_token=gateway_token)
        self.up = FakeUpstream(self._answer, wire="anthropic", models=(model,), guard=self.account.guard)

    def __enter__(self) -> SubscriptionAPI:
        self.up.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.up.stop()

    @property
    def url(self) -> str:
        return self.up.url

    def _answer(self, req: ReceivedRequest) -> Response:
        oauth = is_oauth(req)
        self.credentials.append("oauth" if oauth else "api_key")
        headers = self.windows.headers() if oauth else {}
        if req.is_stream:
            return AnthropicStream(anthropic_text_events("Hello from the plan.", model=self.model, usage=self.usage),
                                   headers=headers, delay_s=self.delay_s)
        return AnthropicJSON(anthropic_message("Hello from the plan.", model=self.model, usage=self.usage),
                             headers=headers)
