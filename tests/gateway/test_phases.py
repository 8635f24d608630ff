"""Single phases of a /v1/messages request, each run alone on the snapshot of a real gateway
(app/proxy/phases.py, app/proxy/admit.py): who sent it, before any body; the route; a paused
gateway's refusal; the budgets' decision by the product's engine (app/budgets/admission.py);
and a retired backend closed in a task that is kept until it ends (app/proxy/closing.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from app.catalog.prices import PriceBook
from app.config import parse_config
from app.errors import ApiError
from app.events import EventHub, Usage, finished_request
from app.host.secrets import resolve_backend_key
from app.proxy import admit, closing, phases
from app.proxy.admit import PAUSED
from app.proxy.gateway import _release
from app.proxy.routing import Refusal, Route
from app.proxy.server import ProxyRuntime
from tests.budget_engine import LedgerBudgets
from tests.gateway.conftest import TOKEN, config_text

BACKENDS = [{"id": "a", "kind": "anthropic", "base_url": "http://127.0.0.1:9", "auth": "none", "local": False},
            {"id": "b", "kind": "anthropic", "base_url": "http://127.0.0.1:9", "auth": "none", "local": False}]
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def runtime(extra: str = "", *, exposed: bool = False, budgets: LedgerBudgets | None = None,
            text: str | None = None) -> ProxyRuntime:
    text = text if text is not None else config_text(BACKENDS, active="a") + extra
    if exposed:
        text = text.replace("port = 0", 'host = "0.0.0.0"\nport = 0')
    return ProxyRuntime(parse_config(text), token=TOKEN, hub=EventHub(), keys=resolve_backend_key,
                        admission=budgets.admission if budgets is not None else None)


def scope(headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/messages", "client": ("127.0.0.1", 50000),
            "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
            "patchbay.request_id": "req_phase"}


def arrival(rt: ProxyRuntime, body: dict[str, Any] = BODY, headers: dict[str, str] | None = None) -> phases.Arrival:
    snap = rt.gateway.snap
    sc = scope({"x-api-key": TOKEN, **(headers or {})})
    caller = asyncio.run(phases.authenticate(snap, sc))
    return phases.arrive(phases.latest(snap, caller), sc, caller, b"{}", dict(body), False)


# --------------------------------------------------------------------------- who sent it, and its route


def test_authenticate_refuses_a_stranger_from_the_headers_alone() -> None:
    """Exposed beyond loopback, no token: 401 before anything of the body is read (no receive
    is given at all), with no ledger row; the token lets the same request on."""
    rt = runtime(exposed=True)
    snap = rt.gateway.snap
    with pytest.raises(ApiError) as refused:
        asyncio.run(phases.authenticate(snap, scope({"x-api-key": "sk-ant-someone-else"})))
    assert (refused.value.status, refused.value.error_type) == (401, "authentication_error")
    assert "sk-ant-someone-else" not in refused.value.message
    caller = asyncio.run(phases.authenticate(snap, scope({"x-api-key": TOKEN})))
    assert caller.presented and caller.is_exposed and caller.identity is None
    assert caller.client_addr == "127.0.0.1"


def test_route_follows_the_rules_and_refuses_what_it_cannot_serve() -> None:
    rt = runtime('\n[routes]\nbackground = "b"\n')
    routed = phases.route(arrival(rt, {**BODY, "tools": []}))  # no tools, small max_tokens: background work
    assert (routed.backend, routed.rule) == ("b", "background")
    main = phases.route(arrival(rt, {**BODY, "max_tokens": 5000, "tools": [{"name": "Read", "input_schema": {}}]}))
    assert main.backend == "a"
    with pytest.raises(ApiError) as refused:
        phases.route(arrival(rt, {**BODY, "model": "nowhere,some-model"}))
    assert refused.value.status in (400, 404) and "nowhere" in refused.value.message


# --------------------------------------------------------------------------- admission


def test_a_paused_gateway_refuses_and_records_the_route_it_would_have_taken() -> None:
    rt = runtime()
    arr = arrival(rt)
    routed = phases.route(arr)
    recorded: list[tuple[Route, Refusal]] = []
    with pytest.raises(ApiError) as refused:
        asyncio.run(admit.admit(arr, routed, rt.gateway.snap.backends["a"], paused=True, session_caps=None,
                                record=lambda r, why: recorded.append((r, why))))
    assert (refused.value.status, refused.value.error_type) == (503, "api_error")
    assert (b"x-should-retry", b"false") in refused.value.headers
    assert recorded == [(routed, PAUSED)]


def test_the_budget_phase_downgrades_with_the_product_engine(tmp_path: Path) -> None:
    text = config_text(BACKENDS, active="a") + (
        '\n\n[[budgets]]\nscope = "backend:a"\nperiod = "day"\nlimit_usd = 0.01\naction = "downgrade:b"\n')
    cfg = parse_config(text)
    books = LedgerBudgets(cfg.budgets, PriceBook.load(cfg), tmp_path)
    try:
        rt = runtime(text=text, budgets=books)
        books.spend(finished_request("spent", time.time(), backend="a", model="claude-sonnet-4-5",
                                     usage=Usage(1_000_000, 0)))  # $3 on a
        arr = arrival(rt)
        routed = phases.route(arr)
        recorded: list[tuple[Route, Refusal]] = []
        admitted = asyncio.run(admit.admit(arr, routed, rt.gateway.snap.backends["a"], paused=False,
                                           session_caps=None, record=lambda r, why: recorded.append((r, why))))
        assert (admitted.route.backend, admitted.route.rule) == ("b", 'budget:backend:a / day $0.01')
        assert admitted.backend is rt.gateway.snap.backends["b"] and recorded == []
    finally:
        books.close()


def test_the_budget_phase_refuses_and_records_against_the_route_asked_for(tmp_path: Path) -> None:
    text = config_text(BACKENDS, active="a") + (
        '\n\n[[budgets]]\nscope = "all"\nperiod = "day"\nlimit_usd = 0.01\naction = "block"\n')
    cfg = parse_config(text)
    books = LedgerBudgets(cfg.budgets, PriceBook.load(cfg), tmp_path)
    try:
        rt = runtime(text=text, budgets=books)
        books.spend(finished_request("spent", time.time(), backend="b", model="claude-sonnet-4-5",
                                     usage=Usage(1_000_000, 0)))
        arr = arrival(rt)
        routed = phases.route(arr)
        recorded: list[tuple[Route, Refusal]] = []
        with pytest.raises(ApiError) as refused:
            asyncio.run(admit.admit(arr, routed, rt.gateway.snap.backends["a"], paused=False, session_caps=None,
                                    record=lambda r, why: recorded.append((r, why))))
        assert (refused.value.status, refused.value.error_type) == (429, "billing_error")
        assert [(r, why.error_type) for r, why in recorded] == [(routed, "billing_error")]
    finally:
        books.close()


# --------------------------------------------------------------------------- giving backends back


def test_a_retired_backend_closes_in_a_task_kept_until_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime()
    backend = rt.gateway.snap.backends["a"]

    async def main() -> None:
        backend.inflight = 1
        backend.retired = True
        _release([backend])  # the last request holding it is done: it closes now, in the background
        assert backend.inflight == 0 and closing.pending() == 1
        for _ in range(100):
            if closing.pending() == 0:
                break
            await asyncio.sleep(0.01)
        assert closing.pending() == 0 and backend.client.is_closed

        async def refuses() -> None:
            raise OSError("the socket was already gone")

        closing.close_soon(refuses())
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger="patchbay.gateway"):
        asyncio.run(main())
    assert "closing in the background failed: OSError: the socket was already gone" in caplog.text
