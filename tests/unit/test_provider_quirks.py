"""The provider rules table (app/config/providers.py) and the ``quirks = [...]`` override in config."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import BackendConfig, ConfigError, parse_config
from app.config.disk import load_config, save_backends
from app.config.providers import quirks_for, table_quirks
from app.proxy.thinking import keep_reasoning

CONFIG = '''
[[backends]]
id = "ds"
kind = "openai"
base_url = "https://api.deepseek.com/v1"
auth = "none"
models = ["deepseek-reasoner"]
{line}

[active]
backend = "ds"
'''


@pytest.mark.parametrize("url,model,expected", [
    ("https://api.deepseek.com/v1", "deepseek-reasoner", {"reasoning_content", "foreign_reasoning"}),
    ("https://api.deepseek.com/v1", "deepseek-v4-pro", {"reasoning_content", "foreign_reasoning"}),
    ("https://api.deepseek.com/v1", "deepseek-chat", {"foreign_reasoning"}),
    ("http://10.0.0.5:8000/v1", "deepseek-ai/deepseek-v4-flash", {"reasoning_content", "foreign_reasoning"}),
    ("https://api.moonshot.ai/v1", "kimi-k2.5", {"reasoning_content", "foreign_reasoning"}),
    ("https://api.moonshot.ai/v1", "kimi-k2.6", {"reasoning_content", "foreign_reasoning"}),
    ("https://api.moonshot.ai/v1", "kimi-k2-0905-preview", set()),
    ("https://openrouter.ai/api/v1", "google/gemini-3-pro-preview", {"reasoning_details"}),
    ("https://openrouter.ai/api/v1", "google/gemini-2.5-pro", set()),
    ("https://api.mistral.ai/v1", "mistral-large-latest", {"tool_id_9"}),
    ("https://api.mistral.ai/v1", "some-new-model", {"tool_id_9"}),
    ("http://localhost:8000/v1", "mistralai/Devstral-Small-2-24B-Instruct-2512", {"tool_id_9"}),
    ("http://localhost:8000/v1", "magistral-small", {"tool_id_9"}),
    ("https://api.groq.com/openai/v1", "llama-3.3-70b-versatile", set()),
    ("https://notmistral.ai.example.com/v1", "gpt-fake", set()),
])
def test_the_table_says_which_rules_apply(url: str, model: str, expected: set[str]) -> None:
    assert table_quirks(url, model) == expected


def test_a_backend_in_config_replaces_the_table() -> None:
    ds = parse_config(CONFIG.format(line='quirks = ["tool_id_9"]')).backend("ds")
    assert ds is not None and ds.quirks == ("tool_id_9",)
    assert quirks_for(ds, "deepseek-reasoner") == {"tool_id_9"}
    none = parse_config(CONFIG.format(line="quirks = []")).backend("ds")
    assert none is not None and quirks_for(none, "deepseek-reasoner") == frozenset()
    table = parse_config(CONFIG.format(line="")).backend("ds")
    assert table is not None and table.quirks is None
    assert quirks_for(table, "deepseek-reasoner") == {"reasoning_content", "foreign_reasoning"}


def test_foreign_reasoning_comes_from_the_table() -> None:
    """What app.proxy.thinking hard-coded for DeepSeek is now a row of the table, and can be switched off."""
    foreign = {"type": "thinking", "thinking": "Claude's", "signature": "sig-from-anthropic"}
    ds = BackendConfig("ds", "openai", "https://api.deepseek.com/v1")
    assert keep_reasoning(ds, "deepseek-chat")(foreign) is True
    assert keep_reasoning(BackendConfig("ds", "openai", "https://api.deepseek.com/v1", quirks=()),
                          "deepseek-chat")(foreign) is False
    assert keep_reasoning(BackendConfig("g", "openai", "https://api.groq.com/openai/v1"), "llama")(foreign) is False


@pytest.mark.parametrize("line,said", [
    ('quirks = ["reasoning_contnet"]', 'line 8: backend "ds" names the unknown rule "reasoning_contnet" in quirks. '
                                       'Known rules: "reasoning_content", "foreign_reasoning", "reasoning_details", '
                                       '"tool_id_9".'),
    ('quirks = "tool_id_9"', "line 8: backend \"ds\" has quirks = 'tool_id_9'. Write a list of rule names"),
])
def test_a_wrong_quirks_line_is_named(line: str, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG.format(line=line))
    assert said in str(err.value)


def test_quirks_on_an_anthropic_backend_are_refused() -> None:
    text = CONFIG.replace('kind = "openai"', 'kind = "anthropic"').format(line='quirks = ["tool_id_9"]')
    with pytest.raises(ConfigError, match=r'line 8: backend "ds" \(kind = "anthropic"\) sets quirks'):
        parse_config(text)


def test_quirks_survive_a_save(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(line='quirks = ["reasoning_content", "tool_id_9"]'))
    config = load_config(path)
    save_backends(path, config.backends)
    again = load_config(path).backend("ds")
    assert again is not None and again.quirks == ("reasoning_content", "tool_id_9")
