"""GET /metrics (Prometheus text, the gateway token unless [metrics] public) and GET /ready."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.core import Engine
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream
from tests.serve_config import SONNET_PRICES, serve_config, start_engine

TOKEN = "pb-metrics-token"


def start(home: Path, upstream: str, extra: str = "") -> Engine:
    return start_engine(home, serve_config(upstream, prices=SONNET_PRICES, budget_usd=100.0,
                                           backend_extra="max_connections = 5000\n", extra=extra))


@pytest.fixture
def upstream():
    up = FakeUpstream(lambda req: AnthropicStream(anthropic_text_events("hi", model="priced",
                                                                        usage=(1000, 200, 4000, 300))),
                      wire="anthropic").start()
    yield up
    up.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_tokens_cost_and_need_the_token(patchbay_home: Path, upstream: FakeUpstream,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    eng = start(patchbay_home, upstream.url)
    try:
        client = anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0)
        for _ in range(3):
            with client.messages.stream(model="priced", max_tokens=50,
                                        messages=[{"role": "user", "content": "hi"}]) as s:
                s.get_final_message()
        assert eng.ledger.flush(5)
        denied = httpx.get(eng.url + "/metrics")
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        assert "[metrics]" in denied.json()["error"]["message"]
        r = httpx.get(eng.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        got = samples(r.text)
        lab = (("backend", "cloud"), ("model", "priced"))
        assert got[("patchbay_requests_total", (*lab, ("status", "200")))] == 3
        assert got[("patchbay_tokens_total", (*lab[:1], ("kind", "output"), lab[1]))] == 600
        assert got[("patchbay_tokens_total", (*lab[:1], ("kind", "cache_read"), lab[1]))] == 3 * 4000
        one = (1000 * 3 + 200 * 15 + 4000 * 0.3 + 300 * 3.75) / 1e6
        assert got[("patchbay_cost_usd_total", lab)] == pytest.approx(3 * one)
        assert got[("patchbay_request_duration_seconds_count", (("backend", "cloud"),))] == 3
        assert got[("patchbay_time_to_first_token_seconds_count", (("backend", "cloud"),))] == 3
        assert got[("patchbay_requests_in_flight", ())] == 0
        assert got[("patchbay_ledger_queue_rows", ())] == 0 and got[("patchbay_ledger_spool_rows", ())] == 0
        assert got[("patchbay_budget_utilisation", (("budget", "all / day $100"),))] == pytest.approx(3 * one / 100)
        ready = httpx.get(eng.url + "/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    finally:
        eng.stop()


def test_metrics_public_needs_no_token(patchbay_home: Path, upstream: FakeUpstream,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    eng = start(patchbay_home, upstream.url, "[metrics]\npublic = true\n")
    try:
        r = httpx.get(eng.url + "/metrics")
        assert r.status_code == 200 and "patchbay_requests_in_flight 0.0" in r.text
        assert TOKEN not in r.text
    finally:
        eng.stop()


def test_the_upstream_pool_cap_is_per_backend_with_a_default_that_does_not_bite(patchbay_home: Path,
                                                                                 upstream: FakeUpstream,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import DEFAULT_MAX_CONNECTIONS, parse_config
    from app.host.secrets import resolve_backend_key
    from app.proxy.backends.factory import make_backend

    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    cfg = parse_config(f'[[backends]]\nid = "a"\nkind = "anthropic"\nbase_url = "{upstream.url}"\nauth = "none"\n'
                       f'[[backends]]\nid = "b"\nkind = "anthropic"\nbase_url = "{upstream.url}"\nauth = "none"\n'
                       'max_connections = 64\n')
    a, b = (make_backend(bc, cfg.gateway, resolve_backend_key) for bc in cfg.backends)
    assert DEFAULT_MAX_CONNECTIONS >= 1000
    assert a._transport is not None and a._transport._pool.max_connections == DEFAULT_MAX_CONNECTIONS  # type: ignore[attr-defined]
    assert b._transport is not None and b._transport._pool.max_connections == 64  # type: ignore[attr-defined]
