"""What every backend adapter shares: the upstream HTTP client, auth, and error wording."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpx
import orjson

from app.config import DEFAULT_MAX_CONNECTIONS, DEFAULT_TOKEN_TTL_S, BackendConfig, GatewaySettings
from app.errors import ApiError
from app.logs import scrub
from app.proxy import stops, upstream_request
from app.proxy.answer_body import inflating, read_whole
from app.proxy.credentials import CommandToken, TokenSource
from app.proxy.exchange import JSON_HEADERS, Exchange
from app.proxy.tokens import estimate_tokens
from app.proxy.transport import HttptoolsTransport, env_proxy_for

log = logging.getLogger("patchbay.backends")

KeyLookup = Callable[[str, str], str | None]
"""(backend id, auth) -> the stored API key, or None where the auth needs none. Raises an
exception whose text says what to do when the key is missing (the engine passes
``app.host.secrets.resolve_backend_key``: the gateway itself knows no keychain)."""


class Backend:
    """One configured upstream. Subclasses implement ``messages`` and ``count_tokens``."""

    kind = "base"

    def __init__(self, config: BackendConfig, gateway: GatewaySettings, *, keys: KeyLookup) -> None:
        self.config = config
        self._lookup = keys
        self.inflight = 0
        self.retired = False
        self._key: str | None = None
        self._key_error: str | None = None
        self.refresh_key()
        self.tokens: TokenSource | None = self.token_source()
        timeout = httpx.Timeout(connect=15.0, read=gateway.upstream_timeout_s, write=60.0, pool=60.0)
        self._timeout = timeout.as_dict()
        self._urls: dict[str, upstream_request.Target] = {}
        cap = config.max_connections or DEFAULT_MAX_CONNECTIONS
        limits = httpx.Limits(max_connections=cap, max_keepalive_connections=min(cap, max(50, cap // 4)),
                              keepalive_expiry=60.0)
        trust_env = not config.is_local  # a proxy from the environment never applies to loopback
        # our httptools transport unless a proxy from the environment applies (httpx's own handles those)
        self._transport: HttptoolsTransport | None = None
        if not (trust_env and env_proxy_for(config.base_url)):
            self._transport = HttptoolsTransport(limits=limits, trust_env=trust_env)
        self.client = httpx.AsyncClient(
            timeout=timeout,
            limits=limits,
            follow_redirects=False,
            trust_env=trust_env,
            transport=self._transport,
        )

    # ------------------------------------------------------------------ auth

    def refresh_key(self) -> None:
        try:
            self._key = self._lookup(self.config.id, self.config.auth)
            self._key_error = None
        except Exception as exc:  # the lookup's sentence: no key stored, no keychain, a variable not set
            self._key = None
            self._key_error = str(exc)

    def key(self) -> str | None:
        if self._key_error is not None:
            self.refresh_key()  # the user may have added it since
            if self._key_error is not None:
                raise stops.missing(self._key_error)
        return self._key

    def token_source(self) -> TokenSource | None:
        """Where a token that expires comes from (``auth = "command:..."``; cloud kinds add their
        own), or None where the credential is a stored key."""
        command = self.config.token_command
        if command is not None:
            return CommandToken(self.config.id, command, self.config.token_ttl_s or DEFAULT_TOKEN_TTL_S)
        return None

    async def credential(self) -> str | None:
        """The secret for the next request: a token from the token source, else the stored key."""
        secret = await self.tokens.token() if self.tokens is not None else self.key()
        scrub.remember(secret)  # redacted wherever an upstream quotes it back
        return secret

    async def send(self, build: Callable[[str | None], httpx.Request]) -> httpx.Response:
        """Open ``build(credential)``. A 401 to a token that expires (a command's, Google's)
        gets one fresh token and one retry; nothing of the answer has reached the client yet."""
        credential = await self.credential()
        resp = await self.open(build(credential))
        if resp.status_code == 401 and self.tokens is not None:
            await read_whole(resp, self.who)
            await resp.aclose()
            log.info('backend "%s" refused its token (401): fetching a new one and retrying once', self.config.id)
            await self.tokens.refresh(credential)
            resp = await self.open(build(await self.credential()))
        return resp

    def extra_headers(self) -> dict[str, str]:
        return dict(self.config.headers)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ interface

    async def messages(self, ex: Exchange) -> None:
        raise NotImplementedError

    async def count_tokens(self, ex: Exchange) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared helpers

    async def _raise_for_status(self, resp: httpx.Response) -> None:
        """Raise a ApiError worded for this kind of upstream when ``resp`` is an error."""
        raise NotImplementedError

    async def counted(self, opening: Awaitable[httpx.Response]) -> tuple[int, bytes] | None:
        """Status and body of the upstream's own token count, or None where it could not be asked
        (the caller estimates then). A missing credential (401) is raised: the user must hear of it."""
        try:
            resp = await opening
        except ApiError as exc:
            if exc.status == 401:
                raise  # no credential (a key not stored, a token command that fails): say so
            return None
        try:
            return resp.status_code, await read_whole(resp, self.who)
        finally:
            await resp.aclose()

    async def answer_estimate(self, ex: Exchange) -> None:
        """Answer count_tokens with Patchbay's own estimate (app/proxy/tokens.py)."""
        await ex.answer(200, JSON_HEADERS, orjson.dumps({"input_tokens": estimate_tokens(ex.incoming.body)}))

    async def read_ok(self, resp: httpx.Response) -> bytes:
        """The whole body of an answer that is not an error (one that is raises), connection released."""
        try:
            await self._raise_for_status(resp)
            return await read_whole(resp, self.who)
        finally:
            await resp.aclose()

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> httpx.Request:
        """A POST to ``url``. The URL is parsed once per backend (httpx's URL parser costs ~90 µs a
        request) and the request built without httpx's per-request work (app/proxy/upstream_request.py)."""
        target = self._urls.get(url)
        if target is None:
            target = self._urls[url] = upstream_request.Target(url)
        return upstream_request.post(target, content, headers, {"timeout": self._timeout})

    async def open(self, request: httpx.Request) -> httpx.Response:
        """Send and return the streaming response, or raise a ApiError that says what failed."""
        try:
            transport = self._transport
            if transport is None:
                resp = await self.client.send(request, stream=True)
            else:
                # to our transport: httpx's client layer (auth and redirect wrappers, cookie jar,
                # hooks) costs ~0.3 ms a request and does nothing for us (no auth, no redirects)
                resp = await transport.handle_async_request(request)
                resp.request = request
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise upstream_failure(self.config, exc) from None
        try:
            return inflating(resp, self.who)  # a compressed answer inflates in bounded steps
        except ApiError:
            await resp.aclose()
            raise

    @property
    def who(self) -> str:
        """This upstream, as error texts name it."""
        return f'The backend "{self.config.id}"'


def upstream_failure(config: BackendConfig, exc: Exception) -> ApiError:
    """The ApiError (502, or 504 for a timeout) that says how talking to ``config`` failed:
    connecting, sending, or reading an answer that was cut or stalled part-way."""
    where = f'the backend "{config.id}" at {config.base_url}'
    if isinstance(exc, httpx.ConnectError):  # refused, DNS, TLS: no retry helps, Claude Code stops at once
        return stops.not_answering(config, _reason(exc))
    if isinstance(exc, httpx.TimeoutException):
        return ApiError(504, "timeout_error", f"{where[0].upper()}{where[1:]} did not answer in time.")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError)):
        return ApiError(
            502, "api_error",
            f"The connection to {where} broke before its answer was complete ({_reason(exc)}). Retry the "
            "request; if it keeps happening, check the backend or anything between Patchbay and it.")
    return ApiError(502, "api_error", f'The request to the backend "{config.id}" failed: {_reason(exc)}.')


# after a complete answer, how long the rest of the upstream body (a chunked terminator) may take
# before the connection is dropped instead of kept for reuse
DRAIN_S = 1.0


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of a finished answer's body, briefly, so the connection can be reused;
    an upstream that keeps it open gets it dropped (``resp.aclose()`` after this)."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in chunks:
                pass
    except (TimeoutError, httpx.HTTPError, httpx.StreamError):
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    while not text and exc.__cause__ is not None:
        exc = exc.__cause__
        text = str(exc).strip()
    return text or type(exc).__name__


def join_url(base: str, path: str) -> str:
    """``base`` may or may not end in ``/v1``; ``path`` starts with ``/v1/``."""
    if base.endswith("/v1") and path.startswith("/v1/"):
        return base + path[3:]
    return base + path


TOOL_SEARCH_BETA = "tool-search-tool-2025-10-19"


def undefer_tools(body: dict[str, Any], betas: Iterable[str]) -> None:
    """In place: without the tool-search beta the clouds (Bedrock, Vertex) refuse a tool marked
    ``defer_loading`` ("Extra inputs are not permitted"), so every tool is sent up front instead."""
    tools = body.get("tools")
    if TOOL_SEARCH_BETA in betas or not isinstance(tools, list) or \
            not any(isinstance(t, dict) and "defer_loading" in t for t in tools):
        return
    body["tools"] = [{k: v for k, v in t.items() if k != "defer_loading"} if isinstance(t, dict) else t
                     for t in tools]


async def refused_betas(resp: httpx.Response) -> bool:
    """True for a 400 that says "invalid beta flag": Bedrock and Vertex refuse beta values they do
    not know (which ones differ by model), where Anthropic ignores them. Reads the body."""
    if resp.status_code != 400:
        return False
    return b"invalid beta flag" in (await read_whole(resp, "The upstream")).lower()


def clamp_output(body: dict[str, Any], limit: int | None) -> bool:
    """Lower ``max_tokens`` (and a thinking budget that no longer fits) to ``limit`` in place;
    True when something changed."""
    mt = body.get("max_tokens")
    if not (limit and isinstance(mt, int) and mt > limit):
        return False
    body["max_tokens"] = limit
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(thinking, dict) and isinstance(budget, int) and budget >= limit:
        body["thinking"] = dict(thinking, budget_tokens=max(1024, limit - 1))
    return True


def upstream_error_message(body: bytes, fallback: str) -> tuple[str | None, str]:
    """(error type, message) from an upstream error body in Anthropic or OpenAI shape."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return None, (text[:2000] or fallback)
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or fallback
            typ = err.get("type") if isinstance(err.get("type"), str) else None
            return typ, str(msg)
        if isinstance(err, str):
            return None, err
        if isinstance(obj.get("message"), str):
            return None, obj["message"]
        if isinstance(obj.get("detail"), str):
            return None, obj["detail"]
    return None, body.decode("utf-8", "replace")[:2000] or fallback
