"""One backend object for one ``[[backends]]`` entry: the wire kind picks the module (one module per kind).

The gateway's runtime (``server.py``) and the Test / Fetch models probe (``probe.py``) both build backends here.
"""

from __future__ import annotations

from typing import Any

from app.config import BackendConfig
from app.proxy.backends.base import Backend, KeyLookup


def make_backend(config: BackendConfig, settings: Any, keys: KeyLookup) -> Backend:
    if config.kind == "anthropic":
        from app.proxy.backends.anthropic import AnthropicBackend

        return AnthropicBackend(config, settings, keys=keys)
    if config.kind == "openai":
        from app.proxy.backends.openai import OpenAIBackend

        return OpenAIBackend(config, settings, keys=keys)
    if config.kind == "bedrock":
        from app.proxy.backends.bedrock import BedrockBackend

        return BedrockBackend(config, settings, keys=keys)
    if config.kind == "vertex":
        from app.proxy.backends.vertex import VertexBackend

        return VertexBackend(config, settings, keys=keys)
    raise ValueError(f"unknown backend kind {config.kind!r}")
