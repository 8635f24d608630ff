"""OpenAI-compatible Chat Completions upstreams (OpenRouter, DeepSeek, Groq, Together, vLLM,
LM Studio, Ollama's /v1), translated both ways."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson

from app.catalog.output_limits import limit_for
from app.config.providers import quirks_for
from app.errors import ApiError
from app.proxy.answer_body import read_whole
from app.proxy.backends.base import Backend, drain, upstream_error_message
from app.proxy.exchange import JSON_HEADERS, SSE_HEADERS, Exchange
from app.proxy.reasoning_store import STORE
from app.proxy.relay import relay
from app.proxy.thinking import keep_reasoning, reasoning_signature
from app.proxy.translate.openai_relay import OpenAIStreamReader
from app.proxy.translate.quirks import apply_quirks
from app.proxy.translate.request import stop_sequences_of, to_openai_request
from app.proxy.translate.response import openai_error_to_anthropic, openai_response_to_anthropic
from app.proxy.translate.stream import OpenAIStreamTranslator, encode_events
from app.proxy.translate.structured import explain_refusal

log = logging.getLogger("patchbay.backends")


class OpenAIBackend(Backend):
    kind = "openai"

    def _headers(self, credential: str | None) -> dict[str, str]:
        h = {"content-type": "application/json", "accept-encoding": "identity"}
        if credential:
            h["authorization"] = f"Bearer {credential}"
        h.update(self.extra_headers())
        return h

    async def _open(self, ex: Exchange, stream: bool) -> httpx.Response:
        try:
            body = to_openai_request(ex.incoming.body, ex.route.model, stream=stream,
                                     max_output_tokens=limit_for(self.config, ex.route.model),
                                     keep_thinking=keep_reasoning(self.config, ex.route.model))
            apply_quirks(body["messages"], quirks_for(self.config, ex.route.model), self.config.id, STORE.recall)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApiError(400, "invalid_request_error",
                               f"Patchbay could not translate this request for an OpenAI-compatible backend: {exc}") from None
        raw = orjson.dumps(body)
        url = self.config.base_url + "/chat/completions"
        return await self.send(lambda credential: self.post(url, raw, self._headers(credential)))

    async def _raise_for_status(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        raw = await read_whole(resp, self.who)
        status, err = openai_error_to_anthropic(resp.status_code, raw)
        e = err.get("error", {})
        retry = [(b"retry-after", v.encode()) for k, v in resp.headers.items() if k.lower() == "retry-after"]
        raise ApiError(status, e.get("type", "api_error"), e.get("message", ""), raw_body=orjson.dumps(err),
                           headers=retry)

    async def messages(self, ex: Exchange) -> None:
        try:
            await self._messages(ex)
        except ApiError as exc:
            why = explain_refusal(exc.status, exc.message, ex.incoming.body, self.config.id)
            if why is None:
                raise
            raise ApiError(exc.status, exc.error_type, why, headers=exc.headers) from None

    async def _messages(self, ex: Exchange) -> None:
        if not ex.stream:
            await self._messages_whole(ex)
            return
        resp = await self._open(ex, stream=True)
        try:
            await self._raise_for_status(resp)
            await self._refuse_non_stream(resp)
            # message_start carries an estimate (≈ 4 bytes a token); message_delta has the real count
            tr = OpenAIStreamTranslator(ex.route.model, input_tokens=max(1, len(ex.incoming.raw) // 4),
                                        signature=reasoning_signature(self.config.id),
                                        stop_sequences=stop_sequences_of(ex.incoming.body))
            if ex.counts_deltas:
                tr.on_delta = ex.delta
            await ex.open_with(200, SSE_HEADERS, encode_events(tr.start()))  # started by a ping, or now
            reader = OpenAIStreamReader(tr, ex.first_token)
            try:
                # the answer is complete at [DONE] or the translator's end: never wait for the upstream to close
                chunks, last = await relay(resp, ex, reader, short=reader.by_skeleton)
            except asyncio.CancelledError:  # the client left: keep what is known of the usage so far
                self._finish_from(ex, tr)
                raise
            except httpx.HTTPError as exc:
                msg = (f'The connection to the backend "{self.config.id}" broke mid-stream '
                       f"({type(exc).__name__}: {exc or 'closed'}). The answer is incomplete; retry the request.")
                self._finish_from(ex, tr)
                ex.interrupted = True
                ex.fail("api_error", msg)
                await ex.write(encode_events(tr.fail("api_error", ex.error_message or msg)))
                await ex.end()
                return
            self._skipped_note(tr)
            if tr.error is not None:  # the upstream said why inside its stream: its words, both places
                self._finish_from(ex, tr)
                await ex.end(last)
                await drain(chunks)
                return
            if reader.done or tr.finish_reason or tr.stop_reason:
                tail = tr.finish()
                STORE.remember(self.config.id, tr.tool_use_ids, "".join(tr.reasoning_parts), tr.reasoning_details)
            else:
                msg = (f'The backend "{self.config.id}" ended its stream before the answer was complete. '
                       "Retry the request.")
                ex.interrupted = True
                ex.fail("api_error", msg)
                tail = tr.fail("api_error", ex.error_message or msg)
            self._finish_from(ex, tr)
            await ex.end(last + encode_events(tail))  # one write: the last events and the body's end
            await drain(chunks)
        finally:
            await resp.aclose()

    async def _refuse_non_stream(self, resp: httpx.Response) -> None:
        """A 200 that is not an event stream (a captive portal's HTML page, an ``{"error": …}``
        object, an app's index.html) is no answer: 502 with what it said, before anything is sent."""
        ctype = resp.headers.get("content-type", "").lower()
        if "text/event-stream" in ctype or not ("html" in ctype or "json" in ctype):
            return
        raw = await read_whole(resp, self.who)
        _t, said = upstream_error_message(raw, "an empty body")
        kind = "an HTML page" if "html" in ctype else "JSON"
        raise ApiError(502, "api_error",
                           f'The backend "{self.config.id}" answered a streaming request with {kind} instead of an '
                           f"event stream: {said[:300]}")

    def _skipped_note(self, tr: OpenAIStreamTranslator) -> None:
        if tr.skipped:
            log.warning('backend "%s": skipped %d stream chunk(s) in a shape Patchbay cannot read; the rest of the '
                        "answer went through", self.config.id, tr.skipped)

    def _finish_from(self, ex: Exchange, tr: OpenAIStreamTranslator) -> None:
        u = tr.usage
        ex.input_tokens = u.input_tokens
        ex.output_tokens = u.output_tokens
        ex.cache_creation = u.cache_creation_input_tokens
        ex.cache_read = u.cache_read_input_tokens
        ex.usage_final = tr.usage_reported
        ex.stop_reason = tr.stop_reason
        if tr.model:
            ex.served_model = tr.model
        err = tr.error  # an error the upstream reported inside its stream
        if err is not None and ex.error_type is None:
            ex.fail(*err)

    async def _messages_whole(self, ex: Exchange) -> None:
        raw = await self.read_ok(await self._open(ex, stream=False))
        try:
            obj = orjson.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            if isinstance(obj.get("error"), (dict, str)):
                _t, msg = upstream_error_message(raw, "error")
                raise ApiError(502, "api_error", f'The backend "{self.config.id}" answered 200 with an error: {msg}')
            message = openai_response_to_anthropic(obj, requested_model=ex.route.model,
                                                   signature=reasoning_signature(self.config.id),
                                                   stop_sequences=stop_sequences_of(ex.incoming.body))
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ApiError(502, "api_error",
                               f'The backend "{self.config.id}" answered with something that is not a chat '
                               f"completion ({exc}).") from None
        self._note_reasoning(obj, message)
        ex.observe_message(message)
        ex.served_model = message.get("model") or ex.route.model
        await ex.answer(200, JSON_HEADERS, orjson.dumps(message))

    def _note_reasoning(self, obj: dict[str, Any], message: dict[str, Any]) -> None:
        """Keep the reasoning (and ``reasoning_details``) of a whole answer with tool calls
        (:mod:`app.proxy.reasoning_store`)."""
        ids = [b["id"] for b in message["content"] if b.get("type") == "tool_use"]
        if not ids:
            return
        choices = obj.get("choices")
        said = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if not isinstance(said, dict):
            return
        reasoning = said.get("reasoning_content") or said.get("reasoning")
        details = said.get("reasoning_details")
        STORE.remember(self.config.id, ids, reasoning if isinstance(reasoning, str) else "",
                       details if isinstance(details, list) else ())

    async def count_tokens(self, ex: Exchange) -> None:
        await self.answer_estimate(ex)
