"""A real ``patchbay serve`` under two memory attacks, its resident size measured with psutil:

- an upstream that gzips its whole answer although asked not to: 1 MB that inflates to 1 GiB
  (the gateway inflated it whole, +2-3 GB);
- 24 clients each sending a 30 MB body at once (the gateway reached 2.7 GB and kept 2 GB);
- an event stream that starts an event and sends 300 MB without ending it.

The gateway must stay under 600 MB resident during each and come back below 200 MB after, and
answer every request: the bomb with a 502 that says what the upstream did, every big body with
the upstream's answer (bodies wait for room instead of all being held at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import orjson
import psutil
import pytest

from tests.e2e.conftest import GatewayProcess
from tests.fakes.hostile import HostileUpstream, gzip_bomb
from tests.fakes.upstreams import AnthropicJSON, FakeUpstream

MB = 1 << 20
PEAK_LIMIT = 600 * MB
AFTER_LIMIT = 200 * MB


class RSSWatch:
    """Samples a process's resident size every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.Error:
                return
            time.sleep(0.01)

    def __enter__(self) -> RSSWatch:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def settled(self, limit: int, within_s: float = 10.0) -> int:
        """The resident size once it is below ``limit`` (or after ``within_s``)."""
        deadline = time.monotonic() + within_s
        rss = self.rss()
        while rss >= limit and time.monotonic() < deadline:
            time.sleep(0.2)
            rss = self.rss()
        return rss


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as up:
        yield up


def test_gzip_bomb_answer_is_refused_without_inflating_it(
        hostile: HostileUpstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    gzip_bomb()  # built before the clock starts (the fake serves it from its cache)
    hostile.behave("gzip_bomb_200")
    gw = start_gateway("anthropic", hostile.url, model="claude-sonnet-4-5")
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.token, max_retries=0, timeout=120)
    with RSSWatch(gw.proc.pid) as watch:
        before = watch.rss()
        with pytest.raises(anthropic.APIStatusError) as err:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                   messages=[{"role": "user", "content": "hi"}])
    after = watch.settled(AFTER_LIMIT)
    print(f"gzip bomb: rss before {before / MB:.0f} MB, peak {watch.peak / MB:.0f} MB, after {after / MB:.0f} MB")
    assert err.value.status_code == 502
    body = err.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert 'The backend "fake"' in body["error"]["message"] and "larger than Patchbay's limit" in \
        body["error"]["message"]
    assert "bug in Patchbay" not in body["error"]["message"]
    assert watch.peak < PEAK_LIMIT, f"peak {watch.peak / MB:.0f} MB"
    assert after < AFTER_LIMIT, f"after {after / MB:.0f} MB"
    # the gateway still serves
    hostile.behave("html_200")
    with pytest.raises(anthropic.APIStatusError) as err2:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert err2.value.status_code == 502 and "HTML page" in str(err2.value)


def test_an_event_that_never_ends_is_cut_at_the_limit(
        hostile: HostileUpstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    hostile.behave("sse_no_boundary")
    gw = start_gateway("anthropic", hostile.url, model="claude-sonnet-4-5")
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.token, max_retries=0, timeout=120)
    with RSSWatch(gw.proc.pid) as watch:
        before = watch.rss()
        with pytest.raises(anthropic.APIStatusError) as err:
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                        messages=[{"role": "user", "content": "hi"}]) as s:
                s.get_final_message()
    after = watch.settled(AFTER_LIMIT)
    print(f"300 MB without an event's end: rss before {before / MB:.0f} MB, peak {watch.peak / MB:.0f} MB, "
          f"after {after / MB:.0f} MB")
    assert "without ending an event" in str(err.value) and "bug in Patchbay" not in str(err.value)
    assert watch.peak < PEAK_LIMIT, f"peak {watch.peak / MB:.0f} MB"
    assert after < AFTER_LIMIT, f"after {after / MB:.0f} MB"


def _big_body(size: int) -> bytes:
    """A Messages request of ``size`` bytes: one long prompt (as a pasted log or file is)."""
    head = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 16,
                         "messages": [{"role": "user", "content": ""}]})
    filler = b"log line 0123456789 abcdefghij " * (size // 31)
    cut = head.index(b'""') + 1
    return head[:cut] + filler[: size - len(head)] + head[cut:]


def test_many_big_bodies_at_once_stay_bounded_and_all_answered(
        start_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    up = FakeUpstream(AnthropicJSON({"id": "msg_1", "type": "message", "role": "assistant",
                                     "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "ok"}],
                                     "stop_reason": "end_turn", "stop_sequence": None,
                                     "usage": {"input_tokens": 10, "output_tokens": 1}}),
                      wire="anthropic", record=False)
    body = _big_body(30 * MB)
    with up:
        gw = start_gateway("anthropic", up.url, model="claude-sonnet-4-5")
        # the same 30 MB bytes object for every client: the test process holds one copy, not 24
        headers = {"content-type": "application/json", "x-api-key": gw.token, "anthropic-version": "2023-06-01"}

        def send(_: int) -> tuple[int, bytes]:
            with httpx.Client(timeout=120) as c:
                r = c.post(gw.url + "/v1/messages", content=body, headers=headers)
                return r.status_code, r.content

        with RSSWatch(gw.proc.pid) as watch:
            before = watch.rss()
            t0 = time.monotonic()
            with ThreadPoolExecutor(24) as pool:
                answers = list(pool.map(send, range(24)))
            took = time.monotonic() - t0
        after = watch.settled(AFTER_LIMIT)
    print(f"24 x 30 MB: {took:.1f} s, rss before {before / MB:.0f} MB, peak {watch.peak / MB:.0f} MB, "
          f"after {after / MB:.0f} MB")
    assert [s for s, _ in answers] == [200] * 24, [a[:300] for _, a in answers if _ != 200]
    assert all(orjson.loads(a)["content"][0]["text"] == "ok" for _, a in answers)
    assert watch.peak < PEAK_LIMIT, f"peak {watch.peak / MB:.0f} MB"
    assert after < AFTER_LIMIT, f"after {after / MB:.0f} MB"
