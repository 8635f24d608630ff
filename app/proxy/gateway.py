"""The ASGI app: it dispatches every path, and serves /v1/messages and /v1/messages/count_tokens
(the other routes, /v1/models, /health, /ready, /metrics and team mode's, are in
app/proxy/endpoints.py).

A raw ASGI app rather than a framework: one request costs a few hundred microseconds of our
own code, and streams go out through a plain send loop (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx

from app import __version__
from app.config import RoutesConfig
from app.events import EventHub, RequestFinished, RequestStarted, Usage
from app.proxy import access, admit, endpoints, phases, request_ids, server_tools, stops, team_endpoints
from app.proxy.backends.base import Backend, upstream_failure
from app.proxy.closing import close_soon
from app.proxy.endpoints import allow, json_answer, plain
from app.proxy.exchange import (
    JSON_HEADERS,
    SSE_HEADERS,
    ApiError,
    Exchange,
    Incoming,
    error_body,
    scrubbed,
)
from app.proxy.health import HealthBoard
from app.proxy.memory import BodyRoom, Hold, tune_malloc
from app.proxy.request_body import ClientGone, cwd_of, parse_body, prompt_of, read_body
from app.proxy.routing import Refusal, Route
from app.proxy.snapshot import SessionCapsHook, Snapshot
from app.proxy.sse import PING, encode

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


class Gateway:
    def __init__(self, snapshot: Snapshot, hub: EventHub) -> None:
        self.snap = snapshot
        self.hub = hub
        self.paused = False
        self.session_caps: SessionCapsHook | None = None  # app/budgets/session_caps.py, before budgets
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
        # more routes by exact path (ProxyRuntime.set_routes: [team.login]'s sign-in endpoints), each an
        # ASGI callable that answers in its own shape
        self.extra_routes: dict[str, Callable[[dict[str, Any], Receive, Send], Awaitable[None]]] = {}
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
            await plain(send, 200, b"", [(b"content-type", b"text/plain")])
            return
        if method == "OPTIONS":
            await endpoints.options(self, scope, send)
            return
        try:
            access.check_host(_host_header(scope), self.snap.settings.allowed_hosts)
            if path == "/v1/messages" or path == "/v1/messages/count_tokens":
                allow(method, "POST")
                async with self.bodies.hold() as hold:
                    await self._messages(scope, receive, send, count=path != "/v1/messages", hold=hold)
            elif path == "/v1/models":
                allow(method, "GET")
                await endpoints.models(self, scope, send)
            elif path.startswith("/v1/models/"):
                allow(method, "GET")
                await endpoints.models(self, scope, send, path[len("/v1/models/"):])
            elif path == "/health":
                allow(method, "GET")
                await endpoints.health(self, scope, send)
            elif path == "/ready":
                allow(method, "GET")
                await endpoints.ready(self, scope, send)
            elif path == "/metrics" and self.metrics is not None:
                allow(method, "GET")
                await endpoints.metrics(self, scope, send)
            elif path in team_endpoints.PATHS and self.snap.team is not None:
                await endpoints.team_endpoint(self, scope, receive, send, path, method)
            elif path in self.extra_routes:
                await self.extra_routes[path](scope, receive, send)
            elif path == "/":
                await json_answer(send, 200, {"name": "Patchbay", "version": __version__,
                                              "endpoints": ["POST /v1/messages", "POST /v1/messages/count_tokens",
                                                            "GET /v1/models", "GET /v1/models/{model_id}",
                                                            "GET /health", "GET /ready"]})
            else:
                raise ApiError(404, "not_found_error",
                                   f"Patchbay does not serve {method} {scope['path']}. It serves POST /v1/messages, "
                                   "POST /v1/messages/count_tokens, GET /v1/models and GET /health.")
        except ApiError as exc:
            await plain(send, exc.status, request_ids.with_id(exc.raw_body, request_id) if exc.raw_body
                        else error_body(exc.error_type, exc.message, request_id),
                        JSON_HEADERS + exc.headers)
        except ClientGone:
            return
        except Exception as exc:  # our own bug outside a request's handling: still Anthropic's shape
            log.exception("%s %s failed inside Patchbay", method, path)
            try:
                await plain(send, 500, error_body("api_error", f"Patchbay failed while handling this request "
                                                  f"({type(exc).__name__}). This is a bug in Patchbay; the log "
                                                  "file has the details.", request_id), JSON_HEADERS)
            except Exception:
                pass  # the answer had already begun: uvicorn closes the connection

    # ------------------------------------------------------------------ /v1/messages

    async def _messages(self, scope: dict[str, Any], receive: Receive, send: Send, *, count: bool,
                        hold: Hold | None = None) -> None:
        """POST /v1/messages (and count_tokens), phase by phase: who sent it, its body and its route
        (phases.py), admission (admit.py), then the upstream call with its failover (``_serve``)."""
        caller = await phases.authenticate(self.snap, scope)  # before reading (up to 32 MB of) the body
        raw = await read_body(receive, caller.headers, self.snap.settings.max_body_bytes, hold)
        snap = phases.latest(self.snap, caller)
        try:
            body = parse_body(raw, count)
        except ApiError as exc:  # a row in the request log even for a body we refuse
            self._record_invalid(scope, caller.headers, raw, count, exc, who=phases.who(caller))
            raise
        arrival = phases.arrive(snap, scope, caller, raw, body, count)
        try:
            routed = phases.route(arrival)
        except ApiError as exc:
            self._record_invalid(scope, caller.headers, raw, count, exc, body, who=arrival.who)
            raise
        backend = snap.backends[routed.backend]
        phases.authorize(arrival, backend)
        if count:
            await self._count(snap, backend, Exchange(arrival.request_id, routed, arrival.inc, False,
                                                      scope["patchbay.send"], self.hub))
            return

        def record(route: Route, refusal: Refusal) -> None:
            self._record_refusal(arrival.request_id, route, arrival.inc, arrival.stream, refusal)

        admitted = await admit.admit(arrival, routed, backend, paused=self.paused, session_caps=self.session_caps,
                                     record=record)
        await self._serve(arrival, admitted, receive)

    async def _serve(self, arrival: phases.Arrival, admitted: admit.Admitted, receive: Receive) -> None:
        """The upstream call of an admitted request: the breakers choose the first candidate, every
        backend is claimed, the start event goes out, then the failover loop, cancelled the moment
        the client goes away; whatever happens the request is recorded and its claims given back."""
        snap = arrival.snap
        health = self._health_for(snap)
        candidates, backend = await self._candidates(arrival, admitted, health)
        # every backend this request may use (fallbacks, a budget's downgrade) is claimed now,
        # before its first wait
        held = _claim(snap.backends.values())
        ex = self._exchange(arrival, candidates[0], admitted.extra, fallbacks=len(candidates) > 1)
        task = asyncio.current_task()
        assert task is not None
        # the start event, the watcher and the pinger wait until this task first waits (its upstream
        # request written): none of them is needed before, and they cost the first byte ~60 µs
        side: list[asyncio.Task[None]] = []
        begin = asyncio.get_running_loop().call_soon(self._begin, arrival, ex, candidates[0], receive, task, side)
        try:
            await self._failover(ex, candidates, backend, health, arrival)
        except asyncio.CancelledError:
            if not ex.client_gone:
                raise
            task.uncancel()
            ex.fail("client_closed", "The client disconnected before the answer was complete.", 499)
            ex.interrupted = True
        except Exception as exc:  # our own bug: still answer in Anthropic's shape, and say so
            log.exception("request %s failed inside Patchbay", arrival.request_id)
            await self._fail(ex, ApiError(
                500, "api_error",
                f"Patchbay failed while handling this request ({type(exc).__name__}: {exc}). This is a bug in "
                "Patchbay; the log file has the details.",
            ))
        finally:
            if not side:  # over before its first wait: its start event still goes out before its finish
                begin.cancel()
                self._publish_start(arrival, ex, candidates[0])
            for t in side:
                t.cancel()
            self.served += 1
            if ex.status == 0:
                ex.status = 499 if ex.client_gone else 500
            ex.plan = admit.plan_of(snap, ex.route, arrival.inc)
            self.hub.publish(ex.record(snap.capture))
            _release(held)

    async def _candidates(self, arrival: phases.Arrival, admitted: admit.Admitted,
                          health: HealthBoard) -> tuple[list[Route], Backend]:
        """The admitted route, then [routes] fallback, and the backend of the first one to try,
        whose breaker this request now holds: a backend whose breaker is open is skipped while
        another can serve, and tried anyway (as its trial) when none can."""
        snap, inc = arrival.snap, arrival.inc
        route, backend = admitted.route, admitted.backend
        candidates = [route] + [r for r in snap.table.fallbacks(route) if phases.may_use(snap, r, inc)
                                and (server_tools.can_run(snap.backends[r.backend].config)
                                     or not server_tools.server_tools(inc.body))]
        if not health.acquire(route.backend):
            nxt = await self._next_candidate(candidates, 0, health, snap, None, inc, arrival.request_id)
            if nxt is None:
                health.force(route.backend)  # nowhere else to go: this request is its trial
            else:
                candidates = candidates[nxt[0]:]
                candidates[0] = nxt[1]
                backend = snap.backends[nxt[1].backend]
        return candidates, backend

    def _exchange(self, arrival: phases.Arrival, route: Route, extra: tuple[tuple[bytes, bytes], ...], *,
                  fallbacks: bool) -> Exchange:
        """The exchange that carries the answer back, with the budgets' hooks on it."""
        snap, inc = arrival.snap, arrival.inc
        ex = Exchange(arrival.request_id, route, inc, arrival.stream, arrival.scope["patchbay.send"], self.hub,
                      capture=snap.capture != "off")
        ex.extra_headers = extra  # what admission adds to a successful answer
        adm = snap.admission
        if adm is not None:
            if arrival.stream:  # a stream's budget hold follows its cost; it stops at the cap
                ex.meter = adm.meter
            # its real cost, before the client can send the next request
            ex.on_done = lambda e: adm.finished_early(e.request_id, e.route.backend, e.served_model or e.route.model,
                                                      e.usage, e.wall0)
        if fallbacks:
            ex.hold_open_until = ex.t0 + FAILOVER_HOLD_S
        return ex

    def _begin(self, arrival: phases.Arrival, ex: Exchange, route: Route, receive: Receive,
               task: asyncio.Task[Any], side: list[asyncio.Task[None]]) -> None:
        """What follows the upstream write of an admitted request (``_serve`` schedules it for
        when its task first waits): the start event, then the watcher that cancels the request
        when the client leaves (it reads the disconnect whenever it came) and a stream's pinger."""
        self._publish_start(arrival, ex, route)
        side.append(asyncio.ensure_future(self._watch(receive, ex, task)))
        if arrival.stream:
            side.append(asyncio.ensure_future(self._ping(ex, arrival.snap.settings.ping_interval_s)))

    def _publish_start(self, arrival: phases.Arrival, ex: Exchange, route: Route) -> None:
        """The live view hears that the request started (on ``route``, its first candidate)."""
        snap, inc = arrival.snap, arrival.inc
        try:
            want = self.hub.want_deltas
            body = inc.body
            self.hub.publish(RequestStarted(
                arrival.request_id, ex.wall0, inc.session_id, inc.user_agent, route.rule, route.backend,
                route.requested_model, route.model, arrival.stream, inc.agent_id,
                cwd_of(body) if want else None, prompt_of(body) if want else None, **arrival.who,
                plan=admit.plan_of(snap, route, inc),
            ))
        except Exception:  # the live view must never cost the request its answer
            log.exception("request %s: the live view's start event could not be built", arrival.request_id)

    async def _failover(self, ex: Exchange, candidates: list[Route], backend: Backend, health: HealthBoard,
                        arrival: phases.Arrival) -> None:
        """Each candidate in turn until one answers, or fails so that no other can help (or after
        bytes reached the client). The breaker of the backend being tried hears how it went; one
        that heard nothing (the client went away) is released."""
        snap, inc, request_id = arrival.snap, arrival.inc, arrival.request_id
        route = ex.route
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
                except ApiError as exc:
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
                        return
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
                return
        finally:
            if not verdict:
                health.release(route.backend)

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
            except ApiError as exc:
                await self._fail(ex, scrubbed(exc, ex.incoming))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("request %s (count_tokens) failed inside Patchbay", ex.request_id)
            await self._fail(ex, ApiError(
                500, "api_error", f"Patchbay failed while counting tokens ({type(exc).__name__}: {exc}). This is "
                "a bug in Patchbay; the log file has the details."))
        finally:
            if ex.status == 0:
                ex.status = 500
            self.hub.publish(ex.record(snap.capture, endpoint="count_tokens"))
            _release([backend])

    def _health_for(self, snap: Snapshot) -> HealthBoard:
        """The breakers, set up for this snapshot's [routes] (on the gateway's loop)."""
        routes = snap.table.routes
        if routes is not self._health_routes:
            self._health_routes = routes
            self.health.configure(routes.breaker_failures, routes.breaker_cooldown_s, routes.breaker_max_cooldown_s)
            self.health.forget(set(snap.backends))
        return self.health

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
                decision = await admit.budgets(snap, r, request_id, inc.body, inc)
                if isinstance(decision, Refusal) or not phases.may_use(snap, decision, inc):
                    health.release(r.backend)
                    continue
                r = decision
            return j, r
        return None

    def _record_invalid(self, scope: dict[str, Any], headers: dict[bytes, bytes], raw: bytes, count: bool,
                        exc: ApiError, body: dict[str, Any] | None = None, *,
                        who: dict[str, Any] | None = None) -> None:
        """A request refused before it had a route (a body that is not a request, an unknown
        backend, paused) still gets its row, with no backend."""
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else ""
        now = time.time()
        self.hub.publish(RequestFinished(
            request_id=scope["patchbay.request_id"], started_at=now, ended_at=now,
            session_id=phases.header(headers, b"x-claude-code-session-id"),
            client=phases.header(headers, b"user-agent"), route="refused",
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

    async def _fail(self, ex: Exchange, exc: ApiError) -> None:
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


# ---------------------------------------------------------------------- small functions


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


def _claim(backends: Iterable[Backend]) -> list[Backend]:
    """Claim ``backends`` for a request: none of them closes while it is held."""
    held = list(backends)
    for b in held:
        b.inflight += 1
    return held


def _release(backends: Iterable[Backend]) -> None:
    """Give back a request's claim on its backends; a retired one closes when nobody holds it."""
    for b in backends:
        b.inflight -= 1
        if b.retired and b.inflight == 0:
            close_soon(b.aclose())
