"""Config parsing: a broken file is one sentence naming the file, the line or key, and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import (
    DEFAULT_CONFIG, ActiveSelection, BackendConfig, ConfigError, load_config, load_or_create, parse_config,
    save_active, save_backends,
)

GOOD = '''
[gateway]
port = 9999

[[backends]]
id = "deepseek"
kind = "openai"
base_url = "https://api.deepseek.com/v1/"
auth = "env:DEEPSEEK_API_KEY"
models = ["deepseek-chat", "deepseek-reasoner"]
max_output_tokens = 8192

[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "http://localhost:11434"
auth = "none"

[active]
backend = "deepseek"
model = "deepseek-chat"
'''


def test_good_config():
    c = parse_config(GOOD)
    assert c.gateway.port == 9999 and c.gateway.host == "127.0.0.1"
    ds = c.backend("deepseek")
    assert ds is not None and ds.base_url == "https://api.deepseek.com/v1" and ds.env_var == "DEEPSEEK_API_KEY"
    assert ds.max_output_tokens == 8192 and not ds.is_local
    assert c.backend("ollama").is_local  # type: ignore[union-attr]
    assert c.active == ActiveSelection("deepseek", "deepseek-chat")


def test_default_config_is_valid_and_forwards_the_callers_key():
    c = parse_config(DEFAULT_CONFIG)
    assert c.active.backend == "anthropic"
    b = c.backend("anthropic")
    assert b is not None and b.kind == "anthropic" and b.auth == "client"


@pytest.mark.parametrize("text, needles", [
    ("[gateway\nport = 1", ["not valid TOML", "line 1"]),
    (GOOD.replace('kind = "openai"', 'kind = "gemini"'), ["line 7", "unknown kind 'gemini'", 'kind = "openai"']),
    (GOOD.replace('id = "ollama"', 'id = "deepseek"'), ['"deepseek" is used twice', "line 14"]),
    (GOOD.replace('backend = "deepseek"', 'backend = "nope"'), ["line 20", "'nope'", "'deepseek', 'ollama'"]),
    (GOOD.replace('auth = "none"', 'auth = "sk-123"'), ["line 17", "auth = 'sk-123'", "env:NAME"]),
    (GOOD.replace("port = 9999", 'port = "x"'), ["line 3", "gateway.port", "whole number"]),
    (GOOD.replace("port = 9999", "prot = 9999"), ["line 3", "unknown key gateway.prot"]),
    (GOOD.replace('base_url = "http://localhost:11434"', 'base_url = "localhost"'), ["line 16", "base_url"]),
    (GOOD + '\n[[budgets]]\nperiod = "year"\nlimit_usd = 5\n', ["line 23", "period = 'year'", '"day"']),
])
def test_broken_configs_say_where_and_what_to_write(tmp_path: Path, text: str, needles: list[str]):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path))
    for n in needles:
        assert n in msg, (n, msg)


def test_secret_headers_are_refused():
    text = GOOD.replace('max_output_tokens = 8192', 'headers = { Authorization = "Bearer sk-x" }')
    with pytest.raises(ConfigError, match='auth = "keyring"'):
        parse_config(text)


def test_missing_file_and_first_start(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    created = tmp_path / "new" / "config.toml"
    c = load_or_create(created)
    assert created.read_text() == DEFAULT_CONFIG and c.active.backend == "anthropic"


def test_save_active_keeps_comments(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text("# my notes\n" + GOOD)
    c = save_active(path, "ollama", "qwen3-coder:30b")
    assert c.active == ActiveSelection("ollama", "qwen3-coder:30b")
    text = path.read_text()
    assert text.startswith("# my notes") and 'model = "qwen3-coder:30b"' in text
    assert load_config(path).active.backend == "ollama"
    assert (tmp_path / "config.toml.bak").exists()
    c = save_active(path, "deepseek", None)
    assert c.active == ActiveSelection("deepseek", None)


def test_save_backends_reorders_and_never_writes_a_broken_file(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    c = load_config(path)
    new = [c.backends[1], c.backends[0], BackendConfig("groq", "openai", "https://api.groq.com/openai/v1",
                                                       "keyring", ("llama-3.3-70b-versatile",))]
    c2 = save_backends(path, new)
    assert [b.id for b in c2.backends] == ["ollama", "deepseek", "groq"]
    before = path.read_text()
    with pytest.raises(ConfigError):
        save_backends(path, [BackendConfig("x", "bogus", "http://x")], ActiveSelection("x"))
    assert path.read_text() == before
