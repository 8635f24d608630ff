"""One request's journey through the gateway: what came in, where it goes, what came back.

The gateway creates an ``Exchange`` per request; a backend adapter answers through it
(``start`` / ``write``) and fills in what it learned (usage, first token, stop reason).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from app.errors import ApiError
from app.events import ContentDelta, EventHub, RequestFinished, Usage
from app.logs.scrub import scrub, scrub_text
from app.proxy import request_ids
from app.proxy.direct_write import direct_writer
from app.proxy.output_count import OutputCount
from app.proxy.routing import Route
from app.proxy.sse import encode
from app.proxy.subscription import parse_unified
from app.proxy.tokens import estimate_tokens

if TYPE_CHECKING:
    from app.team.identity import Identity

Send = Callable[[dict[str, Any]], Awaitable[None]]
log = logging.getLogger("patchbay.gateway")


def error_body(error_type: str, message: str, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def scrubbed(exc: ApiError, inc: Incoming | None) -> ApiError:
    """``exc`` with every credential removed from its message and body (an upstream's 401 may
    quote the key it was sent): what the client, the log and the ledger get."""
    extra = _client_secrets(inc)
    message = scrub_text(exc.message, extra) or ""
    raw = scrub(exc.raw_body, extra) if exc.raw_body else exc.raw_body
    if message == exc.message and raw == exc.raw_body:
        return exc
    return ApiError(exc.status, exc.error_type, message, raw_body=raw, headers=exc.headers)


def _client_secrets(inc: Incoming | None) -> tuple[str, ...]:
    if inc is None:
        return ()
    return tuple(s for s in (inc.api_key, inc.bearer) if s)


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Incoming:
    """What the gateway needs from the client's request."""

    body: dict[str, Any]
    raw: bytes
    api_key: str | None  # x-api-key
    bearer: str | None  # Authorization: Bearer ...
    authorization: str | None  # the raw Authorization header
    anthropic_version: str | None
    anthropic_beta: str | None
    user_agent: str | None
    session_id: str | None
    agent_id: str | None
    api_key_is_token: bool  # the x-api-key is our gateway token (never forward it)
    bearer_is_token: bool
    identity: Identity | None = None  # team mode: who sent it, verified
    groups: tuple[str, ...] = ()  # team mode: the caller's [[team.groups]]
    client_addr: str | None = None
    authed: bool = False  # carried the gateway token (in any header) or a verified identity


    def who(self) -> dict[str, Any]:
        """The event fields that say who sent this request."""
        ident = self.identity
        return {"user": ident.user if ident is not None else None, "groups": self.groups,
                "identity_source": ident.source if ident is not None else None, "client_addr": self.client_addr}


def _with(headers: list[tuple[bytes, bytes]], extra: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus ``extra``, an upstream's header of the same name replaced by ours."""
    names = {k.lower() for k, _v in extra}
    return [h for h in headers if h[0].lower() not in names] + list(extra)


class Exchange:
    __slots__ = (
        "request_id", "route", "incoming", "stream", "send", "hub", "want_deltas", "t0", "wall0",
        "started", "finished", "status", "error_type", "error_message", "ttft", "stop_reason",
        "served_model", "input_tokens", "output_tokens", "cache_creation", "cache_read", "cache_1h",
        "last_write", "captured", "client_gone", "attempts", "hold_open_until", "interrupted", "extra_headers",
        "on_done", "plan", "output", "usage_final", "meter", "direct",
    )

    def __init__(self, request_id: str, route: Route, incoming: Incoming, stream: bool, send: Send,
                 hub: EventHub, *, capture: bool = False) -> None:
        self.request_id = request_id
        self.route = route
        self.incoming = incoming
        self.stream = stream
        self.send = send
        self.hub = hub
        self.want_deltas = hub.want_deltas
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self.started = False  # response headers sent
        self.finished = False  # response completed
        self.status = 0
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.ttft: float | None = None
        self.stop_reason: str | None = None
        self.served_model = route.model
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_creation = 0
        self.cache_read = 0
        self.cache_1h = 0  # of cache_creation, written for one hour
        self.last_write = self.t0
        self.captured: list[bytes] | None = [] if capture else None
        self.client_gone = False
        self.attempts = 1
        # while a fallback could still take over, a silent upstream does not make the gateway open
        # the stream with a ping (that would rule failover out) until this perf_counter time
        self.hold_open_until = 0.0
        self.interrupted = False  # the answer stopped part-way (client gone, upstream cut)
        # added to a successful answer's headers (a budget past warn_at: its utilisation headers)
        self.extra_headers: tuple[tuple[bytes, bytes], ...] = ()
        # called once, just before the client gets the bytes that end the answer (its stop reason
        # and final usage known): budget admission learns the real cost before the client can
        # send its next request, so this one's reservation never counts at its estimate then
        self.on_done: Callable[[Exchange], None] | None = None
        self.plan: str | None = None  # "subscription": the caller's Claude subscription pays (the gateway decides)
        # the output forwarded so far (text, thinking and tool JSON of the deltas), counted once
        # (app/proxy/output_count.py): what an answer cut short is charged when the upstream's final
        # usage never came (``usage_final``: its message_delta usage, a whole message's, a usage
        # chunk; ``streamed_tokens``), and what the meter prices (``streamed_chars``)
        self.output = OutputCount()
        self.usage_final = False
        # budget admission's check before each write of a stream (app/budgets/hold_meter.py): None
        # to go on, or the sentence the stream stops with
        self.meter: Callable[[Exchange], Awaitable[str | None]] | None = None
        self.direct = direct_writer(send)  # write_now's way to the client, where the server allows

    @property
    def counts_deltas(self) -> bool:
        """Adapters hand each delta to ``delta`` (the live view shows them, the meter counts them)."""
        return self.want_deltas or self.meter is not None

    def retry(self, route: Route) -> None:
        """Start the next attempt (failover) on ``route``. Only before anything reached the
        client: what the failed attempt learned is forgotten; the clock keeps running, so the
        time to first token is the one the client saw."""
        assert not self.started, "nothing is retried after bytes reached the client"
        self.route = route
        self.status = 0
        self.error_type = self.error_message = None
        self.ttft = None
        self.stop_reason = None
        self.served_model = route.model
        self.input_tokens = self.output_tokens = self.cache_creation = self.cache_read = self.cache_1h = 0
        self.output = OutputCount()
        self.usage_final = False
        if self.captured is not None:
            self.captured = []
        self.attempts += 1

    # ----------------------------------------------------------------- answering

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.status = status
        if self.extra_headers and 200 <= status < 300:
            headers = _with(headers, self.extra_headers)
        headers = request_ids.with_header(headers, self.request_id)
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    def meter_covers(self, n: int) -> bool:
        """The budget meter's hold covers ``n`` more bytes of this stream whatever they say (far from
        the cap): they may go in one write, checked once, instead of one check and write per event."""
        covers = getattr(getattr(self.meter, "__self__", None), "covers", None)
        return bool(covers is not None and covers(self.request_id, n))

    async def open_with(self, status: int, headers: list[tuple[bytes, bytes]], data: bytes) -> None:
        """``start``, then ``write(data)``, in one write to the client where the server allows
        (app/proxy/direct_write.py): the first bytes of the answer reach it a write sooner."""
        direct = self.direct
        if direct is None or self.started:
            if not self.started:
                await self.start(status, headers)
            await self.write(data)
            return
        with direct.held_head():
            await self.start(status, headers)
            await self.write(data)

    def outgoing(self, data: bytes) -> bytes:
        """Bytes about to go to the client, recorded (the last write's time, the captured body),
        an error event's quoted secrets scrubbed; what to write."""
        self.last_write = time.perf_counter()
        if b"event: error" in data:  # an upstream's error event may quote a key it was sent
            data = scrub(data, _client_secrets(self.incoming))
        if self.captured is not None:
            self.captured.append(data)
        return data

    def can_write_now(self) -> bool:
        """``write_now`` would write (no budget meter to ask, the client keeps up)."""
        direct = self.direct
        return direct is not None and self.meter is None and direct.ready()

    def write_now(self, data: bytes) -> bool:
        """``write`` without awaiting, from a protocol callback (app/proxy/relay.py): True when
        the bytes went out; False when they must go through ``write`` (a budget's meter asks
        first, the client reads slowly or left, the server is not uvicorn's httptools one)."""
        direct = self.direct
        if direct is None or self.meter is not None or not direct.ready():
            return False
        if data:
            data = self.outgoing(data)
            if self.on_done is not None and self.stop_reason is not None:
                self._done()
            direct.write(data)
        return True

    async def write(self, data: bytes) -> None:
        """Send stream bytes. Adapters only ever write whole SSE events, so a ping or an error
        event may follow any write."""
        if not data:
            return
        data = self.outgoing(data)
        if self.meter is not None and (b"content_block_delta" in data or b"message_start" in data) and \
                b"message_delta" not in data:  # content still to come (never a ping, nor the answer's end)
            stop = await self.meter(self)
            if stop is not None:  # the budget is used up: the gateway ends the stream with an error event
                self.meter = None
                self.interrupted = True  # its row is charged for the output it delivered (_usage_of)
                raise ApiError(402, "billing_error", stop)
        if self.on_done is not None and self.stop_reason is not None:
            self._done()
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        """End the stream; ``data``, its last events, goes in the same write (as ``write`` would)."""
        if data:
            if self.meter is not None:  # its check comes first, as for any write
                await self.write(data)
                data = b""
            else:
                data = self.outgoing(data)
                if self.on_done is not None and self.stop_reason is not None:
                    self._done()
        self.finished = True
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    async def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole, non-streamed answer."""
        self.started = True
        self.status = status
        if self.extra_headers and 200 <= status < 300:
            headers = _with(headers, self.extra_headers)
        headers = request_ids.with_header(headers, self.request_id)
        if self.captured is not None:
            self.captured.append(body)
        if self.on_done is not None and self.stop_reason is not None:
            self._done()
        await self.send({"type": "http.response.start", "status": status,
                         "headers": headers + [(b"content-length", str(len(body)).encode())]})
        self.finished = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def _done(self) -> None:
        hook, self.on_done = self.on_done, None
        try:
            if hook is not None:
                hook(self)
        except Exception:  # a hook must never cost the client its answer
            log.exception("request %s: the on_done hook failed", self.request_id)

    # ----------------------------------------------------------------- observing

    def first_token(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.t0

    def set_usage(self, usage: dict[str, Any]) -> None:
        """Merge an Anthropic-shaped usage object (message_start, message_delta, a message)."""
        v = usage.get("input_tokens")
        if v is not None:
            self.input_tokens = v
        v = usage.get("output_tokens")
        if v is not None:
            self.output_tokens = v
        v = usage.get("cache_creation_input_tokens")
        if v is not None:
            self.cache_creation = v
        v = usage.get("cache_read_input_tokens")
        if v is not None:
            self.cache_read = v
        split = usage.get("cache_creation")  # {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}
        if isinstance(split, dict) and isinstance(split.get("ephemeral_1h_input_tokens"), int):
            self.cache_1h = split["ephemeral_1h_input_tokens"]

    @property
    def streamed_tokens(self) -> float:
        """The estimated tokens of the output forwarded so far."""
        return self.output.tokens()

    @property
    def streamed_chars(self) -> int:
        """The characters of text, thinking and tool input forwarded so far (the meter's count)."""
        return self.output.chars()

    def observe_message(self, msg: dict[str, Any]) -> None:
        """Learn from a whole (non-streamed) Anthropic message: usage, stop reason, the live view."""
        if isinstance(msg.get("usage"), dict):
            self.set_usage(msg["usage"])
            self.usage_final = True
        if msg.get("model"):
            self.served_model = msg["model"]
        self.stop_reason = msg.get("stop_reason")
        content = msg.get("content") or []
        if content:
            self.first_token()
        if self.want_deltas:
            for i, block in enumerate(content):
                if not isinstance(block, dict):
                    continue
                t = block.get("type")
                if t == "text":
                    self.delta(i, "text", block.get("text", ""))
                elif t == "thinking":
                    self.delta(i, "thinking", block.get("thinking", ""))
                elif t == "tool_use":
                    self.delta(i, "tool_use", block.get("name", ""))
                    self.delta(i, "tool_input", orjson.dumps(block.get("input", {})).decode())

    def note_limits(self, headers: Mapping[str, str]) -> None:
        """Publish the subscription's usage windows an upstream's answer carries, if any."""
        limits = parse_unified(headers, self.route.backend)
        if limits is not None:
            self.hub.publish(limits)

    def delta(self, index: int, kind: str, text: str) -> None:
        """A piece of output the client got: counted (``output``) and shown in the live view."""
        if kind != "tool_use":  # a tool's name is shown, not counted
            self.output.add(text)
        if self.want_deltas and (text or kind == "tool_use"):
            self.hub.publish(ContentDelta(self.request_id, self.incoming.session_id, index, kind, text))  # type: ignore[arg-type]

    def fail(self, error_type: str, message: str, status: int | None = None) -> None:
        self.error_type = error_type
        self.error_message = scrub_text(message, _client_secrets(self.incoming))
        if status is not None and not self.started:
            self.status = status

    def error_event(self, error_type: str, message: str) -> bytes:
        """Record a mid-stream failure and return the SSE error event that tells the client: one
        message, the same in both places."""
        self.fail(error_type, message)
        return encode("error", {"type": "error", "error": {"type": error_type, "message": self.error_message}})

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cache_creation, self.cache_read, self.cache_1h)

    def _usage_of(self, cut: bool) -> tuple[Usage, str | None]:
        """The usage to record, and how it was counted: None for the upstream's own numbers;
        ``"streamed"`` for an answer cut short before its final usage came, whose output is at
        least what was forwarded (``streamed_tokens``) and whose prompt, where the upstream never
        said, is Patchbay's estimate: the provider bills both; ``"estimated"`` for a whole
        (non-streamed) answer the client left before it came: its prompt, estimated."""
        usage = self.usage
        if not cut or self.usage_final:
            return usage, None
        inp, out = usage.input_tokens, max(usage.output_tokens, math.ceil(self.streamed_tokens))
        if not inp:
            try:
                inp = estimate_tokens(self.incoming.body)
            except Exception:
                pass
        counted = "streamed" if self.stream else "estimated"
        return Usage(inp, out, usage.cache_creation_input_tokens, usage.cache_read_input_tokens,
                     usage.cache_creation_1h_input_tokens), counted

    def record(self, capture_mode: str, endpoint: str = "messages") -> RequestFinished:
        end = time.perf_counter()
        interrupted = self.interrupted or (self.stream and self.started and not self.finished)
        usage, counted = self._usage_of(interrupted and endpoint == "messages")
        keep = capture_mode == "all" or (capture_mode == "errors" and self.error_type is not None)
        inc = self.incoming
        return RequestFinished(
            request_id=self.request_id,
            started_at=self.wall0,
            ended_at=self.wall0 + (end - self.t0),
            session_id=inc.session_id,
            client=inc.user_agent,
            route=self.route.rule,
            backend=self.route.backend,
            requested_model=self.route.requested_model,
            model=self.served_model or self.route.model,
            stream=self.stream,
            status=self.status,
            error_type=self.error_type,
            error_message=self.error_message,
            ttft_ms=None if self.ttft is None else self.ttft * 1000.0,
            duration_ms=(end - self.t0) * 1000.0,
            usage=usage,
            stop_reason=self.stop_reason,
            attempts=self.attempts,
            agent_id=inc.agent_id,
            request_body=inc.raw if keep else None,
            response_body=b"".join(self.captured) if keep and self.captured is not None else None,
            interrupted=interrupted,
            usage_counted=counted,
            endpoint=endpoint,
            plan=self.plan,
            **inc.who(),
        )
