"""Claude on AWS Bedrock (docs/protocol.md §4).

The request is the Anthropic body less ``model`` and ``stream``, plus ``anthropic_version`` and
the ``anthropic-beta`` header as an ``anthropic_beta`` list, sent to
``/model/{model id}/invoke-with-response-stream`` (``/invoke`` unstreamed). It is signed with
SigV4 from botocore's credential chain (``auth = "aws"``), or carries a Bedrock API key
(``Authorization: Bearer``: ``auth = "env:AWS_BEARER_TOKEN_BEDROCK"``, ``keyring`` or a
``command:``).

The answer streams as ``application/vnd.amazon.eventstream`` frames, decoded with botocore's
``EventStreamBuffer``; each event frame carries one Anthropic event (``{"bytes": base64}``) that
goes to the client as one SSE event, observed by the same tap as the Anthropic passthrough.
Exception frames become Anthropic errors: an HTTP error while nothing was sent yet, an SSE
``error`` event after. Bedrock sends no pings; the gateway's pinger fills its silences.

Bedrock answers 400 "invalid beta flag" to any beta it does not know, and Claude Code sends
many (docs/protocol.md §1), so only the betas AWS documents for Claude on Bedrock are passed on; a
model that refuses even those (it happens, model by model) gets the request again without
betas, and from then on none.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any
from urllib.parse import quote

import httpx
import orjson

# imported here, when the backend is built (off the gateway's loop), not on a first request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.eventstream import EventStreamBuffer, ParserError

from app.catalog.output_limits import limit_for
from app.errors import ApiError
from app.proxy.answer_body import read_whole
from app.proxy.backends.anthropic import AnthropicTap
from app.proxy.backends.base import Backend, clamp_output, refused_betas, undefer_tools, upstream_error_message
from app.proxy.credentials import AwsCredentials
from app.proxy.exchange import JSON_HEADERS, SSE_HEADERS, Exchange
from app.proxy.sse import encode
from app.proxy.thinking import CLAUDE, for_anthropic_format, note_message
from app.proxy.translate.response import error_type_for_status

log = logging.getLogger("patchbay.bedrock")

MAX_MODEL_ID = 2048  # Bedrock's own limit on a modelId (InvokeModel's API reference)

BEDROCK_VERSION = "bedrock-2023-05-31"
EVENTSTREAM = "application/vnd.amazon.eventstream"

# exception names (frames' :exception-type, or x-amzn-ErrorType) → HTTP status
_EXCEPTION_STATUS = {
    "throttling": 429,
    "servicequotaexceeded": 429,
    "modelnotready": 429,
    "modeltimeout": 408,
    "serviceunavailable": 503,
    "validation": 400,
    "accessdenied": 403,
    "unrecognizedclient": 403,
    "resourcenotfound": 404,
    "internalserver": 500,
    "modelstreamerror": 500,
    "modelerror": 500,
}


def exception_status(name: str) -> int:
    """``throttlingException`` → 429, ``ValidationException:http://…`` → 400, unknown → 500."""
    key = name.split(":", 1)[0].strip().lower().removesuffix("exception")
    return _EXCEPTION_STATUS.get(key, 500)


# the betas AWS documents for Anthropic models on Bedrock (plus Claude Code's own, which Bedrock
# takes): anything else makes Bedrock refuse the whole request
BEDROCK_BETAS = frozenset({
    "claude-code-20250219", "computer-use-2024-10-22", "computer-use-2025-01-24", "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14", "output-128k-2025-02-19", "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07", "context-management-2025-06-27", "effort-2025-11-24", "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
})


def bedrock_betas(header: str | None) -> list[str]:
    """The ``anthropic-beta`` header's values that Bedrock accepts, in their order."""
    if not header:
        return []
    return [b for b in (v.strip() for v in header.split(",")) if b in BEDROCK_BETAS]


def bedrock_body(body: dict[str, Any], betas: list[str], limit: int | None) -> dict[str, Any]:
    # thinking blocks Claude did not sign would be refused (400 "Invalid signature")
    body = for_anthropic_format(body, CLAUDE)
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = BEDROCK_VERSION
    if betas:
        out["anthropic_beta"] = betas
    undefer_tools(out, betas)
    clamp_output(out, limit)
    return out


class BedrockBackend(Backend):
    kind = "bedrock"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.aws = AwsCredentials(self.config.id, self.config.profile) if self.config.auth == "aws" else None
        self.no_betas: set[str] = set()  # models that refused even the documented betas

    # ------------------------------------------------------------------ requests

    def model_url(self, model: str, action: str) -> str:
        """The runtime URL for ``model``: the id is one path segment ("/" escaped), and an id that
        is no Bedrock model id ("." or "..", which would climb out of /model/, over Bedrock's
        2048 characters, or holding control characters) is a 400 before anything is sent."""
        if model in (".", "..") or not 0 < len(model) <= MAX_MODEL_ID or not model.isprintable():
            shown = model if len(model) <= 80 else model[:80] + "…"
            raise ApiError(400, "invalid_request_error",
                               f"model: {shown!r} is not a Bedrock model id. Send a model id or inference "
                               f"profile ARN of at most {MAX_MODEL_ID} printable characters, e.g. "
                               '"us.anthropic.claude-sonnet-4-5-20250929-v1:0".')
        return f"{self.config.base_url}/model/{quote(model, safe=':')}/{action}"

    async def _open(self, url: str, body: bytes, accept: str) -> httpx.Response:
        headers = {"content-type": "application/json", "accept": accept, "accept-encoding": "identity"}
        headers.update(self.extra_headers())
        if self.aws is not None:
            creds = await self.aws.frozen()
            signed = self._sign(creds, url, body, headers)
            return await self.open(self.post(url, body, signed))

        def build(credential: str | None) -> httpx.Request:
            h = dict(headers)
            if credential:
                h["authorization"] = f"Bearer {credential}"
            return self.post(url, body, h)

        return await self.send(build)

    def _sign(self, creds: Any, url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> dict[str, str]:
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(creds, "bedrock", self.config.region or "us-east-1").add_auth(req)
        return dict(req.headers.items())

    async def _raise_for_status(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        raw = await read_whole(resp, self.who)
        _t, msg = upstream_error_message(raw, f"HTTP {resp.status_code} from Bedrock")
        status = resp.status_code
        retry = [(b"retry-after", v.encode()) for k, v in resp.headers.items() if k.lower() == "retry-after"]
        raise ApiError(status, error_type_for_status(status), _with_hint(self.config.id, status, msg),
                           headers=retry)

    # ------------------------------------------------------------------ model list

    def control_url(self) -> str:
        """The control plane (``bedrock.{region}``) beside the runtime; a base_url written in the
        config (a VPC endpoint, a test) serves both."""
        if self.config.base_url == self.config.default_base_url:
            return f"https://bedrock.{self.config.region}.amazonaws.com"
        return self.config.base_url

    async def _get(self, url: str) -> Any:
        headers = {"accept": "application/json", "accept-encoding": "identity"}
        if self.aws is not None:
            headers = self._sign(await self.aws.frozen(), url, b"", headers, method="GET")
        else:
            credential = await self.credential()
            if credential:
                headers["authorization"] = f"Bearer {credential}"
        request = httpx.Request("GET", url, headers=headers, extensions={"timeout": self._timeout})
        raw = await self.read_ok(await self.open(request))
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(502, "api_error", "Bedrock answered the model list with something that is not JSON.") \
                from None

    async def list_models(self) -> list[str]:
        """Anthropic models this account can call: inference profiles (``us.anthropic.…``, what
        newer models need) first, then foundation models that take on-demand calls."""
        base = self.control_url()
        profiles = await self._get(f"{base}/inference-profiles?maxResults=1000")
        found = await self._get(f"{base}/foundation-models?byProvider=Anthropic")
        out = [p.get("inferenceProfileId") for p in profiles.get("inferenceProfileSummaries") or []
               if isinstance(p, dict) and "anthropic" in str(p.get("inferenceProfileId", ""))]
        for m in found.get("modelSummaries") or []:
            if not isinstance(m, dict) or str(m.get("providerName", "")).lower() != "anthropic":
                continue
            if "ON_DEMAND" in (m.get("inferenceTypesSupported") or ["ON_DEMAND"]):
                out.append(m.get("modelId"))
        return list(dict.fromkeys(x for x in out if isinstance(x, str) and x))

    # ------------------------------------------------------------------ /v1/messages

    async def _invoke(self, ex: Exchange, action: str, accept: str, limit: int | None) -> httpx.Response:
        """Open ``/model/{id}/{action}`` for this request; again without betas where the model
        refuses the ones sent (nothing has reached the client yet)."""
        model = ex.route.model
        url = self.model_url(model, action)
        betas = [] if model in self.no_betas else bedrock_betas(ex.incoming.anthropic_beta)
        resp = await self._open(url, orjson.dumps(bedrock_body(ex.incoming.body, betas, limit)), accept)
        if betas and await refused_betas(resp):
            await resp.aclose()
            log.info('backend "%s": %s refused the betas %s; sending without betas from now on',
                     self.config.id, model, ",".join(betas))
            self.no_betas.add(model)
            resp = await self._open(url, orjson.dumps(bedrock_body(ex.incoming.body, [], limit)), accept)
        return resp

    async def messages(self, ex: Exchange) -> None:
        limit = limit_for(self.config, ex.route.model)
        if not ex.stream:
            raw = await self.read_ok(await self._invoke(ex, "invoke", "application/json", limit))
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ApiError(502, "api_error", f'The backend "{self.config.id}" answered with something '
                                   "that is not JSON.") from None
            if isinstance(msg, dict):
                ex.observe_message(msg)
                note_message(CLAUDE, msg)
            await ex.answer(200, JSON_HEADERS, raw)
            return
        resp = await self._invoke(ex, "invoke-with-response-stream", EVENTSTREAM, limit)
        try:
            await self._raise_for_status(resp)
            await self._relay_eventstream(ex, resp)
        finally:
            await resp.aclose()

    async def _relay_eventstream(self, ex: Exchange, resp: httpx.Response) -> None:
        decoder = EventStreamBuffer()
        tap = AnthropicTap(ex, CLAUDE)
        try:
            async for chunk in resp.aiter_raw():
                decoder.add_data(chunk)
                out: list[bytes] = []
                for message in decoder:
                    headers = message.headers
                    mtype = headers.get(":message-type")
                    if mtype == "event":
                        event = _event_sse(message.payload)
                        if event is not None:
                            name, data = event
                            tap.observe(name, data)
                            out.append(b"event: " + name + b"\ndata: " + data + b"\n\n")
                        continue
                    # an exception frame (or a generic AWS error frame): the stream ends here
                    if out:
                        await self._write(ex, b"".join(out))
                        out = []
                    exc_name = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServer")
                    _t, text = upstream_error_message(message.payload, str(headers.get(":error-message") or exc_name))
                    status = exception_status(exc_name)
                    etype = error_type_for_status(status)
                    text = _with_hint(self.config.id, status, text)
                    if not ex.started:
                        raise ApiError(status, etype, text)
                    ex.fail(etype, text)
                    await ex.write(encode("error", {"type": "error", "error": {"type": etype, "message": text}}))
                    await ex.end()
                    return
                if out:
                    await self._write(ex, b"".join(out))
        except httpx.HTTPError as exc:
            await self._broken(ex, f'The connection to the backend "{self.config.id}" broke mid-stream '
                                   f"({type(exc).__name__}: {exc or 'closed'}). The answer is incomplete; retry the request.")
            return
        except ParserError as exc:
            await self._broken(ex, f'The backend "{self.config.id}" sent a damaged event-stream frame ({exc}). '
                                   "The answer is incomplete; retry the request.")
            return
        if not ex.started:
            await ex.start(200, SSE_HEADERS)
        if not tap.saw_stop and not tap.saw_error:
            msg = (f'The backend "{self.config.id}" ended its stream before the message was complete. '
                   "The answer is incomplete; retry the request.")
            ex.fail("api_error", msg)
            await ex.write(encode("error", {"type": "error", "error": {"type": "api_error", "message": msg}}))
        await ex.end()

    async def _write(self, ex: Exchange, data: bytes) -> None:
        if not ex.started:
            await ex.start(200, SSE_HEADERS)
        await ex.write(data)

    async def _broken(self, ex: Exchange, msg: str) -> None:
        if not ex.started:
            raise ApiError(502, "api_error", msg)
        ex.fail("api_error", msg)
        await ex.write(encode("error", {"type": "error", "error": {"type": "api_error", "message": msg}}))
        await ex.end()

    # ------------------------------------------------------------------ count_tokens

    async def count_tokens(self, ex: Exchange) -> None:
        """Bedrock's CountTokens (``POST /model/{id}/count-tokens``, the InvokeModel body in
        base64); models and inference profiles that cannot count get an estimate."""
        model = ex.route.model
        inner = bedrock_body(ex.incoming.body, [] if model in self.no_betas else
                             bedrock_betas(ex.incoming.anthropic_beta), None)
        inner.setdefault("max_tokens", 1024)  # InvokeModel requires it; it does not change the count
        payload = {"input": {"invokeModel": {"body": base64.b64encode(orjson.dumps(inner)).decode()}}}
        got = await self.counted(self._open(self.model_url(ex.route.model, "count-tokens"), orjson.dumps(payload),
                                            "application/json"))
        if got is not None:
            status, raw = got
            if status < 400:
                try:
                    n = orjson.loads(raw)["inputTokens"]
                    await ex.answer(200, JSON_HEADERS, orjson.dumps({"input_tokens": int(n)}))
                    return
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.info("bedrock count-tokens answered %r; estimating instead", raw[:200])
            elif status in (401, 403):
                _t, msg = upstream_error_message(raw, f"HTTP {status} from Bedrock")
                raise ApiError(status, error_type_for_status(status), _with_hint(self.config.id, status, msg))
        await self.answer_estimate(ex)


def _event_sse(payload: bytes) -> tuple[bytes, bytes] | None:
    """(event name, event JSON) from an event frame's ``{"bytes": base64}`` payload."""
    try:
        data = base64.b64decode(orjson.loads(payload)["bytes"])
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
        return None
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        name = data[9:end]
    else:
        try:
            obj = orjson.loads(data)
            name = str(obj["type"]).encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
    if b"\n" in data or b"\r" in data:  # pretty-printed JSON: one SSE data line needs it compact
        data = orjson.dumps(orjson.loads(data))
    return name, data


def _with_hint(backend_id: str, status: int, msg: str) -> str:
    if status == 403:
        return (f"{msg} (Bedrock refused the credentials of the backend \"{backend_id}\": check the region, the "
                "model access granted in the Bedrock console, and the IAM permission bedrock:InvokeModel*.)")
    return msg
