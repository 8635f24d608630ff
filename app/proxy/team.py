"""Team mode in the gateway: who sent a request, and whether their groups allow a route.

A ``TeamGate`` rides in the gateway's snapshot when the config has a ``[team]`` section. The
gateway asks it, before reading a request's body, for the caller's verified ``Identity`` (401
``authentication_error`` when the credential is missing or bad: the single-user gateway token
is no identity here), then asks it of every route the request may take (the first choice, a
session pin, a ``[routes]`` rule, each failover target, a budget's downgrade): a route the
person's ``[[team.groups]]`` do not allow is skipped where an alternative exists, and refused
with 403 ``permission_error`` naming the rule where the client asked for it by name or nothing
else is left. The allowed route's ``max_output_tokens`` cap lowers the request's ``max_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.proxy.routing import Route
from app.team.config import GroupPolicy
from app.team.identity import Identity, IdentityChain
from app.team.policy import Decision, PolicyDenied, decide, user_groups


@dataclass(frozen=True)
class TeamGate:
    chain: IdentityChain
    groups: tuple[GroupPolicy, ...] = ()

    async def identify(self, scope_headers: list[tuple[bytes, bytes]] | Any) -> Identity:
        """The caller's verified identity (raises ``AuthError`` / ``IdentityUnavailable``)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope_headers}
        return await self.chain.identify(headers)

    def groups_of(self, identity: Identity) -> tuple[str, ...]:
        """The person's ``[[team.groups]]``; with none configured, the groups their identity asserts."""
        return user_groups(self.groups, identity) if self.groups else identity.groups

    def decide(self, identity: Identity, route: Route) -> Decision:
        return decide(self.groups, identity, route.backend, route.model, requested_model=route.requested_model)

    def allows(self, identity: Identity, backend: str, model: str, requested: str) -> bool:
        return not self.groups or decide(self.groups, identity, backend, model, requested_model=requested).allowed

    def check(self, identity: Identity, route: Route) -> Decision:
        """The decision for ``route``; raises ``PolicyDenied`` (403) when it is refused."""
        d = self.decide(identity, route)
        if not d.allowed:
            raise PolicyDenied(d)
        return d

    async def aclose(self) -> None:
        await self.chain.aclose()
