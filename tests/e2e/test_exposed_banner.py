"""``patchbay serve --host 0.0.0.0`` says where it really listens and what that opens up."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import gateway_config, spawn_gateway


def test_the_banner_names_the_real_address_and_warns(tmp_path):
    gw = spawn_gateway(gateway_config("openai", "http://127.0.0.1:9/v1"), tmp_path / "home",
                       extra_args=["--host", "0.0.0.0"])
    try:
        deadline = time.monotonic() + 5
        while "need the gateway token" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = gw.log()
        assert gw.url.startswith("http://0.0.0.0:")
        assert "reachable from other machines" in out and "need the gateway token" in out
        port = gw.url.rsplit(":", 1)[1]
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 401
    finally:
        gw.stop()
