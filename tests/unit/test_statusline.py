"""`patchbay statusline`: real ledger rows (written by the real writer) → the expected line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.catalog.prices import PriceBook
from app.claude import statusline
from app.config import LedgerSettings, parse_config
from app.events import RequestFinished, Usage, finished_request
from app.ledger.writer import Ledger

CONFIG = """
[[backends]]
id = "openrouter"
kind = "openai"
base_url = "https://openrouter.ai/api/v1"
auth = "none"
models = ["deepseek-chat"]

[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "http://localhost:11434"
auth = "none"

[active]
backend = "ollama"
model = "qwen3-coder:30b"

[[prices]]
model = "deepseek-chat"
input = 1.0
output = 2.0

[[budgets]]
scope = "all"
period = "day"
limit_usd = 10.0

[[budgets]]
scope = "backend:openrouter"
period = "day"
limit_usd = 2.0

[[budgets]]
scope = "all"
period = "week"
limit_usd = 1.0
"""


MIDNIGHT = statusline.local_midnight(time.time())
NOW = MIDNIGHT + 2 * 3600  # "now" for the line: two hours into today, whatever the clock says


def finished(rid: str, t: float, session: str, backend: str, model: str, usage: Usage) -> RequestFinished:
    return finished_request(rid, t, session_id=session, backend=backend, requested_model="claude-sonnet-5-5",
                            model=model, ttft_ms=100.0, usage=usage)


def make(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    ledger_path = tmp_path / "data" / "usage.sqlite3"
    ledger_path.parent.mkdir()
    ledger = Ledger(ledger_path, prices=PriceBook.load(parse_config(CONFIG)), settings=LedgerSettings())
    ledger.start()
    for ev in (
        finished("r1", MIDNIGHT + 600, "S", "openrouter", "deepseek-chat", Usage(1_000_000, 500_000)),  # $2
        finished("r2", MIDNIGHT + 5000, "S", "openrouter", "deepseek-chat", Usage(210_000, 0)),  # $0.21
        finished("r3", MIDNIGHT + 5100, "T", "openrouter", "deepseek-chat", Usage(100_000, 0)),  # $0.10
        finished("r4", MIDNIGHT - 3600, "S", "openrouter", "deepseek-chat", Usage(5_000_000, 0)),  # $5, yesterday
        finished("r5", MIDNIGHT + 5200, "U", "ollama", "qwen3-coder:30b", Usage(10_000, 100)),  # local: unpriced
    ):
        ledger.record(ev)
    ledger.close()
    return ledger_path, config


def test_the_line_for_a_session_with_requests(tmp_path: Path):
    ledger, config = make(tmp_path)
    payload = {"session_id": "S", "model": {"id": "claude-sonnet-5-5", "display_name": "Sonnet"},
               "cost": {"total_cost_usd": 3.0}}
    # session S: $2 + $0.21 today and $5 yesterday; today overall: $2.31 + $0.10
    assert statusline.line(payload, ledger, config, NOW) == "openrouter · deepseek-chat · $7.21 session · $2.31/$10 today"


def test_a_session_with_nothing_recorded_shows_where_it_will_go(tmp_path: Path):
    ledger, config = make(tmp_path)
    assert statusline.line({"session_id": "new"}, ledger, config, NOW) == \
        "ollama · qwen3-coder:30b · $0.00 session · $2.31/$10 today"


def test_a_session_that_cost_a_fifth_of_a_cent_does_not_read_zero(tmp_path: Path):
    ledger, config = make(tmp_path)
    db = Ledger(ledger, prices=PriceBook.load(parse_config(CONFIG)), settings=LedgerSettings())
    db.start()
    db.record(finished("r6", MIDNIGHT + 5300, "V", "openrouter", "deepseek-chat", Usage(2100, 0)))  # $0.0021
    db.close()
    assert statusline.line({"session_id": "V"}, ledger, config, NOW) == \
        "openrouter · deepseek-chat · $0.0021 session · $2.31/$10 today"


def test_no_ledger_and_no_config_still_give_a_line(tmp_path: Path):
    assert statusline.line({"model": {"id": "claude-opus-5-5"}}, tmp_path / "none.sqlite3", None) == \
        "patchbay · claude-opus-5-5 · $0.00 session · $0.00 today"


def test_the_config_is_read_again_when_it_changes(tmp_path: Path):
    ledger, config = make(tmp_path)
    assert statusline.config_facts(config, str(ledger.parent)) == (10.0, "ollama", "qwen3-coder:30b")
    assert (ledger.parent / "statusline-config.cache").exists()
    config.write_text(CONFIG.replace('backend = "ollama"\nmodel = "qwen3-coder:30b"', 'backend = "openrouter"')
                      .replace("limit_usd = 10.0", "limit_usd = 12.5"))
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # a later mtime, whatever the clock
    assert statusline.config_facts(config, str(ledger.parent)) == (12.5, "openrouter", None)
    assert statusline.line({"session_id": "new"}, ledger, config, NOW) == \
        "openrouter · ? · $0.00 session · $2.31/$12.50 today"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=15)


@settings(max_examples=100, deadline=None)
@given(value=_json_values, indent=st.sampled_from([None, 2]), pad=st.sampled_from(["", " ", "\n", "\t\r\n"]))
def test_the_small_json_reader_agrees_with_json(value: object, indent: int | None, pad: str):
    text = pad + json.dumps(value, indent=indent) + pad
    assert statusline.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "NaN", "[1,]", "'a'", '{"a": Infinity}'])
def test_the_small_json_reader_refuses_what_json_refuses(text: str):
    with pytest.raises(ValueError):
        json.loads(text, parse_constant=statusline._Strict.parse_constant)
    with pytest.raises(ValueError):
        statusline.loads(text)
