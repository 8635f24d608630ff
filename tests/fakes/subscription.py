"""Anthropic's API as a Claude subscription (or an API key) meets it: a guard for a FakeUpstream.

``AccountGuard(oauth=..., api_key=...)`` lets a request through only with the account's own
credential, the way the real API checks it (docs/protocol.md §1, "Subscription logins"):

- ``Authorization: Bearer sk-ant-oat01-…`` must be the subscription's token, and then
  ``anthropic-beta`` must name ``oauth-2025-04-20`` (without it: 401 "OAuth authentication is
  currently not supported.");
- ``x-api-key`` must be the account's key ("invalid x-api-key");
- neither: 401 "x-api-key header is required".

Patchbay's own gateway token has no business upstream: a request that carries the
``x-patchbay-token`` header, or the gateway token in any header, is refused with 400 so that a
leak fails the test loudly. Every request's headers stay in ``up.requests`` for assertions.
"""

from __future__ import annotations

from tests.fakes.upstreams import ReceivedRequest, Response, anthropic_error

OAUTH_BETA = "oauth-2025-04-20"
OAUTH_TOKEN = "sk-ant-oat01-FakeSubscriptionAccessToken0123456789abcdefABCDEF"
REFRESH_TOKEN = "sk-ant-ort01-FakeSubscriptionRefreshToken0123456789abcdef"
API_KEY = "sk-ant-api03-FakeAccountApiKey0123456789abcdefABCDEF"


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
        auth = req.headers.get("authorization")
        if auth is not None:
            if not auth.startswith("Bearer ") or auth[7:] != self.oauth:
                return self._refuse(401, "authentication_error", "Invalid bearer token")
            betas = [b.strip() for b in req.headers.get("anthropic-beta", "").split(",")]
            if OAUTH_BETA not in betas:
                return self._refuse(401, "authentication_error", "OAuth authentication is currently not supported.")
            return None
        key = req.headers.get("x-api-key")
        if key is None:
            return self._refuse(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return self._refuse(401, "authentication_error", "invalid x-api-key")
        return None


def credentials_json(token: str = OAUTH_TOKEN, *, expires_at_ms: int = 4_102_444_800_000) -> dict[str, object]:
    """What Claude Code keeps in ``~/.claude/.credentials.json`` after a subscription login (Linux)."""
    return {"claudeAiOauth": {"accessToken": token, "refreshToken": REFRESH_TOKEN, "expiresAt": expires_at_ms,
                              "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}}
