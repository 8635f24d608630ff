"""The first phases of POST /v1/messages, in the order the gateway runs them.

1. ``authenticate``: who sent the request (the gateway token, or a verified identity in team
   mode), from its headers alone, before reading (up to 32 MB of) its body; a stranger gets no
   ledger row.
2. ``latest``: the newest snapshot, read once the body has arrived.
3. ``arrive``: the parsed body and the headers become an ``Arrival``, what every later phase reads.
4. ``route``: the routing rules, server tools, the team's check and its output cap.

gateway.py calls them top to bottom; admission comes next (``admit.py``), then the upstream call
with its failover (gateway.py). Each phase takes what it needs and returns what the next needs,
so a test can run one alone.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from typing import Any

import orjson

from app.errors import ApiError
from app.proxy import access, server_tools
from app.proxy.backends.base import Backend, clamp_output
from app.proxy.exchange import Incoming
from app.proxy.hints import Hints
from app.proxy.request_body import forwarded_header, session_from_metadata
from app.proxy.routing import Refusal, Route
from app.proxy.snapshot import Snapshot
from app.proxy.team import TeamGate
from app.team.identity import Identity


@dataclass(frozen=True)
class Caller:
    """Who sent a request, known from its headers before its body is read."""

    headers: dict[bytes, bytes]
    api_key: str | None  # x-api-key
    bearer: str | None  # Authorization: Bearer …
    authorization: str | None  # the raw Authorization header
    own_header: str | None  # Patchbay's own token header
    is_exposed: bool  # the gateway listens beyond loopback
    team: TeamGate | None  # team mode: the gate that verified ``identity``
    identity: Identity | None
    client_addr: str | None

    @property
    def presented(self) -> bool:
        """It carried some credential (the token or not)."""
        return bool(self.api_key or self.bearer or self.own_header)


@dataclass
class Arrival:
    """A request with a parsed body and a known sender: what routing, admission and the upstream
    call read. ``inc.body`` is the body as sent upstream (the team's output cap applied)."""

    request_id: str
    scope: dict[str, Any]
    snap: Snapshot  # the newest, read once the body had arrived
    caller: Caller
    inc: Incoming
    count: bool  # POST /v1/messages/count_tokens
    who: dict[str, Any]  # the event fields that say who sent it

    @property
    def stream(self) -> bool:
        return bool(self.inc.body.get("stream")) and not self.count


def header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    v = headers.get(name)
    return v.decode("latin-1") if v is not None else None


def token_ok(value: str | None, snap: Snapshot) -> bool:
    """``value`` is the gateway token (compared in constant time)."""
    return value is not None and value != "" and snap.token is not None and \
        hmac.compare_digest(value.encode(), snap.token.encode())


def check_origin(headers: dict[bytes, bytes], snap: Snapshot) -> None:
    """A request from a web page (an Origin header) only from an allowed origin."""
    origin = headers.get(b"origin")
    if origin is not None:
        o = origin.decode("latin-1")
        if o not in snap.settings.allowed_origins:
            raise ApiError(
                403, "permission_error",
                f"Patchbay refuses requests from web pages (Origin: {o}). If you trust this page, add "
                f'"{o}" to allowed_origins in the [gateway] section of the config.',
            )


def client_addr(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def authenticate(snap: Snapshot, scope: dict[str, Any]) -> Caller:
    """Phase 1: the sender, from the headers alone. Team mode: a verified identity (401 without
    one). Otherwise the gateway token, unless a loopback gateway has a backend that forwards the
    client's own credential (``auth = "client"``)."""
    headers = {k: v for k, v in scope["headers"]}
    check_origin(headers, snap)
    api_key = header(headers, b"x-api-key")
    authorization = header(headers, b"authorization")
    bearer = None
    if authorization and authorization[:7].lower() == "bearer ":
        bearer = authorization[7:].strip()
    # the gateway token in Patchbay's own header leaves Authorization / x-api-key to the user's
    # own Anthropic credential; set-ups from before that header send it as one of those
    own_header = header(headers, access.TOKEN_HEADER_B)
    is_exposed = access.exposed(snap.settings.host)
    team = snap.team
    identity: Identity | None = None
    if team is not None:
        identity = await team.identify(scope["headers"])  # no ledger row for a stranger: like the token
    elif not (token_ok(own_header, snap) or token_ok(api_key, snap) or token_ok(bearer, snap)) \
            and (is_exposed or not any(b.config.auth == "client" for b in snap.backends.values())):
        raise access.token_needed(bool(api_key or bearer or own_header), is_exposed)
    return Caller(headers, api_key, bearer, authorization, own_header, is_exposed, team, identity,
                  client_addr(scope))


def latest(snap: Snapshot, caller: Caller) -> Snapshot:
    """Phase 2: the snapshot the rest of the request reads (the gateway's newest, read after the
    last wait before its backends are claimed: a backend edited while the body was arriving is
    retired, and closes only once nobody holds it), with the team gate that verified the caller."""
    if caller.team is not None and snap.team is not caller.team:  # the config changed while the body arrived
        snap = replace(snap, team=caller.team)
    return snap


def who(caller: Caller) -> dict[str, Any]:
    """The event fields that say who sent a request (never their credential)."""
    identity = caller.identity
    groups = caller.team.groups_of(identity) if caller.team is not None and identity is not None else ()
    return {"user": identity.user if identity is not None else None, "groups": groups,
            "identity_source": identity.source if identity is not None else None, "client_addr": caller.client_addr}


def arrive(snap: Snapshot, scope: dict[str, Any], caller: Caller, raw: bytes, body: dict[str, Any],
           count: bool) -> Arrival:
    """Phase 3: what the later phases read of the request (its parsed ``body``)."""
    headers = caller.headers
    identity = caller.identity
    key_is_token = token_ok(caller.api_key, snap)
    bearer_is_token = token_ok(caller.bearer, snap)
    # team mode: a verified person may use the stored-key backends (no backend forwards the
    # caller's credential there: the config refuses auth = "client" in team mode)
    authed = identity is not None or key_is_token or bearer_is_token or token_ok(caller.own_header, snap)
    fields = who(caller)
    inc = Incoming(
        body=body, raw=raw, api_key=caller.api_key, bearer=caller.bearer, authorization=caller.authorization,
        anthropic_version=forwarded_header(headers, b"anthropic-version"),
        anthropic_beta=forwarded_header(headers, b"anthropic-beta"),
        user_agent=header(headers, b"user-agent"),
        session_id=header(headers, b"x-claude-code-session-id") or session_from_metadata(body),
        agent_id=header(headers, b"x-claude-code-agent-id"),
        api_key_is_token=key_is_token or identity is not None, bearer_is_token=bearer_is_token or identity is not None,
        identity=identity, groups=fields["groups"], client_addr=caller.client_addr, authed=authed,
    )
    return Arrival(scope["patchbay.request_id"], scope, snap, caller, inc, count, fields)


def may_use(snap: Snapshot, route: Route, inc: Incoming) -> bool:
    """This request may be sent along ``route``: its credential may use the backend, and in team
    mode the sender's groups allow the model."""
    b = snap.backends.get(route.backend)
    if b is None or not access.may_use(b.config, inc.authed or inc.api_key_is_token or inc.bearer_is_token,
                                       access.exposed(snap.settings.host)):
        return False
    team, identity = snap.team, inc.identity
    return team is None or identity is None or team.allows(identity, route.backend, route.model,
                                                            route.requested_model)


def route(arrival: Arrival) -> Route:
    """Phase 4: the route the rules choose (a WebSearch goes where it can run), checked against
    the team's groups, with the allowed route's output cap applied to the body. Raises the
    refusal as a ``ApiError`` (the caller records it)."""
    snap, inc, caller = arrival.snap, arrival.inc, arrival.caller
    body, team, identity = inc.body, caller.team, caller.identity
    allow = None
    if team is not None and identity is not None and team.groups:
        person = identity

        def allow(b: str, m: str, req: str) -> bool:
            return team.allows(person, b, m, req)

    routed = snap.table.resolve(body["model"], inc.session_id, header(caller.headers, b"x-patchbay-pin"), body=body,
                                subagent=inc.agent_id is not None, hints=Hints.from_headers(caller.headers),
                                allow=allow)
    if not isinstance(routed, Refusal) and not arrival.count:  # WebSearch never reaches a model that would invent it
        routed = server_tools.place(snap.table, routed, body, own_credential(inc), lambda r: may_use(snap, r, inc))
    if isinstance(routed, Refusal):
        raise ApiError(routed.status, routed.error_type, routed.message, headers=list(routed.headers))
    if team is not None and identity is not None:
        allowed = team.check(identity, routed)
        capped = allowed.cap(body.get("max_tokens")) if not arrival.count else None
        if capped is not None and capped != body.get("max_tokens"):
            body = dict(body)
            clamp_output(body, capped)
            inc.body, inc.raw = body, orjson.dumps(body)
    return routed


def authorize(arrival: Arrival, backend: Backend) -> None:
    """The credential this request carried may use ``backend`` (401 / 403 otherwise)."""
    caller = arrival.caller
    access.authorize(backend.config, arrival.inc.authed, caller.is_exposed, caller.presented)


def own_credential(inc: Incoming) -> bool:
    """The client sent an Anthropic credential of its own (not the gateway token)."""
    return bool(inc.api_key and not inc.api_key_is_token) or bool(inc.bearer and not inc.bearer_is_token)
