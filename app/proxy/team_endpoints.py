"""Team mode's endpoints for a signed-in (or otherwise identified) Claude Code, beside inference:

- ``GET /managed/settings``: the person's Claude Code managed settings (app/team/managed.py), in
  Claude Code's wrapper ``{"uuid", "checksum", "settings"}`` with ``ETag`` = the checksum quoted;
  ``If-None-Match`` naming it → 304 with no body (only then); ``Cache-Control: private,
  no-cache`` (each person's own, revalidated every time). A person in none of the groups gets the
  403 ``/v1/messages`` would give them.
- ``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces``: Claude Code's OTLP/HTTP export (protobuf,
  or JSON), handed to the gateway's ``telemetry`` intake (app/team/telemetry.py) with the
  person it came from; answered 200 with an empty OTLP response whether it was kept or dropped
  (a 404 makes the exporter log an error every flush).

Every caller must be identified by the team's identity chain. A missing or bad credential is 401
``authentication_error`` with ``x-should-retry: false``: on ``/managed/settings`` Claude Code then
tells the person to sign in again instead of retrying for minutes. Answers never carry a credential.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from app.errors import ApiError
from app.proxy.exchange import JSON_HEADERS
from app.proxy.request_body import read_body
from app.proxy.team_catalog import catalog
from app.team.identity import STOP_RETRYING, AuthError, Identity
from app.team.managed import checksum, matches, settings_for
from app.team.policy import decide

if TYPE_CHECKING:
    from app.proxy.snapshot import Snapshot

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

SETTINGS_PATH = "/managed/settings"
TELEMETRY_PATHS = {"/v1/metrics": "metrics", "/v1/logs": "logs", "/v1/traces": "traces"}
PATHS = frozenset({SETTINGS_PATH, *TELEMETRY_PATHS})
MAX_TELEMETRY_BYTES = 8 * 1024 * 1024  # Claude Code's exports are 3-12 KB
VARY = (b"vary", b"Authorization, User-Agent")


class TelemetryIntake(Protocol):
    """Where OTLP requests go (app/team/telemetry.py)."""

    async def accept(self, signal: str, content_type: str, body: bytes, raw: bytes, content_encoding: str | None,
                     identity: Identity, groups: tuple[str, ...]) -> None:
        """Keep (and forward) one export; raises ``ApiError`` 400 for a body that is not OTLP."""
        ...


async def identify(snap: Snapshot, scope: dict[str, Any]) -> Identity:
    """The caller, verified; a credential problem is final (401 with ``x-should-retry: false``)."""
    assert snap.team is not None
    try:
        return await snap.team.identify(scope["headers"])
    except AuthError as exc:
        final = AuthError(exc.message, source=exc.source)
        final.status, final.error_type = exc.status, exc.error_type  # a helper's refused key stays a 429
        final.headers = [*(h for h in exc.headers if h[0] != b"x-should-retry"), *STOP_RETRYING]
        raise final from None


async def managed_settings(snap: Snapshot, scope: dict[str, Any], send: Send, telemetry: bool) -> None:
    assert snap.team is not None
    identity = await identify(snap, scope)
    team = snap.team
    mine = team.groups_of(identity)
    if team.groups and not mine:
        d = decide(team.groups, identity, snap.table.active_backend, snap.table.active_model or "")
        raise ApiError(403, "permission_error", d.message or "Patchbay: the team policy refuses you.")
    policies = [g for g in team.groups if g.name in mine]
    settings = settings_for(policies, catalog(snap.table, team, identity).admitted, telemetry=telemetry)
    value = checksum(settings)
    etag = f'"{value}"'.encode()
    headers = [(b"etag", etag), (b"cache-control", b"private, no-cache"), VARY]
    inm = _header(scope, b"if-none-match")
    if matches(inm, etag.decode()):
        await _answer(send, 304, b"", headers)
        return
    body = orjson.dumps({"uuid": value, "checksum": value, "settings": settings})
    await _answer(send, 200, body, JSON_HEADERS + headers)


async def telemetry(snap: Snapshot, scope: dict[str, Any], receive: Receive, send: Send, path: str,
                    intake: TelemetryIntake | None) -> None:
    assert snap.team is not None
    identity = await identify(snap, scope)
    headers = {k: v for k, v in scope["headers"]}
    raw = await read_body(receive, headers, MAX_TELEMETRY_BYTES)
    content_type = (_header(scope, b"content-type") or "application/x-protobuf").split(";")[0].strip().lower()
    encoding = _header(scope, b"content-encoding")
    if intake is not None:
        body = _decoded(raw, encoding)
        await intake.accept(TELEMETRY_PATHS[path], content_type, body, raw, encoding, identity,
                            snap.team.groups_of(identity))
    if content_type == "application/json":
        await _answer(send, 200, b"{}", JSON_HEADERS)
    else:  # an empty Export…ServiceResponse
        await _answer(send, 200, b"", [(b"content-type", b"application/x-protobuf")])


def _decoded(raw: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding.strip().lower() == "identity":
        return raw
    if encoding.strip().lower() != "gzip":
        raise ApiError(415, "invalid_request_error",
                           f"Patchbay takes OTLP bodies plain or gzip-compressed, not {encoding!r}.")
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(raw, MAX_TELEMETRY_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile):
        raise ApiError(400, "invalid_request_error", "The OTLP body is not valid gzip.") from None
    if len(out) > MAX_TELEMETRY_BYTES:
        raise ApiError(413, "request_too_large", "The OTLP body is larger than 8 MB once decompressed.")
    return out


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    extra = [] if status == 304 else [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body, "more_body": False})
