"""The most output tokens each known model may be asked for (``max_tokens``).

Claude Code asks for ``max_tokens`` 128000 on its main turns and titles; a provider whose model
allows fewer refuses the request ("max_tokens is too large") unless Patchbay lowers it. The
gateway clamps ``max_tokens`` to :func:`limit_for`: the backend's own ``max_output_tokens`` where
the user set one, else the model's limit from this table. A model the table does not know is
sent as it is, and ``patchbay check`` and the Backends page say which configured models those are.

Figures from the providers' model pages (stored copies read 2026-11-30): Anthropic's models
overview and per-model pages (platform.claude.com/docs/en/models/…), DeepSeek's "Models &
Pricing" (api-docs.deepseek.com/quick_start/pricing), OpenAI's model pages
(platform.openai.com/docs/models/…). Model ids are matched as the price table matches them
(:func:`app.catalog.prices.canonical_model`: no date suffix, vendor prefix or Bedrock wrapping).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from app.config.model_ids import canonical_model

if TYPE_CHECKING:
    from app.config import BackendConfig

K = 1000

OUTPUT_LIMITS: dict[str, int] = {
    # Anthropic (also on Bedrock and Vertex, same limits)
    "claude-fable-5-1": 128 * K,
    "claude-fable-5": 128 * K,
    "claude-mythos-5": 128 * K,  # "shares Claude Fable 5's specifications"
    "claude-opus-5-5": 128 * K,
    "claude-opus-5": 128 * K,
    "claude-sonnet-5-5": 128 * K,
    "claude-sonnet-5": 128 * K,
    "claude-haiku-5-5": 128 * K,
    "claude-opus-4-8": 128 * K,
    "claude-opus-4-7": 128 * K,
    "claude-opus-4-6": 128 * K,
    "claude-sonnet-4-6": 128 * K,
    "claude-opus-4-5": 64 * K,
    "claude-sonnet-4-5": 64 * K,
    "claude-haiku-4-5": 64 * K,
    "claude-opus-4-1": 32 * K,
    "claude-opus-4": 32 * K,
    "claude-4-opus": 32 * K,
    "claude-sonnet-4": 64 * K,
    "claude-4-sonnet": 64 * K,
    "claude-3-7-sonnet": 64 * K,  # 128K only with the output-128k beta
    "claude-3-5-sonnet": 8192,
    "claude-3-5-haiku": 8192,
    "claude-3-haiku": 4096,
    "claude-3-opus": 4096,
    # DeepSeek
    "deepseek-chat": 8 * 1024,
    "deepseek-reasoner": 64_000,  # "64K"; the lower reading, so a request is never refused for it
    # OpenAI
    "gpt-5": 128_000,
    "gpt-5-mini": 128_000,
    "gpt-5-nano": 128_000,
    "gpt-4-1": 32_768,
    "gpt-4-1-mini": 32_768,
    "gpt-4-1-nano": 32_768,
    "gpt-4o": 16_384,
    "gpt-4o-2024-05-13": 4096,
    "gpt-4o-mini": 16_384,
    "o3": 100_000,
    "o4-mini": 100_000,
}


@lru_cache(maxsize=1024)
def output_limit(model: str) -> int | None:
    """The model's known output limit, or None where the table does not know the model (kept per
    model id: the table is fixed, and its lookup by canonical id is six regex passes a request)."""
    m = model.strip().lower()
    exact = OUTPUT_LIMITS.get(m)
    if exact is not None:
        return exact
    return OUTPUT_LIMITS.get(canonical_model(model))


def limit_for(backend: BackendConfig, model: str) -> int | None:
    """What ``max_tokens`` is clamped to on ``backend`` for ``model``: the backend's own
    ``max_output_tokens`` where set (the user knows their server), else the model's known limit."""
    return backend.max_output_tokens or output_limit(model)


def unknown_models(backends: list[BackendConfig] | tuple[BackendConfig, ...]) -> list[tuple[str, str]]:
    """(backend id, model) for each configured model whose output limit nobody knows: neither the
    table nor the backend's ``max_output_tokens``. Their ``max_tokens`` goes out unclamped."""
    out: list[tuple[str, str]] = []
    for b in backends:
        if b.max_output_tokens:
            continue
        for m in b.models:
            if output_limit(m) is None:
                out.append((b.id, m))
    return out
