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

from dataclasses import dataclass, field
from typing import Any

from app.config.team import GroupPolicy
from app.proxy.routing import Route
from app.team.identity import Identity, IdentityChain
from app.team.policy import Decision, PolicyDenied, decide, user_groups

# decisions are pure functions of the config and the identity: kept per snapshot, at most this many
_MAX_CACHED = 4096


@dataclass(frozen=True)
class TeamGate:
    chain: IdentityChain
    groups: tuple[GroupPolicy, ...] = ()
    _decisions: dict[tuple[Identity, str, str, str], Decision] = field(default_factory=dict, compare=False,
                                                                       repr=False)
    _groups_of: dict[Identity, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    async def identify(self, scope_headers: list[tuple[bytes, bytes]] | Any) -> Identity:
        """The caller's verified identity (raises ``AuthError`` / ``IdentityUnavailable``)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope_headers}
        return await self.chain.identify(headers)

    def groups_of(self, identity: Identity) -> tuple[str, ...]:
        """The person's ``[[team.groups]]``; with none configured, the groups their identity asserts."""
        if not self.groups:
            return identity.groups
        hit = self._groups_of.get(identity)
        if hit is None:
            if len(self._groups_of) >= _MAX_CACHED:
                self._groups_of.clear()
            hit = self._groups_of[identity] = user_groups(self.groups, identity)
        return hit

    def _decision(self, identity: Identity, backend: str, model: str, requested: str) -> Decision:
        key = (identity, backend, model, requested)
        hit = self._decisions.get(key)
        if hit is None:
            if len(self._decisions) >= _MAX_CACHED:
                self._decisions.clear()
            hit = self._decisions[key] = decide(self.groups, identity, backend, model, requested_model=requested)
        return hit

    def decide(self, identity: Identity, route: Route) -> Decision:
        return self._decision(identity, route.backend, route.model, route.requested_model)

    def allows(self, identity: Identity, backend: str, model: str, requested: str) -> bool:
        return not self.groups or self._decision(identity, backend, model, requested).allowed

    def check(self, identity: Identity, route: Route) -> Decision:
        """The decision for ``route``; raises ``PolicyDenied`` (403) when it is refused."""
        d = self.decide(identity, route)
        if not d.allowed:
            raise PolicyDenied(d)
        return d

    async def aclose(self) -> None:
        await self.chain.aclose()
