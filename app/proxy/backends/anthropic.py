"""Passthrough to any Anthropic-format endpoint.

Anthropic itself, Ollama >= 0.14, LM Studio, llama.cpp, vLLM, vendors' Anthropic endpoints, a
company gateway. The upstream's bytes reach the client unchanged and as they arrive (whole SSE
events at a time, so an upstream that dies mid-event never leaves half an event behind); a tap
reads a copy for usage, first-token time and the live view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

import httpx
import orjson

from app.catalog.output_limits import limit_for
from app.errors import ApiError
from app.proxy.answer_body import read_whole
from app.proxy.backends.base import Backend, clamp_output, drain, join_url, upstream_error_message
from app.proxy.exchange import JSON_HEADERS, SSE_HEADERS, Exchange
from app.proxy.output_count import delta_output
from app.proxy.relay import Relayed, relay
from app.proxy.sse import MAX_EVENT_BYTES, SSEParser, event_too_large
from app.proxy.thinking import for_anthropic_format, note_signature, signing_family
from app.proxy.translate.response import error_type_for_status as error_type_for
from app.proxy.upstream_body import raw_chunks

# upstream response headers worth passing on (rate limits, request ids, retry advice)
OAUTH_BETA = "oauth-2025-04-20"  # what a Claude subscription's OAuth bearer comes with
_FORWARD_PREFIXES = (b"anthropic-", b"x-ratelimit", b"retry-after", b"request-id", b"x-request-id",
                     b"x-should-retry")


def forwarded_headers(resp: httpx.Response) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in resp.headers.raw:
        lk = k.lower()
        if lk.startswith(_FORWARD_PREFIXES):
            out.append((lk, v))
    return out


def events_of(chunk: bytes) -> list[bytes]:
    """``chunk`` cut after each blank line (an SSE event's end); the rest, if any, last."""
    out = []
    start = 0
    while (end := chunk.find(b"\n\n", start)) >= 0:
        out.append(chunk[start:end + 2])
        start = end + 2
    if start < len(chunk):
        out.append(chunk[start:])
    return out


class AnthropicTap:
    """Reads a copy of an Anthropic SSE stream. ``feed`` returns the bytes that end on an
    event boundary (to forward now); the rest waits for its end."""

    __slots__ = ("ex", "parser", "tail", "saw_stop", "saw_error", "complete", "want_deltas", "_tool_index", "family")

    def __init__(self, ex: Exchange, family: str | None = None) -> None:
        self.ex = ex
        self.family = family  # who signs this upstream's thinking (app.proxy.thinking): noted as they pass
        self.parser = SSEParser()
        self.tail = b""
        self.saw_stop = False
        self.saw_error = False
        self.complete = False  # message_stop or an error came: the answer is complete (app/proxy/relay.py)
        self.want_deltas = ex.counts_deltas

    def feed(self, chunk: bytes) -> bytes:
        buf = self.tail + chunk if self.tail else chunk
        end = buf.rfind(b"\n\n")
        end_crlf = buf.rfind(b"\r\n\r\n")
        if end_crlf >= 0 and end_crlf + 4 > end + 2:
            cut = end_crlf + 4
        elif end >= 0:
            cut = end + 2
        else:
            if len(buf) > MAX_EVENT_BYTES:
                self.tail = b""
                raise event_too_large(len(buf))
            self.tail = buf
            return b""
        ready, self.tail = buf[:cut], buf[cut:]
        for name, data in self.parser.feed(ready):
            self.observe(name, data)
        return ready

    __call__ = feed  # a relay handler (app/proxy/relay.py)

    def observe(self, name: bytes, data: bytes) -> None:
        ex = self.ex
        if name == b"content_block_delta":
            if ex.ttft is None:
                ex.first_token()
            if self.family is not None and b'"signature_delta"' in data:
                try:
                    note_signature(self.family, orjson.loads(data)["delta"].get("signature"))
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                    pass
            # counted as it streams: an answer cut short is charged for what it delivered; parsed
            # now only for the live view or a budget's meter, else when the count is read
            if self.want_deltas:
                got = delta_output(data)
                if got is not None:
                    ex.delta(*got)
            else:
                ex.output.add_event(data)
            return
        if name == b"message_start":
            try:
                msg = orjson.loads(data)["message"]
                if msg.get("model"):
                    ex.served_model = msg["model"]
                if isinstance(msg.get("usage"), dict):
                    ex.set_usage(msg["usage"])
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                pass
        elif name == b"message_delta":
            try:
                ev = orjson.loads(data)
                if isinstance(ev.get("usage"), dict):
                    ex.set_usage(ev["usage"])
                    ex.usage_final = True
                sr = (ev.get("delta") or {}).get("stop_reason")
                if sr:
                    ex.stop_reason = sr
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                pass
        elif name == b"content_block_start":
            if ex.ttft is None:
                ex.first_token()
            if self.want_deltas:
                try:
                    ev = orjson.loads(data)
                    block = ev["content_block"]
                    if block.get("type") in ("tool_use", "server_tool_use"):
                        ex.delta(ev["index"], "tool_use", block.get("name", ""))
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                    pass
        elif name == b"message_stop":
            self.saw_stop = self.complete = True
        elif name == b"error":
            self.saw_error = self.complete = True
            try:
                err = orjson.loads(data)["error"]
                ex.fail(err.get("type", "api_error"), err.get("message", ""))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                ex.fail("api_error", data.decode("utf-8", "replace")[:500])


class AnthropicBackend(Backend):
    kind = "anthropic"

    @cached_property
    def family(self) -> str:
        """Who signs this upstream's thinking (``signing_family``: a URL parse, so once)."""
        return signing_family(self.config)

    def _headers(self, ex: Exchange, credential: str | None) -> dict[str, str]:
        inc = ex.incoming
        h = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "anthropic-version": inc.anthropic_version or "2023-06-01",
        }
        own = False  # the client's own Authorization goes on
        if self.config.auth == "client":
            # the caller pays with its own credential, as it came (a subscription's OAuth bearer with
            # its beta, or an API key); never our own gateway token, which has its own header
            if inc.api_key and not inc.api_key_is_token:
                h["x-api-key"] = inc.api_key
            if inc.authorization and not inc.bearer_is_token:
                h["authorization"] = inc.authorization
                own = True
        elif credential:
            h["x-api-key"] = credential
            if self.tokens is not None:
                # a token from a command goes in both headers, as Claude Code's apiKeyHelper does:
                # an Anthropic-format gateway reads x-api-key, an identity-aware proxy the Bearer
                h["authorization"] = f"Bearer {credential}"
        beta = inc.anthropic_beta
        if beta and not own and OAUTH_BETA in beta:
            # the OAuth beta announces a subscription's Bearer, which this upstream does not get
            beta = ",".join(b for b in beta.split(",") if b.strip() != OAUTH_BETA)
        if beta:
            h["anthropic-beta"] = beta
        h.update(self.extra_headers())
        return h

    def _body(self, ex: Exchange) -> bytes:
        # thinking blocks this upstream did not sign would be refused (400 "Invalid signature")
        body = for_anthropic_format(ex.incoming.body, self.family)
        limit = limit_for(self.config, ex.route.model)  # a model's known limit; a body within it stays as is
        mt = body.get("max_tokens")
        if body is ex.incoming.body and body.get("model") == ex.route.model and \
                not (limit and isinstance(mt, int) and mt > limit):
            return ex.incoming.raw
        new = dict(body)
        new["model"] = ex.route.model
        clamp_output(new, limit)
        return orjson.dumps(new)

    def messages_request(self, ex: Exchange, credential: str | None) -> httpx.Request:
        return self.post(join_url(self.config.base_url, "/v1/messages"), self._body(ex), self._headers(ex, credential))

    def count_request(self, ex: Exchange, credential: str | None) -> httpx.Request:
        return self.post(join_url(self.config.base_url, "/v1/messages/count_tokens"), self._body(ex),
                         self._headers(ex, credential))

    async def messages(self, ex: Exchange) -> None:
        resp = await self.send(lambda credential: self.messages_request(ex, credential))
        await self.relay(ex, resp)

    async def relay(self, ex: Exchange, resp: httpx.Response) -> None:
        """Answer the client from an Anthropic-format upstream response (an error, a whole
        message, or an SSE stream forwarded as it arrives)."""
        ex.note_limits(resp.headers)  # a subscription's usage windows (docs/protocol.md §6)
        try:
            if resp.status_code >= 400:
                raw = await read_whole(resp, self.who)
                etype, msg = upstream_error_message(raw, f"HTTP {resp.status_code} from the upstream")
                raise ApiError(resp.status_code, etype or error_type_for(resp.status_code), msg,
                                   raw_body=raw if _is_anthropic_error(raw) else None,
                                   headers=forwarded_headers(resp))
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                raw = await read_whole(resp, self.who)
                ex.observe_message(self._message_or_raise(raw, ctype))
                if not ex.started:
                    await ex.answer(resp.status_code, JSON_HEADERS + forwarded_headers(resp), raw)
                else:  # we already opened an SSE answer (pings during a slow start)
                    await ex.write(raw)
                    await ex.end()
                return
            opening = None if ex.started else (200, SSE_HEADERS + forwarded_headers(resp))
            if opening is not None and ex.meter is not None:
                await ex.start(*opening)
                opening = None
            tap = AnthropicTap(ex, self.family)
            try:
                # the answer is complete at message_stop or an error: never wait for the upstream to close
                chunks, last = await (relay(resp, ex, tap, opening)
                                      if ex.meter is None else self._metered(ex, tap, raw_chunks(resp)))
            except httpx.HTTPError as exc:
                msg = (f'The connection to the backend "{self.config.id}" broke mid-stream '
                       f"({type(exc).__name__}: {exc or 'closed'}). The answer is incomplete; retry the request.")
                ex.interrupted = True
                await ex.write(ex.error_event("api_error", msg))
                await ex.end()
                return
            if not tap.saw_stop and not tap.saw_error:
                msg = (f'The backend "{self.config.id}" ended its stream before the message was complete. '
                       "The answer is incomplete; retry the request.")
                ex.interrupted = True
                last += ex.error_event("api_error", msg)
            await ex.end(last)  # the last events and the body's end: one write
            await drain(chunks)
        finally:
            await resp.aclose()

    async def _metered(self, ex: Exchange, tap: AnthropicTap, chunks: AsyncIterator[bytes]) -> Relayed:
        """Relay a stream a budget's meter checks: event by event, so it stops at the cap before
        the event that passes it, not before a whole network read of them (unless its hold covers the read)."""
        async for chunk in chunks:
            # one write, checked once, where the stream's hold covers the whole read (far from the cap)
            for piece in (events_of(chunk) if not ex.meter_covers(len(chunk)) else (chunk,)):
                ready = tap.feed(piece)
                if ready:
                    await ex.write(ready)
            if tap.saw_stop or tap.saw_error:
                break
        return Relayed(chunks, b"")

    def _message_or_raise(self, raw: bytes, ctype: str) -> dict[str, Any]:
        """A whole answer must be a Messages object. A 200 with a captive portal's HTML page, an
        ``{"error": …}`` object or an app's index.html is a 502 that says what came back."""
        try:
            obj: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and obj.get("type") == "message" and isinstance(obj.get("content"), list):
            return obj
        if isinstance(obj, dict) and ("error" in obj or obj.get("type") == "error"):
            etype, said = upstream_error_message(raw, "an error without details")
            raise ApiError(502, "api_error", f'The backend "{self.config.id}" answered 200 with an error: {said}')
        kind = "an HTML page" if "html" in ctype.lower() or raw.lstrip()[:1] == b"<" else "something else"
        text = raw.decode("utf-8", "replace").strip()[:200]
        raise ApiError(
            502, "api_error",
            f'The backend "{self.config.id}" answered 200 with {kind}, not a message ({text!r}). Check its base_url: '
            "a login page or a proxy may stand in the way.")

    async def count_tokens(self, ex: Exchange) -> None:
        got = await self.counted(self.send(lambda credential: self.count_request(ex, credential)))
        if got is not None:
            status, raw = got
            if status < 400 and _is_count(raw):
                await ex.answer(status, JSON_HEADERS, raw)
                return
            if status not in (404, 405, 501):
                etype, msg = upstream_error_message(raw, f"HTTP {status} from the upstream")
                raise ApiError(status, etype or error_type_for(status), msg,
                                   raw_body=raw if _is_anthropic_error(raw) else None)
        # the upstream cannot count (Ollama, some servers): estimate
        await self.answer_estimate(ex)


def _is_anthropic_error(raw: bytes) -> bool:
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "error" and isinstance(obj.get("error"), dict)


def _is_count(raw: bytes) -> bool:
    """A count_tokens answer (not a captive portal's page or an error object passed as 200)."""
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("input_tokens"), int)
