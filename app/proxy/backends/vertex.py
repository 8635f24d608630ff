"""Claude on Google Vertex AI (docs/protocol.md §4).

``POST {endpoint}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:streamRawPredict``
(``:rawPredict`` unstreamed; region ``global`` → host ``aiplatform.googleapis.com``). The body
is the Anthropic one less ``model``, plus ``"anthropic_version": "vertex-2023-10-16"``; the
answer is ordinary Anthropic SSE, so it goes through the passthrough's relay and tap unchanged.
Auth: Google application-default credentials (``auth = "google"``), renewed before they expire,
or any bearer token (``command:``, ``env:``, ``keyring``).

The ``anthropic-beta`` header goes along; a model that answers 400 "invalid beta flag" (Vertex,
like Bedrock, refuses betas it does not know) gets the request again without it, and from then
on never gets one.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from app.catalog.output_limits import limit_for
from app.proxy.backends.anthropic import AnthropicBackend
from app.proxy.backends.base import clamp_output, refused_betas, undefer_tools
from app.proxy.credentials import GoogleToken, TokenSource
from app.proxy.exchange import Exchange
from app.proxy.thinking import CLAUDE, for_anthropic_format

VERTEX_VERSION = "vertex-2023-10-16"
log = logging.getLogger("patchbay.vertex")


class VertexBackend(AnthropicBackend):
    kind = "vertex"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.no_betas: set[str] = set()  # models that refused the client's betas

    def token_source(self) -> TokenSource | None:
        if self.config.auth == "google":
            return GoogleToken(self.config.id)
        return super().token_source()

    def _prefix(self) -> str:
        c = self.config
        return f"{c.base_url}/v1/projects/{c.project}/locations/{c.region}/publishers/anthropic/models"

    def _headers(self, ex: Exchange, credential: str | None) -> dict[str, str]:
        h = {"content-type": "application/json", "accept-encoding": "identity"}
        if ex.incoming.anthropic_beta and ex.route.model not in self.no_betas:
            h["anthropic-beta"] = ex.incoming.anthropic_beta
        if credential:
            h["authorization"] = f"Bearer {credential}"
        h.update(self.extra_headers())
        return h

    def _vertex_body(self, ex: Exchange, *, keep_model: bool) -> bytes:
        body: dict[str, Any] = dict(for_anthropic_format(ex.incoming.body, CLAUDE))
        if keep_model:
            body["model"] = ex.route.model
        else:
            body.pop("model", None)
        body["anthropic_version"] = VERTEX_VERSION
        beta = ex.incoming.anthropic_beta if ex.route.model not in self.no_betas else None
        undefer_tools(body, [b.strip() for b in beta.split(",")] if beta else [])
        clamp_output(body, limit_for(self.config, ex.route.model))
        return orjson.dumps(body)

    def messages_request(self, ex: Exchange, credential: str | None) -> httpx.Request:
        verb = "streamRawPredict" if ex.stream else "rawPredict"
        url = f"{self._prefix()}/{quote(ex.route.model, safe='@')}:{verb}"
        return self.post(url, self._vertex_body(ex, keep_model=False), self._headers(ex, credential))

    def count_request(self, ex: Exchange, credential: str | None) -> httpx.Request:
        # Vertex counts with the model named in the body (its count-tokens endpoint)
        return self.post(f"{self._prefix()}/count-tokens:rawPredict", self._vertex_body(ex, keep_model=True),
                         self._headers(ex, credential))

    async def messages(self, ex: Exchange) -> None:
        resp = await self.send(lambda credential: self.messages_request(ex, credential))
        if ex.incoming.anthropic_beta and ex.route.model not in self.no_betas and await refused_betas(resp):
            await resp.aclose()
            log.info('backend "%s": %s refused the betas; sending without them from now on', self.config.id,
                     ex.route.model)
            self.no_betas.add(ex.route.model)
            resp = await self.send(lambda credential: self.messages_request(ex, credential))
        await self.relay(ex, resp)
