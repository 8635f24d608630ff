"""The gateway's routes besides /v1/messages: /v1/models, /health, /ready, /metrics, the CORS
preflight and team mode's /managed/settings and OTLP intake; and the small answers every route
gives (``plain``, ``json_answer``, ``allow``).

Each takes the gateway (app/proxy/gateway.py; the ``Gateway`` protocol here) for the state it
reads: the snapshot, whether it is paused, its readiness check, its metrics. None of them is on a
request's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from app import __version__
from app.proxy import access, phases, team_endpoints
from app.proxy.exchange import JSON_HEADERS, ApiError, error_body
from app.proxy.snapshot import Snapshot
from app.proxy.team_catalog import catalog
from app.proxy.team_endpoints import Receive, Send


class Gateway(Protocol):
    """What these routes read of app/proxy/gateway.py's ``Gateway``."""

    snap: Snapshot
    paused: bool
    started_at: float
    served: int
    not_ready: Callable[[], str | None] | None
    metrics: Callable[[], bytes] | None
    metrics_public: bool
    telemetry: team_endpoints.TelemetryIntake | None


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"]}


async def options(gw: Gateway, scope: dict[str, Any], send: Send) -> None:
    headers = _headers(scope)
    origin = headers.get(b"origin")
    snap = gw.snap
    if origin is not None and origin.decode("latin-1") in snap.settings.allowed_origins:
        await plain(send, 204, b"", [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
            (b"access-control-allow-headers", b"*"),
        ])
    else:
        await plain(send, 403, error_body("permission_error", "Cross-origin requests are not allowed."),
                    JSON_HEADERS)


async def team_endpoint(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send, path: str,
                        method: str) -> None:
    """Team mode: /managed/settings and Claude Code's OTLP export (app/proxy/team_endpoints.py)."""
    snap = gw.snap
    phases.check_origin(_headers(scope), snap)
    if path == team_endpoints.SETTINGS_PATH:
        allow(method, "GET")
        await team_endpoints.managed_settings(snap, scope, send, gw.telemetry is not None)
    else:
        allow(method, "POST")
        await team_endpoints.telemetry(snap, scope, receive, send, path, gw.telemetry)


def _authed(headers: dict[bytes, bytes], snap: Snapshot) -> tuple[bool, bool]:
    """(carries the gateway token, carries any credential)"""
    key = phases.header(headers, b"x-api-key")
    auth = phases.header(headers, b"authorization") or ""
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    own = phases.header(headers, access.TOKEN_HEADER_B)
    return (phases.token_ok(own, snap) or phases.token_ok(key, snap) or phases.token_ok(bearer, snap),
            bool(key or bearer or own))


async def models(gw: Gateway, scope: dict[str, Any], send: Send, model_id: str | None = None) -> None:
    """GET /v1/models (the list), or GET /v1/models/{model_id}: one entry, by its id
    (``backend,model``) or by a model name alone (its first backend)."""
    snap = gw.snap
    headers = _headers(scope)
    phases.check_origin(headers, snap)
    active = snap.table.backends[snap.table.active_backend]
    team = snap.team
    identity = await team_endpoints.identify(snap, scope) if team is not None else None
    authed, presented = _authed(headers, snap)
    access.authorize(active, authed or identity is not None, access.exposed(snap.settings.host), presented)
    if team is not None and identity is not None:  # only what this person's groups admit (app/proxy/team_catalog.py)
        entries = [(e.id, e.model, e.backend) for e in catalog(snap.table, team, identity).listed]
    else:
        entries = [(f"{b.id},{m}", m, b.id) for b in snap.table.backends.values() for m in b.models]
    data = [{"type": "model", "id": i, "display_name": m if i == m else f"{m} ({b})",
             "created_at": "1970-01-01T00:00:00Z"} for i, m, b in entries]
    if model_id is not None:
        found = next((d for d in data if d["id"] == model_id), None) or \
            next((d for d in data if d["id"].split(",", 1)[-1] == model_id), None)
        if found is None:
            raise ApiError(404, "not_found_error", f"model: {model_id} (GET /v1/models lists the models "
                       "Patchbay serves, written backend,model)")
        await json_answer(send, 200, found)
        return
    await json_answer(send, 200, {"data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})


async def metrics(gw: Gateway, scope: dict[str, Any], send: Send) -> None:
    snap = gw.snap
    headers = _headers(scope)
    phases.check_origin(headers, snap)
    if not gw.metrics_public:
        authed, _presented = _authed(headers, snap)
        if not authed:
            raise ApiError(401, "authentication_error",
                           f"GET /metrics needs the gateway token (the {access.TOKEN_HEADER} header, or Authorization: "
                           "Bearer …), or set "
                           "public = true in a [metrics] section for a scraper inside a private network.")
    render = gw.metrics
    assert render is not None
    await plain(send, 200, render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])


async def ready(gw: Gateway, scope: dict[str, Any], send: Send) -> None:
    """Readiness for a load balancer: 200, or 503 with the reason. Probes carry no token, so this
    answers without one; beyond loopback only a request with the token is told the reason."""
    snap = gw.snap
    check = gw.not_ready
    reason = check() if check is not None else None
    if reason is None and gw.paused:
        reason = "Patchbay is paused."
    if reason is None:
        await json_answer(send, 200, {"status": "ready"})
        return
    if access.exposed(snap.settings.host) and not _authed(_headers(scope), snap)[0]:
        reason = ("Patchbay is not ready to serve requests. Ask again with the gateway token for the reason, "
                  "or read the gateway's log.")
    await plain(send, 503, error_body("overloaded_error", reason), JSON_HEADERS)


async def health(gw: Gateway, scope: dict[str, Any], send: Send) -> None:
    snap = gw.snap
    if snap.team is not None and access.exposed(snap.settings.host):
        # team mode: a load balancer's health check carries no identity; it gets the status
        # alone, and only a verified person sees what runs here
        try:
            await snap.team.identify(scope["headers"])
        except ApiError:
            await json_answer(send, 200, {"status": "paused" if gw.paused else "ok"})
            return
    elif access.exposed(snap.settings.host):  # beyond loopback: what runs here is nobody else's business
        authed, presented = _authed(_headers(scope), snap)
        if not authed:
            raise access.token_needed(presented, True)
    t = snap.table
    await json_answer(send, 200, {
        "status": "paused" if gw.paused else "ok", "version": __version__,
        "active": {"backend": t.active_backend, "model": t.active_model},
        "uptime_s": round(time.time() - gw.started_at, 1), "served": gw.served,
    })


# ---------------------------------------------------------------------- small functions


def allow(method: str, expected: str) -> None:
    if method != expected:
        raise ApiError(405, "invalid_request_error", f"This endpoint takes {expected}, not {method}.")


async def plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def json_answer(send: Send, status: int, obj: Any) -> None:
    await plain(send, status, orjson.dumps(obj), JSON_HEADERS)
