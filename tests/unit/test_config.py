"""Config parsing: a broken file is one sentence naming the file, the line or key, and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ActiveSelection, BackendConfig, ConfigError, parse_config
from app.config.disk import DEFAULT_CONFIG, load_config, load_or_create, save_active, save_backends

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
    (GOOD + '\n[ollama]\nurl = "localhost:11434"\n', ["line 24", "ollama.url is 'localhost:11434'",
                                                     'url = "http://localhost:11434"']),
    (GOOD + '\n[ollama]\nurl = "http://localhost:11434/api"\n', ["line 24", "no path"]),
    (GOOD + '\n[ollama]\nurl = 11434\n', ["line 24", "ollama.url", "a string"]),
    (GOOD + '\n[ollama]\nhost = "x"\n', ["line 24", "unknown key ollama.host", "url"]),
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


def test_ollama_url_defaults_and_is_read():
    assert parse_config(GOOD).ollama.url == "http://localhost:11434"
    assert parse_config(GOOD + '\n[ollama]\nurl = "http://10.0.0.5:11434/"\n').ollama.url == "http://10.0.0.5:11434"


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


CLOUD = GOOD.replace("[active]", '''[[backends]]
id = "aws"
kind = "bedrock"
region = "eu-west-1"
profile = "work"
models = ["eu.anthropic.claude-sonnet-4-5-20250929-v1:0"]

[[backends]]
id = "gcp"
kind = "vertex"
project = "my-proj-1"
region = "global"
models = ["claude-sonnet-4-5@20250929"]

[[backends]]
id = "company"
kind = "anthropic"
base_url = "https://llm.example.com"
auth = "command:gcloud auth print-identity-token --audiences=x"
token_ttl_s = 120

[active]''')


def test_cloud_kinds_derive_their_endpoint_and_default_auth():
    c = parse_config(CLOUD)
    aws, gcp, company = c.backend("aws"), c.backend("gcp"), c.backend("company")
    assert aws is not None and gcp is not None and company is not None
    assert aws.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com" and aws.auth == "aws"
    assert aws.profile == "work" and aws.region == "eu-west-1" and not aws.is_local
    assert gcp.base_url == "https://aiplatform.googleapis.com" and gcp.auth == "google"  # "global" has no prefix
    assert parse_config(CLOUD.replace('region = "global"', 'region = "us-east5"')).backend("gcp").base_url == \
        "https://us-east5-aiplatform.googleapis.com"  # type: ignore[union-attr]
    assert company.token_command == "gcloud auth print-identity-token --audiences=x"
    assert company.token_ttl_s == 120.0


def test_default_config_examples_are_valid_when_uncommented():
    text = DEFAULT_CONFIG
    for block in ('# id = "bedrock"', '# id = "vertex"', '# id = "company"'):
        start = text.index(block) - len("# [[backends]]\n")
        end = text.index("\n\n", start)
        text = text[:start] + "\n".join(line[2:] for line in text[start:end].splitlines()) + text[end:]
    c = parse_config(text)
    assert [b.kind for b in c.backends] == ["anthropic", "bedrock", "vertex", "anthropic"]


@pytest.mark.parametrize("old, new, needles", [
    ('region = "eu-west-1"\n', "", ['"aws" (kind = "bedrock") has no region', "line 20", 'region = "us-east-1"']),
    ('project = "my-proj-1"\n', "", ['(kind = "vertex") has no project', "line 27"]),
    ('region = "global"', 'region = "Europe West"', ["line 30", "region = 'Europe West'"]),
    ('region = "global"', 'region = "global"\nprofile = "x"', ["line 31", "sets profile", 'kind = "bedrock"']),
    ('profile = "work"', 'auth = "google"', ["line 23", 'auth = "google"', 'kind = "vertex"']),
    ('kind = "vertex"', 'kind = "vertex"\nauth = "client"', ["line 29", "signs with its own credentials"]),
    ("token_ttl_s = 120", "token_ttl_s = -1", ["line 38", "token_ttl_s = -1"]),
    ('auth = "command:gcloud auth print-identity-token --audiences=x"', 'auth = "command:  "',
     ["line 37", "auth = 'command:  '"]),
    ('models = ["eu.anthropic.claude-sonnet-4-5-20250929-v1:0"]', "models = []",
     ["line 24", '"aws" (kind = "bedrock") lists no models', "models = [\"us.anthropic"]),
    ('models = ["claude-sonnet-4-5@20250929"]\n', "", ['"gcp" (kind = "vertex") lists no models', "line 27"]),
    ('profile = "work"', 'token_ttl_s = 60', ["line 23", "token_ttl_s without a token command"]),
    ('base_url = "http://localhost:11434"', 'base_url = "http://localhost:11434"\nregion = "x"',
     ["line 17", "only bedrock and vertex"]),
])
def test_broken_cloud_configs_say_where(tmp_path: Path, old: str, new: str, needles: list[str]):
    path = tmp_path / "config.toml"
    assert old in CLOUD
    path.write_text(CLOUD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for n in needles:
        assert n in str(info.value), (n, str(info.value))


def test_saving_cloud_backends_keeps_their_keys_and_leaves_derived_endpoints_out(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text(CLOUD)
    c = load_config(path)
    c2 = save_backends(path, list(c.backends))
    assert c2.backends == c.backends
    text = path.read_text()
    assert "bedrock-runtime" not in text and "aiplatform" not in text  # derived from the region again
    assert 'profile = "work"' in text and "token_ttl_s = 120" in text


def test_saving_backends_keeps_a_blank_line_before_the_next_table(tmp_path):
    from app.config import BackendConfig
    from app.config.disk import load_config, load_or_create, save_backends

    path = tmp_path / "config.toml"
    cfg = load_or_create(path)
    save_backends(path, list(cfg.backends) + [BackendConfig("extra", "openai", "https://a.example/v1", "none")])
    for _ in range(2):  # stable: saving again adds no more blank lines
        save_backends(path, list(load_config(path).backends))
    text = path.read_text(encoding="utf-8")
    assert 'auth = "none"\n\n[active]' in text
    assert "\n\n\n" not in text.split("[active]")[0].split('id = "extra"')[0][-200:]
