"""What the team gateway does with Claude Code's OTLP export (``POST /v1/metrics``, ``/v1/logs``,
``/v1/traces``; app/proxy/team_endpoints.py hands each request here with the identified person):

- with ``[team.telemetry] collect`` (the default) it is decoded (app/team/otlp.py) and kept in the
  ledger database, one row per point, event or span, under the person the gateway identified
  (never the user the client claims in its attributes); rows older than ``retention_days`` are
  deleted at the first export after start and then at most every ``PRUNE_EVERY_S``;
- with ``forward_to`` the request is also relayed as it came (body, ``Content-Type``,
  ``Content-Encoding``) to ``{forward_to}/v1/{signal}``, without the caller's credential, plus
  ``x-patchbay-user`` naming the person; a collector that fails is logged, never the client's problem.

Storage and forwarding run off the event loop; a database that cannot be reached loses that
export (logged) and the client still gets its 200: telemetry never stops a session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from app.config.managed import TelemetryConfig
from app.errors import ApiError
from app.team.identity import Identity
from app.team.telemetry_store import TelemetryStore

log = logging.getLogger("patchbay.telemetry")

PRUNE_EVERY_S = 600.0
# rows kept from one export: Claude Code's carry tens; a client sending an 8 MB export of tiny
# points cannot make the gateway write a million rows
MAX_ROWS_PER_EXPORT = 5000
FORWARD_TIMEOUT_S = 10.0


class TelemetryIntake:
    def __init__(self, config: TelemetryConfig, store: TelemetryStore | None,
                 clock: Any = time.time) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._pruned_at: float | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def reconfigure(self, config: TelemetryConfig) -> None:
        if config.retention_days != self.config.retention_days:
            self._pruned_at = None  # a shorter retention applies at the next export
        self.config = config

    async def accept(self, signal: str, content_type: str, body: bytes, raw: bytes, content_encoding: str | None,
                     identity: Identity, groups: tuple[str, ...]) -> None:
        cfg = self.config
        if cfg.collect and self.store is not None:
            from app.team.otlp import NotOTLP, parse  # protobuf: only once telemetry comes (~30 ms to import)

            try:
                rows = parse(signal, content_type, body)
            except NotOTLP as exc:
                raise ApiError(400, "invalid_request_error", f"Patchbay: the body of POST /v1/{signal} is "
                                   f"{exc}. Send OTLP/HTTP as protobuf or JSON.") from None
            if len(rows) > MAX_ROWS_PER_EXPORT:
                log.warning("telemetry from %s: %d rows in one export, keeping the first %d", identity.user,
                            len(rows), MAX_ROWS_PER_EXPORT)
                rows = rows[:MAX_ROWS_PER_EXPORT]
            if rows:
                await asyncio.to_thread(self._keep, identity.user, groups, rows)
        if cfg.forward_to:
            task = asyncio.ensure_future(self._forward(cfg.forward_to, signal, content_type, raw, content_encoding,
                                                       identity.user))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _keep(self, user: str, groups: tuple[str, ...], rows: list[Any]) -> None:
        store = self.store
        assert store is not None
        now = self._clock()
        try:
            store.insert(user, groups, rows, at=now)
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                gone = store.prune(now - self.config.retention_days * 86400)
                if gone:
                    log.info("telemetry: deleted %d rows older than %g days", gone, self.config.retention_days)
        except Exception as exc:  # noqa: BLE001 - telemetry never fails a session
            log.warning("telemetry from %s was not kept: %s", user, str(exc).splitlines()[0] if str(exc) else
                        type(exc).__name__)

    async def _forward(self, base: str, signal: str, content_type: str, raw: bytes, encoding: str | None,
                       user: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S, follow_redirects=False, trust_env=False)
        headers = {"content-type": content_type, "x-patchbay-user": user}
        if encoding:
            headers["content-encoding"] = encoding
        try:
            r = await self._client.post(f"{base}/v1/{signal}", content=raw, headers=headers)
            if r.status_code >= 300:
                log.warning("telemetry: the collector at %s answered %s", base, r.status_code)
        except httpx.HTTPError as exc:
            log.warning("telemetry: the collector at %s could not be reached (%s)", base, type(exc).__name__)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.store is not None:
            self.store.close()


def intake_for(config: Any, ledger_file: Any, current: TelemetryIntake | None) -> TelemetryIntake | None:
    """The intake a config asks for (``current`` reconfigured when there is one), or None outside
    team mode or with nothing to do (``collect = false`` and no ``forward_to``): then the
    telemetry env is not pushed, and an export that comes anyway is answered 200 and dropped."""
    team = config.team
    if team is None or not (team.telemetry.collect or team.telemetry.forward_to):
        if current is not None and current.store is not None:
            current.store.close()
        return None
    if current is not None:
        current.reconfigure(team.telemetry)
        return current
    url = config.ledger.team.url
    if url:
        from app.ledger.pg import connect_kwargs

        store = TelemetryStore(url=url, connect_kwargs=connect_kwargs(config.ledger.team))
    else:
        store = TelemetryStore(path=ledger_file)
    return TelemetryIntake(team.telemetry, store)
