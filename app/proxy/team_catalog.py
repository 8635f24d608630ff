"""The models one person may use, worked out the way ``/v1/messages`` decides: one place for
``GET /v1/models`` (team mode) and the ``availableModels`` pushed by ``GET /managed/settings``.

For every model of every configured backend, two names reach it through ``/v1/messages``:
``backend,model`` (routed to exactly that backend and model) and the plain ``model`` (routed as
any request naming it: the active backend, its model if ``[active] model`` is set, a session pin
or a ``[routes]`` rule the person may use). A name is *admitted* when the routing table's own
``resolve`` sends it to a route the person's groups allow (``TeamGate.allows``, the check the
gateway runs before every upstream call). ``[routes]`` rules that look at the request body (a
subagent, a background or thinking request) are not applied: the names are judged as a main turn.

- ``Catalog.admitted``: every admitted name (plain names first), the list pushed as ``availableModels``;
- ``Catalog.listed``: one entry per allowed backend model, for ``GET /v1/models``: its plain name
  when that reaches exactly this backend and model, else ``backend,model``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.proxy.routing import Route, RoutingTable
from app.proxy.team import TeamGate
from app.team.identity import Identity


@dataclass(frozen=True, slots=True)
class Listed:
    id: str  # the name a client sends as "model"
    backend: str
    model: str  # what the backend is asked for


@dataclass(frozen=True, slots=True)
class Catalog:
    listed: tuple[Listed, ...]
    admitted: tuple[str, ...]


def route_of(table: RoutingTable, gate: TeamGate, identity: Identity, name: str) -> Route | None:
    """Where ``/v1/messages`` sends a main-turn request naming ``name``, or None when refused."""

    def allow(b: str, m: str, req: str) -> bool:
        return gate.allows(identity, b, m, req)

    routed = table.resolve(name, None, None, allow=allow)
    if not isinstance(routed, Route) or not gate.allows(identity, routed.backend, routed.model, name):
        return None
    return routed


def catalog(table: RoutingTable, gate: TeamGate, identity: Identity) -> Catalog:
    listed: list[Listed] = []
    explicit_names: list[str] = []
    for b in table.backends.values():
        for m in b.models:
            explicit = f"{b.id},{m}"
            if route_of(table, gate, identity, explicit) is None:
                continue
            explicit_names.append(explicit)
            plain = route_of(table, gate, identity, m)
            exact = plain is not None and (plain.backend, plain.model) == (b.id, m)
            listed.append(Listed(m if exact else explicit, b.id, m))
    plain_names = [m for m in dict.fromkeys(m for b in table.backends.values() for m in b.models)
                   if route_of(table, gate, identity, m) is not None]
    return Catalog(tuple(listed), tuple(dict.fromkeys(plain_names + explicit_names)))
