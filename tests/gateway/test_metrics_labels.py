"""GET /metrics stays small however many model names clients make up: a name is a label value
only when the config or the price table knows it; any other counts under "other"."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream, ReceivedRequest, Response, anthropic_error
from tests.serve_config import SONNET_PRICES, serve_config, start_engine

TOKEN = "pb-metrics-token"


def anthropic_like(req: ReceivedRequest) -> Response:
    """Anthropic's answer: the one model it serves streams; any other name is a 404 that names it."""
    model = (req.json or {}).get("model", "")
    if model == "priced":
        return AnthropicStream(anthropic_text_events("hi", model="priced", usage=(10, 2, 0, 0)))
    return anthropic_error(404, "not_found_error", f"model: {model}")


def requests_by_model(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "patchbay_requests_total":
                out[s.labels["model"]] = out.get(s.labels["model"], 0) + s.value
    return out


def test_made_up_model_names_share_one_label(patchbay_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_TOKEN", TOKEN)
    with FakeUpstream(anthropic_like, wire="anthropic") as up:
        eng = start_engine(patchbay_home, serve_config(up.url, prices=SONNET_PRICES))
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            client = anthropic.Anthropic(base_url=eng.url, api_key=TOKEN, max_retries=0)
            client.messages.create(model="priced", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                   stream=True).close()
            before = len(httpx.get(eng.url + "/metrics", headers=auth).content)
            for i in range(1500):
                name = f"cloud,claude-made-up-{i}-" + "x" * 200  # "<backend>,<model>": passed through as written
                with pytest.raises(anthropic.NotFoundError):
                    client.messages.create(model=name, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
            text = httpx.get(eng.url + "/metrics", headers=auth).text
        finally:
            eng.stop()
    grown = len(text.encode()) - before
    print(f"/metrics: {before} bytes before, {len(text.encode())} after 1,500 made-up names (+{grown})")
    assert grown < 20_000, f"/metrics grew by {grown} bytes"
    by_model = requests_by_model(text)
    assert by_model.get("priced") == 1  # a priced, configured model keeps its own label
    assert by_model.get("other") == 1500
    assert not any(m.startswith("claude-made-up") for m in by_model)
