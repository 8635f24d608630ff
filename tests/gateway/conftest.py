"""The gateway on a real loopback port, in this process, in front of fake upstreams."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anthropic
import httpx
import pytest

from app.config import Config, parse_config
from app.events import Event, EventHub, EventQueue, RequestFinished
from app.host.secrets import resolve_backend_key
from app.proxy.server import ProxyRuntime
from app.proxy.thinking import BOOK
from tests.fakes import ThinkingSigner
from tests.fakes.upstreams import FakeUpstream

TOKEN = "pb-test-token"


@dataclass
class Gateway:
    runtime: ProxyRuntime
    queue: EventQueue
    seen: list[Event] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.runtime.url

    def client(self, **kw: object) -> anthropic.Anthropic:
        kw.setdefault("api_key", TOKEN)
        kw.setdefault("max_retries", 0)
        return anthropic.Anthropic(base_url=self.url, **kw)  # type: ignore[arg-type]

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)

    def events(self) -> list[Event]:
        self.seen.extend(self.queue.drain())
        return self.seen

    def finished(self, n: int = 1, timeout: float = 5.0) -> list[RequestFinished]:
        deadline = time.monotonic() + timeout
        while True:
            done = [e for e in self.events() if isinstance(e, RequestFinished)]
            if len(done) >= n or time.monotonic() > deadline:
                return done
            time.sleep(0.01)


def config_text(backends: list[dict[str, object]], active: str, model: str | None = None, extra: str = "") -> str:
    lines = ["[gateway]", "port = 0", "ping_interval_s = 10.0", extra, ""]
    for b in backends:
        lines.append("[[backends]]")
        for k, v in b.items():
            if isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            elif isinstance(v, (list, tuple)):
                lines.append(f"{k} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in v)}]")
            elif isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            else:
                lines.append(f"{k} = {v}")
        lines.append("")
    lines += ["[active]", f'backend = "{active}"'] + ([f'model = "{model}"'] if model else [])
    return "\n".join(lines)


@pytest.fixture
def fresh_book() -> Iterator[None]:
    """The gateway's book of thinking signatures (``app.proxy.thinking.BOOK``) empty before and after the test."""
    BOOK.clear()
    yield
    BOOK.clear()


@pytest.fixture
def signer() -> ThinkingSigner:
    """An Anthropic fake's guard that signs its own thinking and refuses blocks it did not sign."""
    return ThinkingSigner()


@pytest.fixture
def anthropic_up() -> Iterator[FakeUpstream]:
    with FakeUpstream(wire="anthropic", models=("claude-fake",)) as up:
        yield up


@pytest.fixture
def openai_up() -> Iterator[FakeUpstream]:
    with FakeUpstream(wire="openai", models=("gpt-fake",)) as up:
        yield up


@pytest.fixture
def start_gateway() -> Iterator:
    runtimes: list[ProxyRuntime] = []

    def start(config: Config | str, *, token: str | None = TOKEN, deltas: bool = True) -> Gateway:
        cfg = parse_config(config) if isinstance(config, str) else config
        q = EventQueue()
        hub = EventHub()
        hub.add(q.put, deltas=deltas)
        rt = ProxyRuntime(cfg, token=token, hub=hub, keys=resolve_backend_key)
        rt.start()
        runtimes.append(rt)
        return Gateway(rt, q)

    yield start
    for rt in runtimes:
        rt.stop(timeout=5)


@pytest.fixture
def two_backends(anthropic_up: FakeUpstream, openai_up: FakeUpstream, start_gateway) -> Gateway:  # type: ignore[no-untyped-def]
    return start_gateway(config_text([
        {"id": "claude", "kind": "anthropic", "base_url": anthropic_up.url, "auth": "none"},
        {"id": "oai", "kind": "openai", "base_url": openai_up.url + "/v1", "auth": "none",
         "models": ["gpt-fake", "gpt-other"], "max_output_tokens": 1000},
    ], active="oai"))
