"""Admission: whether a routed request may go upstream, and along which route.

``admit`` runs the phases in order: a paused gateway refuses everything (``paused``); a session
past its cost cap is refused or downgraded (``session_cap``, the app's ``SessionCaps``); the
budgets reserve the request's expected cost, downgrade or refuse it (``budgets``, through the
``AdmissionHook`` the product's engine, app/budgets/admission.py, implements); and the
credential and the team's groups must allow the route finally taken. Each refusal is recorded
(``record``: the window counts it, and its row settles any reservation just made) before it is
raised as a ``ApiError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import ApiError
from app.proxy import phases
from app.proxy.backends.base import Backend
from app.proxy.exchange import Incoming
from app.proxy.routing import Refusal, Route
from app.proxy.snapshot import SessionCapsHook, Snapshot
from app.proxy.subscription import SUBSCRIPTION, served_under_subscription

# A paused gateway's answer. Not overloaded_error: nothing is overloaded, and Claude Code retries
# 5xx for minutes unless told not to (x-should-retry, docs/protocol.md); it shows the message instead.
PAUSED = Refusal(503, "api_error", "Patchbay is paused: it forwards no requests until you resume it (the tray "
                 "menu's Resume, or Resume in the Patchbay window's toolbar). This request was not sent anywhere; "
                 "send it again after resuming.")
PAUSED_HEADERS = [(b"x-should-retry", b"false")]

Record = Callable[[Route, Refusal], None]  # a refused request's row, against the route it names


@dataclass(frozen=True)
class Admitted:
    """The route a request goes along, its backend, and what admission adds to a successful answer."""

    route: Route
    backend: Backend
    extra: tuple[tuple[bytes, bytes], ...] = ()


def refused(refusal: Refusal, headers: list[tuple[bytes, bytes]] | None = None) -> ApiError:
    return ApiError(refusal.status, refusal.error_type, refusal.message,
                        headers=list(refusal.headers) if headers is None else headers)


def plan_of(snap: Snapshot, route: Route, inc: Incoming) -> str | None:
    """``"subscription"`` when ``route`` is served under the caller's Claude subscription."""
    b = snap.backends.get(route.backend)
    if b is not None and served_under_subscription(b.config, inc.bearer, inc.anthropic_beta, inc.bearer_is_token,
                                                   inc.api_key, inc.api_key_is_token):
        return SUBSCRIPTION
    return None


async def admit(arrival: phases.Arrival, routed: Route, backend: Backend, *, paused: bool,
                session_caps: SessionCapsHook | None, record: Record) -> Admitted:
    """Every admission phase for a request routed to ``routed`` on ``backend``, in order."""
    if paused:  # recorded (the window counts them) and answered so that Claude Code stops retrying
        record(routed, PAUSED)
        raise refused(PAUSED, PAUSED_HEADERS)
    route, backend = session_cap(arrival, routed, backend, session_caps, record)
    if arrival.snap.admission is None:
        return Admitted(route, backend)
    return await budgeted(arrival, routed, route, backend, record)


def session_cap(arrival: phases.Arrival, routed: Route, backend: Backend, session_caps: SessionCapsHook | None,
                record: Record) -> tuple[Route, Backend]:
    """A session past its cost cap: refused, or downgraded to a route this client may use."""
    if session_caps is None:
        return routed, backend
    capped = session_caps.admit(routed, arrival.inc.session_id)
    if isinstance(capped, Refusal):
        record(routed, capped)
        raise refused(capped)
    if capped is routed:
        return routed, backend
    backend = arrival.snap.backends.get(capped.backend, backend)  # the route taken must be one this client may use
    phases.authorize(arrival, backend)
    return capped, backend


async def budgeted(arrival: phases.Arrival, routed: Route, route: Route, backend: Backend,
                   record: Record) -> Admitted:
    """The budgets' decision for ``route`` (``routed`` unless a session cap moved it), then
    authorisation on the route finally taken: a budget downgrade from a ``client`` backend to
    one with a stored key needs the token as asking for it directly does, and in team mode it
    stays inside what the person's groups allow."""
    snap, inc, request_id = arrival.snap, arrival.inc, arrival.request_id
    adm = snap.admission
    assert adm is not None
    decision = await budgets(snap, route, request_id, inc.body, inc)
    if isinstance(decision, Refusal):
        record(routed, decision)
        raise refused(decision)
    route = decision
    extra = adm.headers_for(request_id)
    backend = snap.backends.get(route.backend, backend)
    team, identity = arrival.caller.team, arrival.caller.identity
    try:
        phases.authorize(arrival, backend)
        if team is not None and identity is not None and route is not routed:
            team.check(identity, route)  # a downgrade stays inside what the person's groups allow
    except ApiError as exc:  # its row settles the reservation just made: no hold is left behind
        record(route, Refusal(exc.status, exc.error_type, exc.message))
        raise
    return Admitted(route, backend, extra)


async def budgets(snap: Snapshot, route: Route, request_id: str, body: dict[str, Any],
                  inc: Incoming) -> Route | Refusal:
    """The budgets' decision for ``route``: the one call into them. It reserves the expected cost
    off the loop, against the sender's own and their groups' budgets too in team mode. A route a
    Claude subscription pays for spends no money: only budgets with include_subscription see it.
    A fallback re-admits under the same request id (its reservation replaces the last one)."""
    adm = snap.admission
    if adm is None:
        return route
    subscription = plan_of(snap, route, inc) is not None
    if subscription and not adm.counts_subscription:
        return route
    user = inc.identity.user if inc.identity is not None else None
    return await adm.reserve(route, request_id, body, user, inc.groups, subscription=subscription)
