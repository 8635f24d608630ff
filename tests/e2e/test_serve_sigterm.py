"""SIGTERM (what Cloud Run and Kubernetes send before they kill): ``patchbay serve`` stops
accepting, finishes the stream in flight, flushes the ledger and exits 0."""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.e2e.conftest import spawn_gateway
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import serve_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")]
TOKEN = "pb-sigterm"


def test_sigterm_finishes_the_stream_in_flight_then_exits_0(tmp_path: Path) -> None:
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("word " * 60, pieces=60, model="m"),
                                                  delay_s=0.1), wire="anthropic").start()
    try:
        gw = spawn_gateway(serve_config(up.url, model="m", backend="local", port0=False), tmp_path / "home", token=TOKEN)
        text: list[str] = []
        client = anthropic.Anthropic(base_url=gw.url, api_key=TOKEN, max_retries=0)

        def stream() -> None:
            with client.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
                text.append(s.get_final_message().content[0].text)  # type: ignore[union-attr]

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(1.0)  # the stream is under way (6 s in all: longer than the 3 s the desktop app allows)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.TransportError):  # it no longer accepts
            httpx.get(gw.url + "/health", timeout=2)
        t.join(15)
        assert text == ["word " * 60]  # finished, not cut
        assert gw.proc.wait(15) == 0, gw.log()
        assert "stopping (finishing requests in flight)" in gw.log()
    finally:
        up.stop()
    conn = sqlite3.connect(tmp_path / "home" / "data" / "usage.sqlite3")
    try:
        assert conn.execute("SELECT status, output_tokens > 0 FROM requests").fetchall() == [(200, 1)]
    finally:
        conn.close()
