"""The three ways a burst used to miss a person's cap (issue 22 item 4), as fake-upstream answers
and a client that pushes until it is refused.

- ``realistic``: a Claude Code main turn (``tests/fakes/bodies.py``, ~16k tokens), answered as
  Anthropic does for a cached prompt (most of it a cache read) with ~400 output tokens over 1 s.
- ``tiny``: a one-line prompt answered with 1,000 output tokens over 1 s: its real cost is ~100×
  what its prompt and a small output allowance would say.
- ``shrink``: 200 one-token requests first (the output history an estimate learns from), then
  the tiny burst.

``push`` runs N concurrent streams until each is refused (429) and records each refusal's time,
so ``false_refusals`` can say which came while what was spent and what was really in flight
(every row started by then, at its real cost) was below 0.9 of the cap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anthropic

from app.proxy.tokens import estimate_tokens
from tests.fakes.bodies import main_turn
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream, FakeUpstream

PACE_S = 1.0  # each answer streams over this long
WORDS = "the function reads the configuration and returns the parsed value; "


def realistic_body() -> dict[str, Any]:
    body = main_turn(kb=8)
    body["model"] = "priced"
    return body


def tiny_body() -> dict[str, Any]:
    return {"model": "priced", "max_tokens": 32000, "stream": True,
            "messages": [{"role": "user", "content": "Write a long essay about budgets."}]}


def one_token_body() -> dict[str, Any]:
    return {"model": "priced", "max_tokens": 1, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _answer(req: Any) -> AnthropicStream:
    body = req.json
    est = estimate_tokens(body)
    if body.get("max_tokens") == 1:
        return AnthropicStream(anthropic_text_events("ok", pieces=1, model="priced", usage=(est, 1, 0, 0)))
    if "tools" in body:  # a Claude Code main turn: the prompt mostly read from the cache
        out, cached = 400, est - est // 16
        usage: tuple[int, int, int, int] = (est - cached, out, cached, 0)
    else:
        out = 1000
        usage = (est, out, 0, 0)
    text = (WORDS * (out * 4 // len(WORDS) + 1))[:out * 4]  # ~4 characters a token, as Claude writes
    pieces = max(1, out // 25)  # Anthropic's deltas carry a few tokens each
    return AnthropicStream(anthropic_text_events(text, pieces=pieces, model="priced", usage=usage),
                           delay_s=PACE_S / pieces)


def upstream() -> FakeUpstream:
    """One fake Anthropic upstream for all three cases (it answers by the request's shape)."""
    return FakeUpstream(_answer, wire="anthropic", record=False).start()


@dataclass
class Pushed:
    served: int = 0
    stopped: int = 0  # streams ended at the cap with an in-stream billing_error
    refusals: list[float] = field(default_factory=list)  # wall-clock time of each 429
    other: list[str] = field(default_factory=list)


def push(urls: list[str], streams: int, token: str, body: dict[str, Any], *, limit_s: float = 120.0,
         times: int | None = None) -> Pushed:
    """``streams`` threads, stream ``i`` on ``urls[i % len(urls)]`` with its own session, each
    sending ``body`` again and again until a 429 stops it (or ``times`` times)."""
    out = Pushed()
    lock = threading.Lock()
    known = {k: body[k] for k in ("model", "max_tokens", "messages")}
    extra = {k: v for k, v in body.items() if k not in known and k != "stream"}  # sent as Claude Code sends them
    deadline = time.monotonic() + limit_s

    def one(i: int) -> None:
        client = anthropic.Anthropic(base_url=urls[i % len(urls)], api_key=token, max_retries=0,
                                     default_headers={"X-Claude-Code-Session-Id": f"s-{i}"})
        n = 0
        while time.monotonic() < deadline and (times is None or n < times):
            n += 1
            try:
                with client.messages.stream(**known, extra_body=extra) as s:
                    s.get_final_message()
                with lock:
                    out.served += 1
            except anthropic.RateLimitError:
                with lock:
                    out.refusals.append(time.time())
                return
            except anthropic.APIStatusError as exc:
                kind = str((exc.body or {}).get("error", {}).get("type")) if isinstance(exc.body, dict) else ""
                with lock:
                    if kind == "billing_error":
                        out.stopped += 1
                    else:
                        out.other.append(f"{exc.status_code} {kind} {exc.message}")
                        return
            except anthropic.APIError as exc:  # an error event the SDK does not map to a status
                with lock:
                    if "billing_error" in str(exc) or "budget" in str(exc):
                        out.stopped += 1
                    else:
                        out.other.append(f"{type(exc).__name__} {exc}")
                        return

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit_s + 10)
    return out


def false_refusals(refusals: list[float], rows: list[tuple[float, float]], limit: float) -> int:
    """Refusals that came while every row started by then (spent, or really in flight), at its real
    cost, was below 0.9 of ``limit``. ``rows``: (started_at, cost) of the person's requests."""
    return sum(1 for t in refusals if sum(c for s, c in rows if s <= t) < 0.9 * limit)
