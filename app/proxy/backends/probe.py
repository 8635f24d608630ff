"""Asking a backend about itself, outside the gateway's traffic: the "Test" probe (one tiny
real request through the same adapter the gateway uses) and the list of its models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from app.config import DEFAULT_OLLAMA_URL, BackendConfig, GatewaySettings
from app.errors import ApiError
from app.events import EventHub
from app.proxy.backends.base import KeyLookup, join_url
from app.proxy.backends.factory import make_backend
from app.proxy.exchange import Exchange, Incoming
from app.proxy.routing import Route


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class

    ok: bool
    ttft_ms: float | None
    status: int
    message: str
    model: str | None = None


def _host_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "", None
    if host in ("localhost", "127.0.0.1", "::1", "[::1]"):
        host = "loopback"
    return host, port


def is_ollama_url(base_url: str, ollama_url: str = DEFAULT_OLLAMA_URL) -> bool:
    """True when a backend's base URL points at the Ollama server (with or without ``/v1``)."""
    return _host_port(base_url) == _host_port(ollama_url) or _host_port(base_url)[1] == 11434


async def test_backend(backend: BackendConfig, gateway: GatewaySettings, keys: KeyLookup,
                       model: str | None = None) -> TestResult:
    """Send a tiny real request through the same adapter the gateway uses."""
    model = model or (backend.models[0] if backend.models else "claude-haiku-4-5")
    if backend.auth == "client":
        return TestResult(False, None, 0, "This backend uses the caller's own key (auth = \"client\"), so "
                          "Patchbay has no key to test with. Send a request from Claude Code instead.")
    adapter = make_backend(backend, gateway, keys)
    body = {"model": model, "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "Reply with the word OK."}]}
    out: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        out.append(msg)

    inc = Incoming(body=body, raw=orjson.dumps(body), api_key=None, bearer=None, authorization=None,
                   anthropic_version=None, anthropic_beta=None, user_agent="patchbay-test", session_id=None,
                   agent_id=None, api_key_is_token=False, bearer_is_token=False)
    ex = Exchange("test", Route(backend.id, model, "test", model), inc, True, send, EventHub())
    try:
        await adapter.messages(ex)
    except ApiError as exc:
        return TestResult(False, None, exc.status, exc.message, model)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        return TestResult(False, None, 0, f"{type(exc).__name__}: {exc}", model)
    finally:
        await adapter.aclose()
    if ex.error_type:
        return TestResult(False, None, ex.status, ex.error_message or ex.error_type, model)
    ttft = None if ex.ttft is None else ex.ttft * 1000
    return TestResult(True, ttft, ex.status, f"The model {ex.served_model} answered.", ex.served_model)


async def list_models(backend: BackendConfig, gateway: GatewaySettings, keys: KeyLookup,
                      ollama_url: str = DEFAULT_OLLAMA_URL) -> list[str]:
    """Ask the backend which models it has: the OpenAI or Anthropic list, Ollama's /api/tags,
    Bedrock's Anthropic foundation models and inference profiles. Vertex AI has no such list
    for a project: its model ids are typed in. Raises RuntimeError with a sentence."""
    from app.proxy.backends.bedrock import BedrockBackend

    if backend.kind == "vertex":
        raise RuntimeError("Vertex AI does not list the Claude models a project may use. Type the model ids "
                           "from Model Garden, one per line (e.g. claude-sonnet-4-5@20250929).")
    adapter = make_backend(backend, gateway, keys)
    try:
        if isinstance(adapter, BedrockBackend):
            try:
                return await adapter.list_models()
            except ApiError as exc:
                raise RuntimeError(f'Could not list the models of "{backend.id}": {exc.message}') from None
        try:
            key = await adapter.credential()
        except ApiError as exc:
            if backend.token_command:  # the command failed: that is the news
                raise RuntimeError(exc.message) from None
            key = None  # no key stored: some servers list their models anyway
    finally:
        await adapter.aclose()
    headers: dict[str, str] = {"anthropic-version": "2023-06-01"}
    if key:
        if backend.kind == "openai" or backend.token_command:
            headers["authorization"] = f"Bearer {key}"
        if backend.kind != "openai":
            headers["x-api-key"] = key
    urls = [backend.base_url + "/models"] if backend.kind == "openai" else [
        join_url(backend.base_url, "/v1/models"), backend.base_url.removesuffix("/v1") + "/api/tags"]
    if is_ollama_url(backend.base_url, ollama_url):  # what is installed now, by Ollama's own name
        urls.insert(0, backend.base_url.removesuffix("/").removesuffix("/v1") + "/api/tags")
    last_error = "no answer"
    async with httpx.AsyncClient(timeout=10.0, trust_env=not backend.is_local) as client:
        for url in urls:
            try:
                resp = await client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code >= 400:
                last_error = f"HTTP {resp.status_code}: {resp.text[:300]}"
                continue
            try:
                data = resp.json()
            except ValueError:
                last_error = "the answer was not JSON"
                continue
            names = [m.get("id") or m.get("name") for m in (data.get("data") or data.get("models") or [])
                     if isinstance(m, dict)]
            return sorted({n for n in names if isinstance(n, str) and n})
    raise RuntimeError(f'Could not list the models of "{backend.id}": {last_error}.')
