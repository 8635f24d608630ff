"""The one error every layer raises for a request it must refuse: an answer in Anthropic's error shape.

It belongs to no HTTP layer: the team's identity sources, the policy and the gateway all raise it, and the gateway's
server writes it as ``{"type": "error", "error": {"type": …, "message": …}, "request_id": …}`` with its status.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered in Anthropic's shape. Raised before or during an exchange."""

    def __init__(self, status: int, error_type: str, message: str, *, raw_body: bytes | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.raw_body = raw_body  # an upstream's own error body, forwarded unchanged
        self.headers = headers or []
