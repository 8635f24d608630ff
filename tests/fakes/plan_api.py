"""A fake Anthropic API that serves both kinds of Claude credential, the way api.anthropic.com does.

- ``Authorization: Bearer sk-ant-oat01-…`` (a claude.ai subscription login) is accepted only with
  the beta ``oauth-2025-04-20`` in ``anthropic-beta``; without it Anthropic answers 401
  ``authentication_error`` "OAuth authentication is currently not supported.". Its answers carry
  the ``anthropic-ratelimit-unified-*`` headers (the subscription's 5-hour and 7-day windows:
  utilisation as a fraction, resets in Unix seconds; docs/protocol.md §6).
- ``x-api-key: sk-ant-api03-…`` (an API key; as a bearer too, as the anthropic SDK 2.x sends it) is served without those headers.
- Anything else: 401 "x-api-key header is required" (no credential) or "invalid x-api-key".

``SubscriptionAPI.windows`` sets what the next answers report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.fakes.chunks import anthropic_message, anthropic_text_events
from tests.fakes.upstreams import AnthropicJSON, AnthropicStream, FakeUpstream, ReceivedRequest, Response, anthropic_error

OAUTH_TOKEN = "sk-ant-oat01-FAKEsubscriptionTOKEN0123456789abcdefghijklmnopqrstuvwxyz-AAAAAA"
API_KEY = "sk-ant-api03-FAKEapiKEY0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-AAAAAAA"
OAUTH_BETA = "oauth-2025-04-20"


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
    """The fake upstream (``.up``) and what it saw (``.credentials``: "oauth" / "api_key" per request)."""

    def __init__(self, model: str = "claude-fake", usage: tuple[int, int] = (12_000, 800)) -> None:
        self.windows = Windows()
        self.model = model
        self.usage = usage
        self.credentials: list[str] = []
        self.delay_s = 0.0  # between the events of a streamed answer
        self.up = FakeUpstream(self._answer, wire="anthropic", models=(model,), guard=self._guard)

    def __enter__(self) -> "SubscriptionAPI":
        self.up.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.up.stop()

    @property
    def url(self) -> str:
        return self.up.url

    def _guard(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST":
            return None
        auth = req.headers.get("authorization", "")
        if auth.startswith("Bearer sk-ant-oat"):
            betas = [b.strip() for b in req.headers.get("anthropic-beta", "").split(",")]
            if OAUTH_BETA not in betas:
                return anthropic_error(401, "authentication_error", "OAuth authentication is currently not supported.")
            if auth != f"Bearer {OAUTH_TOKEN}":
                return anthropic_error(401, "authentication_error", "Invalid bearer token")
            return None
        # an API key in x-api-key, or as a bearer (what the anthropic SDK 2.x sends)
        key = req.headers.get("x-api-key") or (auth[7:] if auth.startswith("Bearer ") else None)
        if key is None:
            return anthropic_error(401, "authentication_error", "x-api-key header is required")
        if key != API_KEY:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        return None

    def _answer(self, req: ReceivedRequest) -> Response:
        oauth = req.headers.get("authorization", "").startswith("Bearer sk-ant-oat")
        self.credentials.append("oauth" if oauth else "api_key")
        headers = self.windows.headers() if oauth else {}
        if req.is_stream:
            return AnthropicStream(anthropic_text_events("Hello from the plan.", model=self.model, usage=self.usage),
                                   headers=headers, delay_s=self.delay_s)
        return AnthropicJSON(anthropic_message("Hello from the plan.", model=self.model, usage=self.usage),
                             headers=headers)
