"""max_tokens 128000 (what Claude Code asks for) is clamped to the model's known output limit
where the model table knows it, and left as it is where the limit allows it (Anthropic
passthrough stays byte-exact) or nobody knows the limit (patchbay check says which)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.__main__ import main
from app.catalog.output_limits import output_limit, unknown_models
from app.config import parse_config
from tests.fakes import AnthropicStream, FakeUpstream, OpenAIStream, anthropic_text_events, openai_text_chunks
from tests.gateway.conftest import TOKEN, config_text

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(start_gateway):  # type: ignore[no-untyped-def]
    with FakeUpstream(wire="anthropic") as anth, FakeUpstream(wire="openai") as oai:
        g = start_gateway(config_text([
            {"id": "anth", "kind": "anthropic", "base_url": anth.url, "auth": "none"},
            {"id": "ds", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none",
             "models": ["deepseek-chat", "mystery-model"]},
            {"id": "capped", "kind": "openai", "base_url": oai.url + "/v1", "auth": "none",
             "models": ["deepseek-chat"], "max_output_tokens": 4000},
        ], active="anth"))
        yield g, anth, oai


def post(g, model: str, max_tokens: int = 128000, **extra: object) -> bytes:  # type: ignore[no-untyped-def]
    raw = orjson.dumps({"model": model, "max_tokens": max_tokens, "messages": USER, "stream": True, **extra})
    r = g.http().post("/v1/messages", content=raw, headers={"x-api-key": TOKEN, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    return raw


def test_openai_backends_clamp_to_the_models_known_limit(gw):
    g, _anth, oai = gw
    for _ in range(3):
        oai.enqueue(OpenAIStream(openai_text_chunks("ok")))
    post(g, "ds,deepseek-chat")
    post(g, "ds,mystery-model")
    post(g, "capped,deepseek-chat")
    sent = [r.json["max_tokens"] for r in oai.requests_to("/chat/completions")]
    assert sent == [8192, 128000, 4000]  # known limit; unknown: as asked; the user's own setting wins


def test_anthropic_passthrough_is_untouched_within_the_limit_and_clamped_above_it(gw):
    g, anth, _oai = gw
    for _ in range(3):
        anth.enqueue(AnthropicStream(anthropic_text_events("ok")))
    raw = post(g, "claude-opus-5-5")  # the API takes 128000 for this model
    assert anth.requests_to("/v1/messages")[-1].body == raw
    post(g, "claude-haiku-4-5-20251001", thinking={"type": "enabled", "budget_tokens": 100000})
    sent = anth.requests_to("/v1/messages")[-1].json
    assert sent["max_tokens"] == 64000 and sent["thinking"]["budget_tokens"] < 64000
    raw = post(g, "qwen3-coder:30b")  # an Ollama model behind kind anthropic: nobody knows its limit
    assert anth.requests_to("/v1/messages")[-1].body == raw


def test_the_table_reads_ids_the_way_the_price_table_does():
    assert output_limit("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == 64000  # Bedrock
    assert output_limit("claude-sonnet-4-5@20250929") == 64000  # Vertex
    assert output_limit("anthropic/claude-opus-4.6") == 128000  # OpenRouter spelling
    assert output_limit("gpt-4o-2024-05-13") == 4096 and output_limit("gpt-4o") == 16384
    assert output_limit("qwen3-coder:30b") is None


def test_patchbay_check_names_the_models_with_no_known_limit(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("PATCHBAY_HOME", str(tmp_path / "home"))
    text = config_text([
        {"id": "ds", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "auth": "none",
         "models": ["deepseek-chat", "mystery-model"]},
        {"id": "ol", "kind": "anthropic", "base_url": "http://127.0.0.1:11434", "auth": "none",
         "models": ["qwen3-coder:30b"], "max_output_tokens": 8192},
    ], active="ds")
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert unknown_models(parse_config(text).backends) == [("ds", "mystery-model")]
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{path}: OK (2 backends, active: ds)"
    assert "No known output limit for ds,mystery-model:" in out and "max_output_tokens" in out
    assert "deepseek-chat" not in out.split("\n", 1)[1] and "qwen3" not in out
