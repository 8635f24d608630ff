"""Providers that check the key they are sent, and refuse a wrong one in their own words.

``KeyCheck("deepseek", valid="sk-good…")`` is a ``guard`` for :class:`FakeUpstream`: a request
whose ``Authorization: Bearer`` (or ``x-api-key``) is not the valid key gets the provider's 401,
worded as the provider words it (each one quotes the key it was sent, masked or whole: the
gateway must not pass that on).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.fakes.upstreams import AnthropicJSON, OpenAIJSON, ReceivedRequest, Response, anthropic_error, openai_error


def _deepseek(sent: str) -> OpenAIJSON:
    # DeepSeek's error-code page: 401 "Authentication Fails … due to the wrong API key"
    return openai_error(401, f"Authentication Fails, Your api key: ****{sent[-4:]} is invalid",
                        "authentication_error", "invalid_request_error")


def _openai(sent: str) -> OpenAIJSON:
    return openai_error(401, f"Incorrect API key provided: {sent}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")


def _anthropic(sent: str) -> AnthropicJSON:
    return anthropic_error(401, "authentication_error", "invalid x-api-key")


REFUSALS: dict[str, Callable[[str], Response]] = {"deepseek": _deepseek, "openai": _openai, "anthropic": _anthropic}


class KeyCheck:
    """A guard that lets through only requests carrying ``valid``; ``refused`` counts the others."""

    def __init__(self, provider: str, valid: str) -> None:
        self.refuse = REFUSALS[provider]
        self.valid = valid
        self.refused = 0

    def __call__(self, req: ReceivedRequest) -> Response | None:
        auth = req.headers.get("authorization", "")
        sent = auth[7:] if auth.lower().startswith("bearer ") else req.headers.get("x-api-key", "")
        if sent == self.valid:
            return None
        self.refused += 1
        return self.refuse(sent)
