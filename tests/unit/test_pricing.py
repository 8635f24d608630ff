from __future__ import annotations

import calendar
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.catalog.prices import (
    CACHE_READ_FACTOR,
    CACHE_WRITE_FACTOR,
    PriceBook,
    PriceTable,
    canonical_model,
)
from app.config import parse_config
from app.events import Usage
from tests.config_text import ANTHROPIC_CLIENT, OLLAMA, OPENROUTER

BASE = ANTHROPIC_CLIENT + OLLAMA + OPENROUTER + """
[[backends]]
id = "deepseek"
kind = "openai"
base_url = "https://api.deepseek.com"
auth = "env:DEEPSEEK_API_KEY"

[[backends]]
id = "corp"
kind = "anthropic"
base_url = "https://llm-gateway.corp.example.com"
auth = "env:CORP_TOKEN"

[[backends]]
id = "tailnet-vllm"
kind = "openai"
base_url = "http://gpu-box.example.net:8000/v1"
auth = "none"
local = true
models = ["qwen3-coder"]

[[backends]]
id = "groq"
kind = "openai"
base_url = "https://api.groq.com/openai/v1"
auth = "env:GROQ_API_KEY"
"""


def book(extra: str = "") -> PriceBook:
    return PriceBook.load(parse_config(BASE + extra))


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return float(calendar.timegm((y, mo, d, h, mi, 0)))


def test_shipped_table_entries_all_have_a_source_and_a_date() -> None:
    table = PriceTable.load()
    assert len(table.models) > 40
    seen = set()
    for provider, model, _aliases, price in table.models:
        assert (provider, model.lower()) not in seen, f"{provider}/{model} listed twice"
        seen.add((provider, model.lower()))
        assert price.source.strip(), model
        assert re.fullmatch(r"20\d\d-\d\d-\d\d", price.as_of), model
        assert price.input >= 0 and price.output >= price.input * 0.5, model
    names = {m for _p, m, _a, _x in table.models}
    # the Claude Code model names from docs/protocol.md
    for m in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-4-8", "claude-sonnet-5",
              "claude-haiku-4-5"):
        assert m in names


def test_cost_counts_every_kind_of_token_including_cache() -> None:
    pb = book()
    u = Usage(input_tokens=1000, output_tokens=200, cache_creation_input_tokens=300, cache_read_input_tokens=4000)
    # Sonnet 4.5: $3 in, $15 out, $3.75 cache write, $0.30 cache read per MTok
    assert pb.cost("anthropic", "claude-sonnet-4-5-20250929", u) == pytest.approx(
        (1000 * 3 + 200 * 15 + 300 * 3.75 + 4000 * 0.30) / 1e6)
    # Opus 5.5 reads its cache at 0.05 x input, which the table states explicitly
    assert pb.cost("anthropic", "claude-opus-5-5", Usage(0, 0, 0, 1_000_000)) == pytest.approx(0.20)


def test_missing_cache_figures_default_to_125_and_10_percent_of_input() -> None:
    pb = book('[[prices]]\nmodel = "my-model"\ninput = 2.0\noutput = 8.0\n')
    p = pb.price_for("corp", "my-model")
    assert p is not None and p.cache_write is None and p.cache_read is None
    r = p.rates()
    assert r.cache_write == pytest.approx(2.0 * CACHE_WRITE_FACTOR)
    assert r.cache_read == pytest.approx(2.0 * CACHE_READ_FACTOR)
    assert pb.cost("corp", "my-model", Usage(0, 0, 1_000_000, 1_000_000)) == pytest.approx(2.5 + 0.2)


def test_user_prices_override_the_table_and_backend_specific_ones_win() -> None:
    pb = book(
        '[[prices]]\nmodel = "claude-sonnet-4-5"\ninput = 1.0\noutput = 2.0\ncache_write = 1.0\ncache_read = 0.5\n'
        '[[prices]]\nmodel = "claude-sonnet-4-5"\ninput = 9.0\noutput = 9.0\nbackend = "corp"\n'
    )
    general = pb.price_for("anthropic", "claude-sonnet-4-5-20250929")
    assert general is not None and (general.input, general.output) == (1.0, 2.0)
    assert "config" in general.source
    corp = pb.price_for("corp", "claude-sonnet-4-5")
    assert corp is not None and corp.input == 9.0
    # a price for another backend does not leak
    other = book('[[prices]]\nmodel = "claude-sonnet-4-5"\ninput = 9.0\noutput = 9.0\nbackend = "corp"\n')
    p = other.price_for("anthropic", "claude-sonnet-4-5")
    assert p is not None and p.input == 3.0


@pytest.mark.parametrize("backend,model,expected_input", [
    ("anthropic", "claude-sonnet-4-5-20250929", 3.0),  # date suffix
    ("anthropic", "claude-haiku-4-5-20251001", 1.0),
    ("anthropic", "claude-opus-5-5[1m]", 4.0),  # Claude Code's 1M-context spelling
    ("anthropic", "CLAUDE-SONNET-5", 2.0),  # case
    ("corp", "claude-sonnet-4-5@20250929", 3.0),  # Vertex spelling, served by a company gateway
    ("corp", "us.anthropic.claude-opus-4-1-20250805-v1:0", 15.0),  # Bedrock inference profile
    ("openrouter", "anthropic/claude-sonnet-4.5", 3.0),  # vendor prefix and dots
    ("openrouter", "openai/gpt-4.1-2025-04-14", 2.0),
    ("openrouter", "deepseek/deepseek-v4-pro", 1.32),
    ("deepseek", "deepseek-v4-flash", 0.3),  # a listed alias
    ("groq", "openai/gpt-oss-120b", 0.15),  # the provider's own entry
])
def test_model_ids_are_matched_through_aliases_and_spellings(backend: str, model: str, expected_input: float) -> None:
    p = book().price_for(backend, model)
    assert p is not None, model
    assert p.input == pytest.approx(expected_input)


def test_a_dated_snapshot_with_its_own_price_keeps_it() -> None:
    pb = book()
    assert pb.price_for("openrouter", "openai/gpt-4o-2024-05-13").input == 5.0  # type: ignore[union-attr]
    assert pb.price_for("openrouter", "openai/gpt-4o-2024-08-06").input == 2.5  # type: ignore[union-attr]


def test_canonical_model() -> None:
    assert canonical_model("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == "claude-sonnet-4-5"
    assert canonical_model("anthropic/claude-3.5-sonnet") == "claude-3-5-sonnet"
    assert canonical_model("claude-3-5-sonnet-latest") == "claude-3-5-sonnet"
    assert canonical_model("gpt-4.1-2025-04-14") == "gpt-4-1"
    assert canonical_model("deepseek-v3") == "deepseek-v3"  # not a Bedrock id: "-v3" stays
    assert canonical_model("qwen3-coder:30b") == "qwen3-coder:30b"  # an Ollama tag stays


def test_local_backends_are_free_unless_the_user_prices_them() -> None:
    pb = book()
    u = Usage(5000, 5000, 5000, 5000)
    assert pb.cost("ollama", "qwen3-coder:30b", u) == 0.0
    assert pb.cost("ollama", "claude-sonnet-4-5", u) == 0.0  # the model name does not matter
    assert pb.cost("tailnet-vllm", "qwen3-coder", u) == 0.0  # local = true on a non-loopback URL
    priced = book('[[prices]]\nmodel = "qwen3-coder:30b"\ninput = 0.1\noutput = 0.2\nbackend = "ollama"\n')
    assert priced.cost("ollama", "qwen3-coder:30b", Usage(1_000_000, 1_000_000)) == pytest.approx(0.3)


def test_an_unknown_model_is_unpriced_never_zero() -> None:
    pb = book()
    assert pb.price_for("openrouter", "someone/new-model") is None
    assert pb.cost("openrouter", "someone/new-model", Usage(100, 100)) is None
    assert pb.cost("corp", "mystery-model", Usage(100, 100)) is None
    assert pb.cost("no-such-backend", "mystery-model", Usage(1, 1)) is None
    # a local = false override on a loopback backend is not free either
    pb2 = PriceBook.load(parse_config(
        '[[backends]]\nid = "tunnel"\nkind = "openai"\nbase_url = "http://127.0.0.1:9000/v1"\nlocal = false\n'))
    assert pb2.cost("tunnel", "mystery-model", Usage(1, 1)) is None


def test_openrouter_free_variants_cost_nothing() -> None:
    pb = book()
    assert pb.cost("openrouter", "qwen/qwen3-coder:free", Usage(10**6, 10**6)) == 0.0


def test_long_prompts_use_the_long_prompt_rates() -> None:
    pb = book()
    short = Usage(50_000, 1000, 0, 40_000)
    long = Usage(50_000, 1000, 0, 60_000)  # prompt = 110k > 100k
    assert pb.cost("anthropic", "claude-haiku-5-5", short) == pytest.approx(
        (50_000 * 0.1 + 1000 * 0.5 + 40_000 * 0.01) / 1e6)
    assert pb.cost("anthropic", "claude-haiku-5-5", long) == pytest.approx(
        (50_000 * 0.5 + 1000 * 2.5 + 60_000 * 0.05) / 1e6)


def test_deepseek_charges_half_off_peak() -> None:
    pb = book()
    u = Usage(1_000_000, 1_000_000, 0, 1_000_000)
    peak = 0.3 + 1.2 + 0.006
    wednesday = (2026, 11, 25)
    assert pb.cost("deepseek", "deepseek-flash", u, at=utc(*wednesday, 2, 30)) == pytest.approx(peak)
    assert pb.cost("deepseek", "deepseek-flash", u, at=utc(*wednesday, 7, 0)) == pytest.approx(peak)
    assert pb.cost("deepseek", "deepseek-flash", u, at=utc(*wednesday, 4, 0)) == pytest.approx(peak / 2)
    assert pb.cost("deepseek", "deepseek-flash", u, at=utc(*wednesday, 12, 0)) == pytest.approx(peak / 2)
    assert pb.cost("deepseek", "deepseek-flash", u, at=utc(2026, 11, 28, 2, 30)) == pytest.approx(peak / 2)  # Sat
    assert pb.cost("deepseek", "deepseek-flash", u) == pytest.approx(peak)  # time unknown: upper bound
    # the schedule is DeepSeek's own: the same model through OpenRouter is not discounted at night
    assert pb.cost("openrouter", "deepseek/deepseek-flash", u, at=utc(*wednesday, 12, 0)) == pytest.approx(peak)


def test_provider_is_found_by_host_then_by_id() -> None:
    pb = book()
    assert pb.provider_of("openrouter") == "openrouter"
    assert pb.provider_of("anthropic") == "anthropic"
    assert pb.provider_of("corp") is None
    assert pb.provider_of("groq-fast") == "groq"  # an unknown id named after a provider


@settings(max_examples=60, deadline=None)
@given(a=st.tuples(*[st.integers(0, 200_000)] * 4), b=st.tuples(*[st.integers(0, 200_000)] * 4))
def test_cost_is_additive_and_never_negative(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> None:
    pb = book()
    ua, ub = Usage(*a), Usage(*b)
    both = Usage(*(x + y for x, y in zip(a, b, strict=False)))
    ca = pb.cost("anthropic", "claude-opus-4-8", ua)
    cb = pb.cost("anthropic", "claude-opus-4-8", ub)
    cab = pb.cost("anthropic", "claude-opus-4-8", both)
    assert ca is not None and cb is not None and cab is not None
    assert ca >= 0 and cb >= 0
    assert cab == pytest.approx(ca + cb, rel=1e-9, abs=1e-12)
