"""A group's model allow-list holds on the model finally sent upstream, whatever path led there.

An intern whose group allows only ``claude-haiku-*`` asks for Haiku by name and tries to reach Opus
through the ``x-patchbay-pin`` header, a ``[routes]`` rule, a ``[routes] fallback`` and a budget's
``downgrade:``. The gateway runs on a real port; the fake upstreams record what they were asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.events import EventHub, EventQueue
from app.host.secrets import resolve_backend_key
from app.ledger.writer import Ledger
from app.proxy.server import ProxyRuntime
from app.team.chain import build_chain
from app.team.keystore_sqlite import SqliteKeyStore
from tests.fakes.chunks import anthropic_message
from tests.fakes.idp import FakeIdP
from tests.fakes.upstreams import AnthropicJSON, FakeUpstream, Raw
from tests.gateway.conftest import TOKEN, config_text
from tests.serve_config import start_engine

HAIKU, OPUS = "claude-haiku-4-5", "claude-opus-4-1"
INTERN = "ivy@corp.example"
MODELS = (HAIKU, OPUS)
OVERLOADED = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
TOOLS = [{"name": "x", "input_schema": {"type": "object"}}]

GROUP = '''
[[team.groups]]
name = "interns"
members = ["*@corp.example"]
models = ["claude-haiku-*"]
'''


@pytest.fixture
def ups() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream(wire="anthropic", models=MODELS) as main, \
            FakeUpstream(wire="anthropic", models=MODELS) as spare:
        yield main, spare


@pytest.fixture
def gateway(tmp_path: Path, idp: FakeIdP, ups: tuple[FakeUpstream, FakeUpstream]) -> Iterator[str]:
    main, spare = ups
    text = config_text([
        {"id": "main", "kind": "anthropic", "base_url": main.url, "auth": "none", "local": False,
         "models": list(MODELS)},
        {"id": "spare", "kind": "anthropic", "base_url": spare.url, "auth": "none", "local": False,
         "models": [HAIKU]},
    ], active="main") + f'''
[routes]
background = "main,{OPUS}"
fallback = ["main,{OPUS}", "spare,{HAIKU}"]

[team]
identity = ["oidc"]
oidc_issuer = "{idp.oidc_issuer}"
oidc_audience = "patchbay"
{GROUP}'''
    cfg = parse_config(text)
    ledger = Ledger(tmp_path / "usage.sqlite3", prices=PriceBook.load(cfg))
    ledger.start()
    keys = SqliteKeyStore(tmp_path / "usage.sqlite3")
    hub = EventHub()
    hub.add(EventQueue().put)
    hub.add(ledger.sink)
    rt = ProxyRuntime(cfg, token=TOKEN, hub=hub, keys=resolve_backend_key, identity=build_chain(cfg.team, keys=keys))
    rt.start()
    try:
        yield rt.url
    finally:
        rt.stop(timeout=5)
        ledger.close()
        keys.close()


def _post(url: str, idp: FakeIdP, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    payload: dict[str, Any] = {"model": HAIKU, "max_tokens": 4000, "tools": TOOLS,
                               "messages": [{"role": "user", "content": "hello"}], **body}
    auth = {"authorization": "Bearer " + idp.oidc_token(INTERN, aud="patchbay"), **(headers or {})}
    with httpx.Client(base_url=url, timeout=15) as http:
        return http.post("/v1/messages", headers=auth, json=payload)


def _asked(*ups: FakeUpstream) -> list[str]:
    return [r.json["model"] for up in ups for r in up.requests]


def test_the_pin_header_cannot_reach_a_model_outside_the_group(gateway: str, idp: FakeIdP, ups) -> None:
    r = _post(gateway, idp, {"x-patchbay-pin": f"main,{OPUS}"})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["type"] == "permission_error"
    assert OPUS in err["message"] and '"interns" allows models claude-haiku-*' in err["message"]
    assert _asked(*ups) == [], "a refused model never reaches an upstream"


def test_a_routes_rule_to_a_model_outside_the_group_is_skipped(gateway: str, idp: FakeIdP, ups) -> None:
    r = _post(gateway, idp, max_tokens=100, tools=None)  # a background request: [routes] background is Opus
    assert r.status_code == 200, r.text
    assert _asked(*ups) == [HAIKU]


def test_a_fallback_to_a_model_outside_the_group_is_skipped_for_the_next_allowed_one(
        gateway: str, idp: FakeIdP, ups) -> None:
    main, spare = ups
    main.enqueue(Raw(529, {"content-type": "application/json"}, OVERLOADED))
    r = _post(gateway, idp)
    assert r.status_code == 200, r.text
    assert OPUS not in _asked(main, spare)
    assert [q.json["model"] for q in spare.requests] == [HAIKU], "served by the next allowed fallback"


def test_a_budget_downgrade_to_a_model_outside_the_group_is_refused(patchbay_home: Path, idp: FakeIdP) -> None:
    with FakeUpstream(wire="anthropic", models=MODELS) as up:
        eng = start_engine(patchbay_home, config_text([
            {"id": "cloud", "kind": "anthropic", "base_url": up.url, "auth": "none", "local": False,
             "models": list(MODELS)}], active="cloud") + f'''
[team]
identity = ["oidc"]
oidc_issuer = "{idp.oidc_issuer}"
oidc_audience = "patchbay"
{GROUP}
[[budgets]]
scope = "each-user"
period = "day"
limit_usd = 0.01
action = "downgrade:cloud,{OPUS}"
''')
        try:
            # the prompt fits the budget (a request whose prompt alone cannot fit counts as over it);
            # its answer, 100,000 output tokens, uses the budget up
            up.enqueue(AnthropicJSON(anthropic_message(model=HAIKU, usage=(10, 100_000))))
            assert _post(eng.url, idp).status_code == 200
            assert eng.ledger.drain(10)
            r = _post(eng.url, idp)  # over the budget: its downgrade leads to Opus
            assert r.status_code == 403, r.text
            assert r.json()["error"]["type"] == "permission_error" and OPUS in r.json()["error"]["message"]
            assert _asked(up) == [HAIKU], "Opus was never asked for"
        finally:
            eng.stop()
