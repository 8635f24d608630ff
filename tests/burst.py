"""Concurrent streams against a budget until each is refused: the burst the budget tests send."""

from __future__ import annotations

import threading
from typing import Any

import anthropic


def stream_until_refused(urls: list[str], streams: int, token: str, body: dict[str, Any], *,
                         sessions: bool = False) -> tuple[list[int], list[str]]:
    """``streams`` threads, stream ``i`` on ``urls[i % len(urls)]`` (with its own Claude Code session
    id ``s-i`` when ``sessions``), each streaming ``body`` again and again until a 429 stops it.
    Returns the 200s served per URL and the refusals' error types."""
    served = [0] * len(urls)
    refusals: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        k = i % len(urls)
        headers = {"X-Claude-Code-Session-Id": f"s-{i}"} if sessions else None
        client = anthropic.Anthropic(base_url=urls[k], api_key=token, max_retries=0, default_headers=headers)
        while True:
            try:
                with client.messages.stream(**body) as s:
                    s.get_final_message()
            except anthropic.RateLimitError as exc:
                with lock:
                    refusals.append(exc.body["error"]["type"])  # type: ignore[index]
                return
            with lock:
                served[k] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return served, refusals
