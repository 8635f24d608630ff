"""The whole engine (gateway + ledger + prices + budgets) driven by real requests."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anthropic
import pytest

from app.core import Engine, StartError
from app.events import BudgetAlert
from tests.fakes.chunks import anthropic_text_events, openai_text_chunks
from tests.fakes.upstreams import AnthropicStream, FakeUpstream, OpenAIStream

TOKEN = "pb-engine-token"
USER = [{"role": "user", "content": "hello"}]


def _config(anthropic_url: str, openai_url: str, extra: str = "") -> str:
    return f'''
[gateway]
port = 0

[[backends]]
id = "cloud"
kind = "openai"
base_url = "{openai_url}/v1"
auth = "none"
local = false
models = ["priced-model", "mystery-model"]

[[backends]]
id = "local"
kind = "anthropic"
base_url = "{anthropic_url}"
auth = "none"
models = ["qwen3-coder:30b"]

[active]
backend = "cloud"
model = "priced-model"

[[prices]]
model = "priced-model"
input = 2.0
output = 10.0
cache_write = 2.5
cache_read = 0.2
{extra}
'''


@pytest.fixture
def engine(patchbay_home: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    ups = [FakeUpstream(wire="anthropic").start(), FakeUpstream(wire="openai").start()]
    extra = getattr(request, "param", "")
    patchbay_home.mkdir(parents=True)
    (patchbay_home / "config.toml").write_text(_config(ups[0].url, ups[1].url, extra))
    eng = Engine(gui=True)
    eng.start()
    eng.upstreams = ups  # type: ignore[attr-defined]
    yield eng
    eng.stop()
    for up in ups:
        up.stop()


def _client(eng: Engine, session: str = "s-1") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0,
                               default_headers={"X-Claude-Code-Session-Id": session})


def test_every_request_is_recorded_and_priced_with_cache_tokens(engine: Engine):
    anth, oai = engine.upstreams  # type: ignore[attr-defined]
    oai.enqueue(OpenAIStream(openai_text_chunks("hi", model="priced-model", usage=(1_000_000, 100_000, 400_000))))
    with _client(engine).messages.stream(model="claude-sonnet-5-5", max_tokens=50, messages=USER) as s:
        s.get_final_message()
    anth.enqueue(AnthropicStream(anthropic_text_events("local", model="qwen3-coder:30b", usage=(5000, 70, 0, 0))))
    _client(engine, "s-2").messages.create(model="local,qwen3-coder:30b", max_tokens=50, messages=USER,
                                           stream=True).close()
    oai.enqueue(OpenAIStream(openai_text_chunks("?", model="mystery-model", usage=(10, 1, 0))))
    _client(engine).messages.create(model="cloud,mystery-model", max_tokens=50, messages=USER, stream=True).close()
    time.sleep(0.2)
    assert engine.ledger.flush(5)
    rows = {r.backend + "/" + r.model: r for r in engine.reader.requests(limit=10)}
    assert len(rows) == 3
    cloud = rows["cloud/priced-model"]
    assert (cloud.input_tokens, cloud.cache_read_tokens, cloud.output_tokens) == (600_000, 400_000, 100_000)
    # 0.6 M × $2 + 0.4 M × $0.2 + 0.1 M × $10
    assert cloud.cost_usd == pytest.approx(1.2 + 0.08 + 1.0)
    assert cloud.session_id == "s-1" and cloud.route == "active" and cloud.requested_model == "claude-sonnet-5-5"
    assert cloud.ttft_ms is not None and cloud.status == 200
    local = rows["local/qwen3-coder:30b"]
    assert local.cost_usd == 0.0 and local.route == "explicit" and local.input_tokens == 5000
    mystery = rows["cloud/mystery-model"]
    assert mystery.cost_usd is None and mystery.unpriced and mystery.input_tokens == 10
    sessions = {s.session_id: s for s in engine.reader.top_sessions(since=0)}
    assert sessions["s-1"].requests == 2 and sessions["s-2"].requests == 1


@pytest.mark.parametrize("engine", ['''
[[budgets]]
scope = "backend:cloud"
period = "day"
limit_usd = 1.0
warn_at = 0.5
action = "block"
'''], indirect=True)
def test_budget_warns_then_blocks_new_requests(engine: Engine):
    _, oai = engine.upstreams  # type: ignore[attr-defined]
    oai.enqueue(OpenAIStream(openai_text_chunks("a", model="priced-model", usage=(300_000, 0, 0))))  # $0.60
    _client(engine).messages.create(model="x", max_tokens=5, messages=USER, stream=True).close()
    time.sleep(0.2)
    alerts = [e for e in engine.events.drain() if isinstance(e, BudgetAlert)]
    assert [a.level for a in alerts] == ["warn"]
    oai.enqueue(OpenAIStream(openai_text_chunks("b", model="priced-model", usage=(300_000, 0, 0))))  # total $1.20
    _client(engine).messages.create(model="x", max_tokens=5, messages=USER, stream=True).close()
    time.sleep(0.2)
    with pytest.raises(anthropic.RateLimitError) as info:
        _client(engine).messages.create(model="x", max_tokens=5, messages=USER, stream=True)
    msg = info.value.body["error"]["message"]
    assert "backend:cloud" in msg and "$1.20" in msg and "$1.00" in msg
    assert len(oai.requests) == 2  # the blocked one never left
    assert engine.ledger.flush(5)
    blocked = engine.reader.requests(limit=1)[0]
    assert blocked.status == 429 and blocked.error_type == "billing_error"


@pytest.mark.parametrize("engine", ['''
[[budgets]]
scope = "all"
period = "month"
limit_usd = 0.5
action = "downgrade:local,qwen3-coder:30b"
'''], indirect=True)
def test_budget_downgrade_sends_new_requests_to_the_local_model(engine: Engine):
    anth, oai = engine.upstreams  # type: ignore[attr-defined]
    oai.enqueue(OpenAIStream(openai_text_chunks("pricey", model="priced-model", usage=(300_000, 0, 0))))  # $0.60
    _client(engine).messages.create(model="x", max_tokens=5, messages=USER, stream=True).close()
    time.sleep(0.2)
    anth.enqueue(AnthropicStream(anthropic_text_events("cheap")))
    with _client(engine).messages.stream(model="x", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "cheap"
    assert anth.requests[-1].json["model"] == "qwen3-coder:30b"
    assert engine.ledger.flush(5)
    row = engine.reader.requests(limit=1)[0]
    assert row.backend == "local" and row.route.startswith("budget:")


def test_switch_is_saved_and_survives_a_restart(engine: Engine):
    engine.switch("local", "qwen3-coder:30b")
    anth, _ = engine.upstreams  # type: ignore[attr-defined]
    anth.enqueue(AnthropicStream(anthropic_text_events("from local")))
    with _client(engine).messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
        assert s.get_final_text() == "from local"
    assert 'backend = "local"' in engine.config_path.read_text()
    again = Engine()
    try:
        assert again.config.active.backend == "local" and again.config.active.model == "qwen3-coder:30b"
    finally:
        again.ledger.close()


def test_corrupt_config_and_ledger_stop_start_with_a_sentence(patchbay_home: Path):
    patchbay_home.mkdir(parents=True)
    (patchbay_home / "config.toml").write_text("[[backends]]\nid = 'x'\nkind = 'openai'\n")
    with pytest.raises(StartError, match="config.toml, line 2: backend \"x\" has no base_url"):
        Engine()
    (patchbay_home / "config.toml").unlink()
    (patchbay_home / "data").mkdir(parents=True, exist_ok=True)
    (patchbay_home / "data" / "usage.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StartError) as info:
        Engine()
    assert "usage.sqlite3" in str(info.value)


def test_engine_connects_claude_code_to_its_own_address_and_disconnects(engine: Engine, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    import json

    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    path = tmp_path / "claude" / "settings.json"
    path.parent.mkdir()
    original = '{"hooks": {"Stop": []}, "env": {"DISABLE_TELEMETRY": "1"}, "statusLine": {"type": "command"}}'
    path.write_text(original)
    assert engine.claude_code_status().state == "not_connected"
    result = engine.connect_claude_code(nonessential=True)
    assert result.path == path
    data = json.loads(path.read_text())
    assert data["hooks"] == {"Stop": []} and data["statusLine"] == {"type": "command"}
    # no Anthropic login in that Claude Code folder: the token is also its credential
    assert data["env"] == {"DISABLE_TELEMETRY": "1", "ANTHROPIC_BASE_URL": engine.url, "ANTHROPIC_AUTH_TOKEN": TOKEN,
                           "ANTHROPIC_CUSTOM_HEADERS": f"x-patchbay-token: {TOKEN}",
                           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1",
                           "ENABLE_TOOL_SEARCH": "true"}
    assert engine.claude_code_connected()
    # the running gateway leaves its address for `patchbay claude`
    runtime = json.loads((engine.paths.data_dir / "gateway.json").read_text())
    assert runtime["url"] == engine.url
    engine.disconnect_claude_code()
    assert path.read_text() == original


def test_nothing_secret_lands_in_the_ledger_or_logs(patchbay_home: Path, monkeypatch: pytest.MonkeyPatch):
    import logging

    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    monkeypatch.setenv("CLOUD_KEY", "sk-live-supersecret-123456")
    with FakeUpstream(wire="openai") as up:
        patchbay_home.mkdir(parents=True)
        (patchbay_home / "config.toml").write_text(f'''
[[backends]]
id = "cloud"
kind = "openai"
base_url = "{up.url}/v1"
auth = "env:CLOUD_KEY"
models = ["m"]
[gateway]
port = 0
[ledger]
capture = "all"
''')
        records: list[str] = []

        class Grab(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(self.format(record))

        handler = Grab()
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.DEBUG)
        eng = Engine()
        eng.start()
        try:
            up.enqueue(OpenAIStream(openai_text_chunks("ok")))
            _client(eng).messages.create(model="x", max_tokens=5, messages=USER, stream=True).close()
            with pytest.raises(anthropic.AuthenticationError):
                anthropic.Anthropic(base_url=eng.url, api_key="sk-wrong-guess-999", max_retries=0).messages.create(
                    model="x", max_tokens=5, messages=USER)
            assert up.requests[-1].headers["authorization"] == "Bearer sk-live-supersecret-123456"
            eng.ledger.flush(5)
        finally:
            eng.stop()
            logging.getLogger().removeHandler(handler)
    raw = b"".join(p.read_bytes() for p in (patchbay_home / "data").glob("usage.sqlite3*"))
    db = sqlite3.connect(patchbay_home / "data" / "usage.sqlite3")
    dump = "\n".join(db.iterdump())
    for secret in ("sk-live-supersecret-123456", TOKEN, "sk-wrong-guess-999"):
        assert secret.encode() not in raw and secret not in dump
        assert not any(secret in r for r in records)
        assert secret not in (patchbay_home / "config.toml").read_text()


def test_a_backend_at_ollama_lists_what_ollama_has_installed(patchbay_home: Path):
    import asyncio

    from app.config import BackendConfig
    from tests.fakes.ollama import FakeOllama

    with FakeOllama() as ol, FakeUpstream(wire="openai", models=("gpt-x",)) as other:
        ol.add_model("qwen3-coder:30b")
        ol.add_model("gpt-oss:20b")
        patchbay_home.mkdir(parents=True)
        (patchbay_home / "config.toml").write_text(_config(ol.url, other.url, f'[ollama]\nurl = "{ol.url}"\n'))
        eng = Engine()
        try:
            for kind, url in (("openai", ol.url + "/v1"), ("anthropic", ol.url)):
                names = asyncio.run(eng.list_models(BackendConfig("ol", kind, url, "none")))
                assert names == ["gpt-oss:20b", "qwen3-coder:30b"]
            # Ollama's own list was asked, not the OpenAI- or Anthropic-style one
            assert [r.path for r in ol.requests] == ["/api/tags", "/api/tags"]
            # a backend elsewhere still lists its models the usual way
            assert asyncio.run(eng.list_models(BackendConfig("x", "openai", other.url + "/v1", "none"))) == ["gpt-x"]
            assert [r.path for r in other.requests] == ["/v1/models"]
        finally:
            eng.stop()
