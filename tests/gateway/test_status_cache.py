"""The status line with a PostgreSQL ledger reads a local cache the gateway keeps, never the network."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import pytest

from app.claude import connect as claude_code
from app.claude import statusline
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import SONNET_PRICES, serve_config, start_engine

TOKEN = "pb-statusline"


def test_the_status_line_shows_team_ledger_numbers_from_the_local_cache(patchbay_home: Path, pg_server: object,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    url = pg_server.create_db()  # type: ignore[attr-defined]
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("hi", model="priced",
                                                                        usage=(100_000, 10_000, 0, 0))),
                      wire="anthropic").start()
    config = patchbay_home / "config.toml"
    eng = start_engine(patchbay_home, serve_config(up.url, prices=SONNET_PRICES, budget_usd=10.0, ledger_url=url))
    try:
        client = anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0,
                                     default_headers={"X-Claude-Code-Session-Id": "sess-7"})
        for _ in range(2):
            with client.messages.stream(model="priced", max_tokens=50,
                                        messages=[{"role": "user", "content": "hi"}]) as s:
                s.get_final_message()
        assert eng.ledger.flush(5)
        cmd = claude_code.statusline_command(eng.paths, eng.config_path)
        cache = eng.paths.data_dir / "statusline-cache.sqlite3"
        assert str(cache) in cmd and str(eng.paths.ledger_file) not in cmd
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = statusline.line({"session_id": "sess-7"}, cache, config)
            if "$0.90 session" in text:
                break
            time.sleep(0.1)
        # 2 × (0.1 M × $3 + 10k × $15/M) = $0.90: what PostgreSQL holds, read from the local file
        assert text == "cloud · priced · $0.90 session · $0.90/$10 today", text
    finally:
        eng.stop()
        up.stop()
