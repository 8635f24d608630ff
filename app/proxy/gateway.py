"""The ASGI app: /v1/messages, /v1/messages/count_tokens, /v1/models, /health.

A raw ASGI app rather than a framework: one request costs a few hundred microseconds of our
own code, and streams go out through a plain send loop (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

import httpx
import orjson

from app import __version__
from app.config import GatewaySettings, RoutesConfig
from app.events import EventHub, RequestFinished, RequestStarted, Usage
from app.proxy import access, request_ids, server_tools, stops, team_endpoints
from app.proxy.backends.base import Backend, clamp_output, upstream_failure
from app.proxy.exchange import (
    JSON_HEADERS,
    SSE_HEADERS,
    Exchange,
    GatewayError,
    Incoming,
    error_body,
    scrubbed,
)
from app.proxy.health import HealthBoard
from app.proxy.hints import Hints
from app.proxy.memory import BodyRoom, Hold, tune_malloc
from app.proxy.request_body import (
    ClientGone,
    cwd_of,
    forwarded_header,
    parse_body,
    prompt_of,
    read_body,
    session_from_metadata,
)
from app.proxy.routing import Admission, Refusal, Route, RoutingTable
from app.proxy.sse import PING, encode
from app.proxy.subscription import SUBSCRIPTION, served_under_subscription
from app.proxy.team import TeamGate
from app.team.catalog import catalog
from app.team.identity import Identity

log = logging.getLogger("patchbay.gateway")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# upstream answers worth trying the next backend for (with every 5xx, 529 included): timeouts
# and rate limits. Only ever before the first byte reached the client.
RETRYABLE = frozenset({408, 429})
# How long a streamed request whose backend has a fallback stays unopened while its upstream is
# silent before answering. A ping would open it after ping_interval_s and so rule out failover on a
# connect timeout (15 s) or a slow refusal; Claude Code waits 300 s for a first byte, so holding two
# minutes costs it nothing, and after that pings keep the connection alive as before.
FAILOVER_HOLD_S = 120.0
# how a stream that already reached the client can end badly, as far as the breaker cares
STREAM_FAILURES = frozenset({"api_error", "overloaded_error", "timeout_error"})



# A paused gateway's answer. Not overloaded_error: nothing is overloaded, and Claude Code retries
# 5xx for minutes unless told not to (x-should-retry, docs/protocol.md); it shows the message instead.
PAUSED = Refusal(503, "api_error", "Patchbay is paused: it forwards no requests until you resume it (the tray "
                 "menu's Resume, or Resume in the Patchbay window's toolbar). This request was not sent anywhere; "
                 "send it again after resuming.")
PAUSED_HEADERS = [(b"x-should-retry", b"false")]


@dataclass(frozen=True)
class Snapshot:
    """Everything a request reads, swapped as one reference when the user changes something."""

    settings: GatewaySettings
    table: RoutingTable
    backends: dict[str, Backend]
    token: str | None
    capture: str = "off"
    admission: Admission | None = None
    team: TeamGate | None = None  # team mode: every request carries a verified identity


class Gateway:
    def __init__(self, snapshot: Snapshot, hub: EventHub) -> None:
        self.snap = snapshot
        self.hub = hub
        self.paused = False
        self.session_caps: Any = None  # app/services/session_caps.py: a session past its cost cap, before budgets
        self.started_at = time.time()
        self.served = 0
        self.health = HealthBoard(hub.publish)
        self._health_routes: RoutesConfig | None = None
        # why this instance should get no traffic now (the ledger or the budgets cannot be reached):
        # GET /ready answers 503 with it; None: ready
        self.not_ready: Callable[[], str | None] | None = None
        # GET /metrics: the Prometheus text (app/proxy/metrics.py), and whether it needs no token
        self.metrics: Callable[[], bytes] | None = None
        self.metrics_public = False
        # team mode: where Claude Code's OTLP export goes (app/proxy/team_endpoints.py); None: dropped
        self.telemetry: team_endpoints.TelemetryIntake | None = None
        self.bodies = BodyRoom()  # request bodies held at once (app/proxy/memory.py)
        tune_malloc()

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    msg = await receive()
                    if msg["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif msg["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        method = scope["method"]
        path = scope["path"]
        request_id = request_ids.new_id()  # on the answer's headers, its error body and its ledger row
        scope["patchbay.request_id"] = request_id
        scope["patchbay.send"] = send  # unwrapped: an Exchange adds the header itself
        send = request_ids.stamped(send, request_id)
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if method == "HEAD":
            await _plain(send, 200, b"", [(b"content-type", b"text/plain")])
            return
        if method == "OPTIONS":
            await self._options(scope, send)
            return
        try:
            access.check_host(_host_header(scope), self.snap.settings.allowed_hosts)
            if path == "/v1/messages" or path == "/v1/messages/count_tokens":
                _allow(method, "POST")
                async with self.bodies.hold() as hold:
                    await self._messages(scope, receive, send, count=path != "/v1/messages", hold=hold)
            elif path == "/v1/models":
                _allow(method, "GET")
                await self._models(scope, send)
            elif path.startswith("/v1/models/"):
                _allow(method, "GET")
                await self._models(scope, send, path[len("/v1/models/"):])
            elif path == "/health":
                _allow(method, "GET")
                await self._health(scope, send)
            elif path == "/ready":
                _allow(method, "GET")
                await self._ready(scope, send)
            elif path == "/metrics" and self.metrics is not None:
                _allow(method, "GET")
                await self._metrics(scope, send)
            elif path in team_endpoints.PATHS and self.snap.team is not None:
                await self._team_endpoint(scope, receive, send, path, method)
            elif path == "/":
                await _json(send, 200, {"name": "Patchbay", "version": __version__,
                                        "endpoints": ["POST /v1/messages", "POST /v1/messages/count_tokens",
                                                      "GET /v1/models", "GET /v1/models/{model_id}", "GET /health",
                                                      "GET /ready"]})
            else:
                raise GatewayError(404, "not_found_error",
                                   f"Patchbay does not serve {method} {scope['path']}. It serves POST /v1/messages, "
                                   "POST /v1/messages/count_tokens, GET /v1/models and GET /health.")
        except GatewayError as exc:
            await _plain(send, exc.status, request_ids.with_id(exc.raw_body, request_id) if exc.raw_body
                         else error_body(exc.error_type, exc.message, request_id),
                         JSON_HEADERS + exc.headers)
        except ClientGone:
            return
        except Exception as exc:  # our own bug outside a request's handling: still Anthropic's shape
            log.exception("%s %s failed inside Patchbay", method, path)
            try:
                await _plain(send, 500, error_body("api_error", f"Patchbay failed while handling this request "
                                                   f"({type(exc).__name__}). This is a bug in Patchbay; the log "
                                                   "file has the details.", request_id), JSON_HEADERS)
            except Exception:
                pass  # the answer had already begun: uvicorn closes the connection

    # ------------------------------------------------------------------ helpers

    def _headers(self, scope: dict[str, Any]) -> dict[bytes, bytes]:
        return {k: v for k, v in scope["headers"]}

    def _check_origin(self, headers: dict[bytes, bytes], snap: Snapshot) -> None:
        origin = headers.get(b"origin")
        if origin is not None:
            o = origin.decode("latin-1")
            if o not in snap.settings.allowed_origins:
                raise GatewayError(
                    403, "permission_error",
                    f"Patchbay refuses requests from web pages (Origin: {o}). If you trust this page, add "
                    f'"{o}" to allowed_origins in the [gateway] section of the config.',
                )

    def _token_ok(self, value: str | None, snap: Snapshot) -> bool:
        return value is not None and value != "" and snap.token is not None and \
            hmac.compare_digest(value.encode(), snap.token.encode())

    async def _options(self, scope: dict[str, Any], send: Send) -> None:
        headers = self._headers(scope)
        origin = headers.get(b"origin")
        snap = self.snap
        if origin is not None and origin.decode("latin-1") in snap.settings.allowed_origins:
            await _plain(send, 204, b"", [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
                (b"access-control-allow-headers", b"*"),
            ])
        else:
            await _plain(send, 403, error_body("permission_error", "Cross-origin requests are not allowed."),
                         JSON_HEADERS)

    # ------------------------------------------------------------------ /v1/messages

    async def _messages(self, scope: dict[str, Any], receive: Receive, send: Send, *, count: bool,
                        hold: Hold | None = None) -> None:
        snap = self.snap
        headers = self._headers(scope)
        self._check_origin(headers, snap)
        api_key = _h(headers, b"x-api-key")
        authorization = _h(headers, b"authorization")
        bearer = None
        if authorization and authorization[:7].lower() == "bearer ":
            bearer = authorization[7:].strip()
        # the gateway token in Patchbay's own header leaves Authorization / x-api-key to the user's
        # own Anthropic credential; set-ups from before that header send it as one of those
        own_header = _h(headers, access.TOKEN_HEADER_B)
        presented = bool(api_key or bearer or own_header)
        is_exposed = access.exposed(snap.settings.host)
        team = snap.team
        identity: Identity | None = None
        client_addr = _client_addr(scope)
        if team is not None:  # who it is, verified, before reading (up to 32 MB of) the body
            identity = await team.identify(scope["headers"])  # no ledger row for a stranger: like the token
        elif not (self._token_ok(own_header, snap) or self._token_ok(api_key, snap) or self._token_ok(bearer, snap)) \
                and (is_exposed or not any(b.config.auth == "client" for b in snap.backends.values())):
            raise access.token_needed(presented, is_exposed)  # before reading (up to 32 MB of) the body
        raw = await read_body(receive, headers, snap.settings.max_body_bytes, hold)
        # the newest snapshot, read after the last wait before its backends are claimed: a backend
        # edited while this body was arriving is retired, and closes only once nobody holds it
        snap = self.snap
        if team is not None and snap.team is not team:  # the config changed while the body arrived
            snap = replace(snap, team=team)
        groups: tuple[str, ...] = ()
        if team is not None and identity is not None:
            groups = team.groups_of(identity)
        who = _who(identity, groups, client_addr)
        try:
            body = parse_body(raw, count)
        except GatewayError as exc:  # a row in the request log even for a body we refuse
            self._record_invalid(scope, headers, raw, count, exc, who=who)
            raise

        key_is_token = self._token_ok(api_key, snap)
        bearer_is_token = self._token_ok(bearer, snap)
        # team mode: a verified person may use the stored-key backends (no backend forwards the
        # caller's credential there: the config refuses auth = "client" in team mode)
        authed = identity is not None or key_is_token or bearer_is_token or self._token_ok(own_header, snap)
        session_id = _h(headers, b"x-claude-code-session-id") or session_from_metadata(body)
        inc = Incoming(
            body=body, raw=raw, api_key=api_key, bearer=bearer, authorization=authorization,
            anthropic_version=forwarded_header(headers, b"anthropic-version"),
            anthropic_beta=forwarded_header(headers, b"anthropic-beta"),
            user_agent=_h(headers, b"user-agent"), session_id=session_id,
            agent_id=_h(headers, b"x-claude-code-agent-id"),
            api_key_is_token=key_is_token or identity is not None, bearer_is_token=bearer_is_token or identity is not None,
            identity=identity, groups=groups, client_addr=client_addr, authed=authed,
        )
        allow = None
        if team is not None and identity is not None and team.groups:
            person = identity

            def allow(b: str, m: str, req: str) -> bool:
                return team.allows(person, b, m, req)

        routed = snap.table.resolve(body["model"], session_id, _h(headers, b"x-patchbay-pin"), body=body,
                                    subagent=inc.agent_id is not None, hints=Hints.from_headers(headers),
                                    allow=allow)
        if not isinstance(routed, Refusal) and not count:  # WebSearch never reaches a model that would invent it
            routed = server_tools.place(snap.table, routed, body, _own_credential(inc),
                                        lambda r: self._may_use(snap, r, inc))
        if isinstance(routed, Refusal):
            refused = GatewayError(routed.status, routed.error_type, routed.message, headers=list(routed.headers))
            self._record_invalid(scope, headers, raw, count, refused, body, who=who)
            raise refused
        if team is not None and identity is not None:
            try:
                allowed = team.check(identity, routed)
            except GatewayError as exc:
                self._record_invalid(scope, headers, raw, count, exc, body, who=who)
                raise
            capped = allowed.cap(body.get("max_tokens")) if not count else None
            if capped is not None and capped != body.get("max_tokens"):
                body = dict(body)
                clamp_output(body, capped)
                inc.body, inc.raw = body, orjson.dumps(body)
        backend = snap.backends[routed.backend]
        access.authorize(backend.config, authed, is_exposed, presented)
        stream = bool(body.get("stream")) and not count
        request_id: str = scope["patchbay.request_id"]
        if count:
            await self._count(snap, backend, Exchange(request_id, routed, inc, False, scope["patchbay.send"],
                                                      self.hub))
            return

        route: Route = routed
        extra: tuple[tuple[bytes, bytes], ...] = ()  # what admission adds to a successful answer
        if self.paused:  # recorded (the window counts them) and answered so that Claude Code stops retrying
            self._record_refusal(request_id, routed, inc, stream, PAUSED)
            raise GatewayError(PAUSED.status, PAUSED.error_type, PAUSED.message, headers=PAUSED_HEADERS)
        if self.session_caps is not None:
            capped = self.session_caps.admit(routed, inc.session_id)
            if isinstance(capped, Refusal):
                self._record_refusal(request_id, routed, inc, stream, capped)
                raise GatewayError(capped.status, capped.error_type, capped.message, headers=list(capped.headers))
            if capped is not routed:  # downgraded: the route taken must be one this client may use
                backend = snap.backends.get(capped.backend, backend)
                access.authorize(backend.config, authed, is_exposed, presented)
                route = capped
        if snap.admission is not None:
            decision = await self._admit(snap, route, request_id, body, inc)
            if isinstance(decision, Refusal):
                self._record_refusal(request_id, routed, inc, stream, decision)
                raise GatewayError(decision.status, decision.error_type, decision.message,
                                   headers=list(decision.headers))
            route = decision
            headers_for = getattr(snap.admission, "headers_for", None)
            if headers_for is not None:
                extra = headers_for(request_id)
            backend = snap.backends.get(route.backend, backend)
            # authorisation holds on the route finally taken: a budget downgrade from a `client`
            # backend to one with a stored key needs the token as asking for it directly does
            try:
                access.authorize(backend.config, authed, is_exposed, presented)
                if team is not None and identity is not None and route is not routed:
                    team.check(identity, route)  # a downgrade stays inside what the person's groups allow
            except GatewayError as exc:  # its row settles the reservation just made: no hold is left behind
                self._record_refusal(request_id, route, inc, stream, Refusal(exc.status, exc.error_type, exc.message))
                raise
        health = self._health_for(snap)
        # the chosen route, then [routes] fallback; a backend whose breaker is open is skipped
        # while another can serve, and tried anyway (as its trial) when none can
        candidates = [route] + [r for r in snap.table.fallbacks(route) if self._may_use(snap, r, inc)
                                and (server_tools.can_run(snap.backends[r.backend].config)
                                     or not server_tools.server_tools(body))]
        if not health.acquire(route.backend):
            nxt = await self._next_candidate(candidates, 0, health, snap, None, inc, request_id)
            if nxt is None:
                health.force(route.backend)  # nowhere else to go: this request is its trial
            else:
                candidates = candidates[nxt[0]:]
                candidates[0] = route = nxt[1]
                backend = snap.backends[route.backend]
        # every backend this request may use (fallbacks, a budget's downgrade) is claimed now,
        # before its first wait
        held = list(snap.backends.values())
        for b in held:
            b.inflight += 1

        ex = Exchange(request_id, route, inc, stream, scope["patchbay.send"], self.hub,
                      capture=snap.capture != "off")
        ex.extra_headers = extra
        meter = getattr(snap.admission, "meter", None)
        if meter is not None and stream:  # a stream's budget hold follows its cost; it stops at the cap
            ex.meter = meter
        finished_early = getattr(snap.admission, "finished_early", None)
        if finished_early is not None:  # its real cost, before the client can send the next request
            ex.on_done = lambda e: finished_early(e.request_id, e.route.backend, e.served_model or e.route.model,
                                                  e.usage, e.wall0)
        try:
            want = self.hub.want_deltas
            self.hub.publish(RequestStarted(
                request_id, ex.wall0, session_id, inc.user_agent, route.rule, route.backend, route.requested_model,
                route.model, stream, inc.agent_id,
                cwd_of(body) if want else None, prompt_of(body) if want else None, **who, plan=_plan(snap, route, inc),
            ))
        except Exception:  # the live view must never cost the request its answer
            log.exception("request %s: the live view's start event could not be built", request_id)
        if len(candidates) > 1:
            ex.hold_open_until = ex.t0 + FAILOVER_HOLD_S
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(self._watch(receive, ex, task))
        pinger = asyncio.ensure_future(self._ping(ex, snap.settings.ping_interval_s)) if stream else None
        verdict = False  # the breaker of the backend being tried has heard how it went
        try:
            i = 0
            while True:
                verdict = False
                try:
                    try:
                        _policy_holds(snap, ex)
                        await backend.messages(ex)
                    except (httpx.HTTPError, httpx.StreamError) as exc:  # cut or stalled mid-read
                        raise upstream_failure(backend.config, exc) from None
                except GatewayError as exc:
                    key_refused = stops.credential_refused(backend.config, exc)
                    no_key = key_refused or isinstance(exc, stops.CredentialMissing)  # another backend may serve
                    exc = scrubbed(exc, inc)
                    failover = exc.status in RETRYABLE or exc.status >= 500
                    if failover:
                        health.failure(route.backend, f"{exc.status} {exc.message}")
                        verdict = True
                    nxt = await self._next_candidate(candidates, i, health, snap, ex, inc, request_id) \
                        if (failover or no_key) and not ex.started else None
                    if nxt is None:
                        await self._fail(ex, stops.refused_answer(backend.config, exc) if key_refused else exc)
                        break
                    log.info("request %s: %s answered %s; trying %s", request_id, route.backend, exc.status,
                             nxt[1].backend)
                    i, route = nxt
                    backend = snap.backends[route.backend]
                    ex.retry(route)
                    if i == len(candidates) - 1:
                        ex.hold_open_until = 0.0  # the last candidate: pings may open the stream again
                    continue
                if ex.error_type in STREAM_FAILURES:  # the upstream broke or failed mid-stream
                    health.failure(route.backend, ex.error_message or ex.error_type or "failed mid-stream")
                else:
                    health.success(route.backend)
                verdict = True
                break
        except asyncio.CancelledError:
            if not ex.client_gone:
                raise
            task.uncancel()
            ex.fail("client_closed", "The client disconnected before the answer was complete.", 499)
            ex.interrupted = True
        except Exception as exc:  # our own bug: still answer in Anthropic's shape, and say so
            log.exception("request %s failed inside Patchbay", request_id)
            await self._fail(ex, GatewayError(
                500, "api_error",
                f"Patchbay failed while handling this request ({type(exc).__name__}: {exc}). This is a bug in "
                "Patchbay; the log file has the details.",
            ))
        finally:
            if not verdict:
                health.release(route.backend)
            watcher.cancel()
            if pinger is not None:
                pinger.cancel()
            self.served += 1
            if ex.status == 0:
                ex.status = 499 if ex.client_gone else 500
            ex.plan = _plan(snap, ex.route, inc)
            self.hub.publish(ex.record(snap.capture))
            _release(held)

    async def _count(self, snap: Snapshot, backend: Backend, ex: Exchange) -> None:
        """count_tokens: answered by the backend (or estimated), and a ledger row like any request."""
        backend.inflight += 1
        try:
            try:
                try:
                    _policy_holds(snap, ex)
                    await backend.count_tokens(ex)
                except (httpx.HTTPError, httpx.StreamError) as exc:
                    raise upstream_failure(backend.config, exc) from None
            except GatewayError as exc:
                await self._fail(ex, scrubbed(exc, ex.incoming))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("request %s (count_tokens) failed inside Patchbay", ex.request_id)
            await self._fail(ex, GatewayError(
                500, "api_error", f"Patchbay failed while counting tokens ({type(exc).__name__}: {exc}). This is "
                "a bug in Patchbay; the log file has the details."))
        finally:
            if ex.status == 0:
                ex.status = 500
            self.hub.publish(ex.record(snap.capture, endpoint="count_tokens"))
            _release([backend])

    def _may_use(self, snap: Snapshot, route: Route, inc: Incoming) -> bool:
        b = snap.backends.get(route.backend)
        if b is None or not access.may_use(b.config, inc.authed or inc.api_key_is_token or inc.bearer_is_token,
                                           access.exposed(snap.settings.host)):
            return False
        team, identity = snap.team, inc.identity
        return team is None or identity is None or team.allows(identity, route.backend, route.model,
                                                                route.requested_model)

    def _health_for(self, snap: Snapshot) -> HealthBoard:
        """The breakers, set up for this snapshot's [routes] (on the gateway's loop)."""
        routes = snap.table.routes
        if routes is not self._health_routes:
            self._health_routes = routes
            self.health.configure(routes.breaker_failures, routes.breaker_cooldown_s, routes.breaker_max_cooldown_s)
            self.health.forget(set(snap.backends))
        return self.health

    async def _admit(self, snap: Snapshot, route: Route, request_id: str, body: dict[str, Any],
                     inc: Incoming) -> Route | Refusal:
        """The budgets' decision for ``route``: the one call into admission. A hook with ``reserve``
        (app/services/admission.py) reserves the expected cost off the loop, against the sender's
        own and their groups' budgets too in team mode; a plain one decides from memory. A route a
        Claude subscription pays for spends no money: only budgets with include_subscription see it."""
        adm = snap.admission
        if adm is None:
            return route
        subscription = _plan(snap, route, inc) is not None
        if subscription and not getattr(adm, "counts_subscription", False):
            return route
        reserve = getattr(adm, "reserve", None)
        if reserve is None:
            return adm(route)
        user = inc.identity.user if inc.identity is not None else None
        result: Route | Refusal = await reserve(route, request_id, body, user, inc.groups, subscription=subscription) \
            if subscription else await reserve(route, request_id, body, user, inc.groups)
        return result

    async def _next_candidate(self, candidates: list[Route], i: int, health: HealthBoard, snap: Snapshot,
                              ex: Exchange | None, inc: Incoming, request_id: str) -> tuple[int, Route] | None:
        """The next fallback after ``candidates[i]`` that its breaker and the budgets allow."""
        for j in range(i + 1, len(candidates)):
            r = candidates[j]
            if (ex is not None and ex.client_gone) or not health.acquire(r.backend):
                continue
            if snap.admission is not None:
                # a fallback re-admits under the same request id (its reservation replaces the last
                # one); the route a downgrade leads to must be one this request may use
                decision = await self._admit(snap, r, request_id, inc.body, inc)
                if isinstance(decision, Refusal) or not self._may_use(snap, decision, inc):
                    health.release(r.backend)
                    continue
                r = decision
            return j, r
        return None

    def _record_invalid(self, scope: dict[str, Any], headers: dict[bytes, bytes], raw: bytes, count: bool,
                        exc: GatewayError, body: dict[str, Any] | None = None, *,
                        who: dict[str, Any] | None = None) -> None:
        """A request refused before it had a route (a body that is not a request, an unknown
        backend, paused) still gets its row, with no backend."""
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else ""
        now = time.time()
        self.hub.publish(RequestFinished(
            request_id=scope["patchbay.request_id"], started_at=now, ended_at=now,
            session_id=_h(headers, b"x-claude-code-session-id"), client=_h(headers, b"user-agent"), route="refused",
            backend="", requested_model=model, model=model, stream=False, status=exc.status,
            error_type=exc.error_type, error_message=exc.message, ttft_ms=None, duration_ms=0.0, usage=Usage(),
            endpoint="count_tokens" if count else "messages", **(who or {}),
        ))

    def _record_refusal(self, request_id: str, route: Route, inc: Incoming, stream: bool, refusal: Refusal) -> None:
        now = time.time()
        self.hub.publish(RequestFinished(
            request_id=request_id, started_at=now, ended_at=now, session_id=inc.session_id, client=inc.user_agent,
            route=route.rule, backend=route.backend, requested_model=route.requested_model, model=route.model,
            stream=stream, status=refusal.status, error_type=refusal.error_type, error_message=refusal.message,
            ttft_ms=None, duration_ms=0.0, usage=Usage(), agent_id=inc.agent_id, **inc.who(),
        ))

    async def _fail(self, ex: Exchange, exc: GatewayError) -> None:
        exc = scrubbed(exc, ex.incoming)
        log.info("request %s: %s %s", ex.request_id, exc.status, exc.message)
        if not ex.started:
            ex.fail(exc.error_type, exc.message, exc.status)
            await ex.answer(exc.status, JSON_HEADERS + exc.headers,
                            request_ids.with_id(exc.raw_body, ex.request_id) if exc.raw_body
                            else error_body(exc.error_type, exc.message, ex.request_id))
        elif not ex.finished:
            ex.fail(exc.error_type, exc.message)
            await ex.write(encode("error", {"type": "error", "error": {"type": exc.error_type, "message": exc.message},
                                            "request_id": ex.request_id}))
            await ex.end()

    async def _watch(self, receive: Receive, ex: Exchange, task: asyncio.Task[Any]) -> None:
        """Cancel the request (and with it the upstream call) the moment the client goes away."""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                if not ex.finished:
                    ex.client_gone = True
                    task.cancel()
                return

    async def _ping(self, ex: Exchange, interval: float) -> None:
        """During any silence longer than ``interval`` send a ping (and open the stream if needed)."""
        while not ex.finished:
            wait = ex.last_write + interval - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if not ex.started:
                hold = ex.hold_open_until - time.perf_counter()
                if hold > 0:  # a fallback may still serve: keep the answer unopened a while longer
                    await asyncio.sleep(min(hold, interval))
                    continue
                await ex.start(200, SSE_HEADERS)
            if not ex.finished:
                await ex.write(PING)

    # ------------------------------------------------------------------ other routes

    async def _team_endpoint(self, scope: dict[str, Any], receive: Receive, send: Send, path: str,
                             method: str) -> None:
        """Team mode: /managed/settings and Claude Code's OTLP export (app/proxy/team_endpoints.py)."""
        snap = self.snap
        self._check_origin(self._headers(scope), snap)
        if path == team_endpoints.SETTINGS_PATH:
            _allow(method, "GET")
            await team_endpoints.managed_settings(snap, scope, send, self.telemetry is not None)
        else:
            _allow(method, "POST")
            await team_endpoints.telemetry(snap, scope, receive, send, path, self.telemetry)

    def _authed(self, headers: dict[bytes, bytes], snap: Snapshot) -> tuple[bool, bool]:
        """(carries the gateway token, carries any credential)"""
        key = _h(headers, b"x-api-key")
        auth = _h(headers, b"authorization") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        own = _h(headers, access.TOKEN_HEADER_B)
        return (self._token_ok(own, snap) or self._token_ok(key, snap) or self._token_ok(bearer, snap),
                bool(key or bearer or own))

    async def _models(self, scope: dict[str, Any], send: Send, model_id: str | None = None) -> None:
        """GET /v1/models (the list), or GET /v1/models/{model_id}: one entry, by its id
        (``backend,model``) or by a model name alone (its first backend)."""
        snap = self.snap
        headers = self._headers(scope)
        self._check_origin(headers, snap)
        active = snap.table.backends[snap.table.active_backend]
        team = snap.team
        identity = await team_endpoints.identify(snap, scope) if team is not None else None
        authed, presented = self._authed(headers, snap)
        access.authorize(active, authed or identity is not None, access.exposed(snap.settings.host), presented)
        if team is not None and identity is not None:  # only what this person's groups admit (app/team/catalog.py)
            entries = [(e.id, e.model, e.backend) for e in catalog(snap.table, team, identity).listed]
        else:
            entries = [(f"{b.id},{m}", m, b.id) for b in snap.table.backends.values() for m in b.models]
        data = [{"type": "model", "id": i, "display_name": m if i == m else f"{m} ({b})",
                 "created_at": "1970-01-01T00:00:00Z"} for i, m, b in entries]
        if model_id is not None:
            found = next((d for d in data if d["id"] == model_id), None) or \
                next((d for d in data if d["id"].split(",", 1)[-1] == model_id), None)
            if found is None:
                raise GatewayError(404, "not_found_error", f"model: {model_id} (GET /v1/models lists the models "
                                   "Patchbay serves, written backend,model)")
            await _json(send, 200, found)
            return
        await _json(send, 200, {"data": data, "has_more": False,
                                "first_id": data[0]["id"] if data else None,
                                "last_id": data[-1]["id"] if data else None})

    async def _metrics(self, scope: dict[str, Any], send: Send) -> None:
        snap = self.snap
        headers = self._headers(scope)
        self._check_origin(headers, snap)
        if not self.metrics_public:
            authed, _presented = self._authed(headers, snap)
            if not authed:
                raise GatewayError(401, "authentication_error",
                                   f"GET /metrics needs the gateway token (the {access.TOKEN_HEADER} header, or Authorization: "
                                   "Bearer …), or set "
                                   "public = true in a [metrics] section for a scraper inside a private network.")
        render = self.metrics
        assert render is not None
        await _plain(send, 200, render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")])

    async def _ready(self, scope: dict[str, Any], send: Send) -> None:
        """Readiness for a load balancer: 200, or 503 with the reason. Probes carry no token, so this
        answers without one; beyond loopback only a request with the token is told the reason."""
        snap = self.snap
        check = self.not_ready
        reason = check() if check is not None else None
        if reason is None and self.paused:
            reason = "Patchbay is paused."
        if reason is None:
            await _json(send, 200, {"status": "ready"})
            return
        if access.exposed(snap.settings.host) and not self._authed(self._headers(scope), snap)[0]:
            reason = ("Patchbay is not ready to serve requests. Ask again with the gateway token for the reason, "
                      "or read the gateway's log.")
        await _plain(send, 503, error_body("overloaded_error", reason), JSON_HEADERS)

    async def _health(self, scope: dict[str, Any], send: Send) -> None:
        snap = self.snap
        if snap.team is not None and access.exposed(snap.settings.host):
            # team mode: a load balancer's health check carries no identity; it gets the status
            # alone, and only a verified person sees what runs here
            try:
                await snap.team.identify(scope["headers"])
            except GatewayError:
                await _json(send, 200, {"status": "paused" if self.paused else "ok"})
                return
        elif access.exposed(snap.settings.host):  # beyond loopback: what runs here is nobody else's business
            authed, presented = self._authed(self._headers(scope), snap)
            if not authed:
                raise access.token_needed(presented, True)
        t = snap.table
        await _json(send, 200, {
            "status": "paused" if self.paused else "ok", "version": __version__,
            "active": {"backend": t.active_backend, "model": t.active_model},
            "uptime_s": round(time.time() - self.started_at, 1), "served": self.served,
        })


# ---------------------------------------------------------------------- small functions


def _allow(method: str, expected: str) -> None:
    if method != expected:
        raise GatewayError(405, "invalid_request_error", f"This endpoint takes {expected}, not {method}.")


def _h(headers: dict[bytes, bytes], name: bytes) -> str | None:
    v = headers.get(name)
    return v.decode("latin-1") if v is not None else None


async def _plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, status: int, obj: Any) -> None:
    await _plain(send, status, orjson.dumps(obj), JSON_HEADERS)


def _plan(snap: Snapshot, route: Route, inc: Incoming) -> str | None:
    """``"subscription"`` when ``route`` is served under the caller's Claude subscription."""
    b = snap.backends.get(route.backend)
    if b is not None and served_under_subscription(b.config, inc.bearer, inc.anthropic_beta, inc.bearer_is_token,
                                                   inc.api_key, inc.api_key_is_token):
        return SUBSCRIPTION
    return None


def _client_addr(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _who(identity: Identity | None, groups: tuple[str, ...], client_addr: str | None) -> dict[str, Any]:
    """The event fields that say who sent a request (never their credential)."""
    return {"user": identity.user if identity is not None else None, "groups": groups,
            "identity_source": identity.source if identity is not None else None, "client_addr": client_addr}


def _own_credential(inc: Incoming) -> bool:
    """The client sent an Anthropic credential of its own (not the gateway token)."""
    return bool(inc.api_key and not inc.api_key_is_token) or bool(inc.bearer and not inc.bearer_is_token)


def _policy_holds(snap: Snapshot, ex: Exchange) -> None:
    """Team mode: the model about to be sent upstream is one the sender's groups allow, whatever
    path chose it (a pin, a rule, a fallback, a downgrade): the one check no route can skip, just
    before each upstream call. Raises ``PolicyDenied`` (403 ``permission_error`` naming the rule)."""
    team, identity = snap.team, ex.incoming.identity
    if team is not None and identity is not None:
        team.check(identity, ex.route)


def _host_header(scope: dict[str, Any]) -> bytes | None:
    for k, v in scope["headers"]:
        if k == b"host":
            return v
    return None


def _release(backends: Any) -> None:
    """Give back a request's claim on its backends; a retired one closes when nobody holds it."""
    for b in backends:
        b.inflight -= 1
        if b.retired and b.inflight == 0:
            asyncio.ensure_future(b.aclose())
