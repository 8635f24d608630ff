"""What a request reads, as one reference: the ``Snapshot`` the runtime swaps when the user changes something,
and the two hooks it carries from above the gateway (the budgets' admission, the per-session caps), typed as
Protocols so the gateway never imports the services that implement them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.config import GatewaySettings
from app.events import Usage
from app.proxy.backends.base import Backend
from app.proxy.exchange import Exchange
from app.proxy.routing import Refusal, Route, RoutingTable
from app.proxy.team import TeamGate


class AdmissionHook(Protocol):
    """The budgets' side of the gateway (app/budgets/admission.py ``Admission``)."""

    @property
    def counts_subscription(self) -> bool:
        """Some budget counts what a Claude subscription's requests are worth: admit those too."""
        ...

    async def reserve(self, route: Route, request_id: str, body: Mapping[str, Any], user: str | None = None,
                      groups: tuple[str, ...] = (), subscription: bool = False) -> Route | Refusal:
        """The decision for ``route`` (itself, a downgrade, or a refusal), holding its expected cost."""
        ...

    def headers_for(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        """The headers the answer to an admitted request carries (asked once)."""
        ...

    async def meter(self, ex: Exchange) -> str | None:
        """Before each write of a stream: None to go on, or the sentence it stops with at the cap."""
        ...

    def finished_early(self, request_id: str, backend: str, model: str, usage: Usage, started_at: float) -> None:
        """A request's real cost, just before the client gets the end of its answer."""
        ...


class SessionCapsHook(Protocol):
    """Per-session cost caps (app/budgets/session_caps.py ``SessionCaps``), asked before the budgets."""

    def admit(self, route: Route, session_id: str | None) -> Route | Refusal:
        ...


@dataclass(frozen=True)
class Snapshot:
    """Everything a request reads, swapped as one reference when the user changes something."""

    settings: GatewaySettings
    table: RoutingTable
    backends: dict[str, Backend]
    token: str | None
    capture: str = "off"
    admission: AdmissionHook | None = None  # the budgets (admit.py)
    team: TeamGate | None = None  # team mode: every request carries a verified identity
