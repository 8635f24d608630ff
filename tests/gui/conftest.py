"""Qt tests run offscreen, against the real engine and gateway in front of fake upstreams."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest

from app.bridge.data_team import TeamView
from app.bridge.team_read import read_team
from app.budgets.limits import period_bounds
from app.catalog.prices import PriceBook
from app.config import Config
from app.events import RequestFinished
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.team.keystore_sqlite import SqliteKeyStore
from tests.fakes.upstreams import FakeUpstream

pytestmark = pytest.mark.gui


@pytest.fixture(scope="session")
def qasync_loop(qapp):  # type: ignore[no-untyped-def]
    """The app's asyncio loop on Qt's (qasync): coroutines run while pytest-qt spins Qt's loop."""
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    # name lookups ("localhost") run in the loop's executor: plain threads, which end quietly with
    # the test process (qasync's default, QThreads, complain when the process exits under them)
    executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="qasync-test-executor")
    loop.set_default_executor(executor)
    asyncio.events._set_running_loop(None)  # running only while a GUI test runs (see below)
    yield loop
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)
    executor.shutdown(wait=False)


@pytest.fixture(autouse=True)
def _qasync_running(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Mark the qasync loop as the running loop during each GUI test only, so tests outside
    tests/gui that start their own asyncio loop never find Qt's loop still "running"."""
    if "qasync_loop" not in request.fixturenames:
        yield
        return
    loop = request.getfixturevalue("qasync_loop")
    asyncio.set_event_loop(loop)
    asyncio.events._set_running_loop(loop)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream(wire="anthropic", models=("claude-fake", "claude-fake-large")) as a, \
            FakeUpstream(wire="openai", models=("gpt-fake", "gpt-other", "gpt-listed")) as b:
        yield a, b


def write_config(path: Path, alpha_url: str, beta_url: str, extra: str = "", port: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""
[gateway]
port = {port}

[[backends]]
id = "alpha"
kind = "anthropic"
base_url = "{alpha_url}"
auth = "none"
local = false

[[backends]]
id = "beta"
kind = "openai"
base_url = "{beta_url}/v1"
auth = "none"
models = ["gpt-fake", "gpt-other"]
local = false

[active]
backend = "alpha"

[[prices]]
model = "claude-fake"
input = 3.0
output = 15.0

[[prices]]
model = "gpt-fake"
input = 1.0
output = 2.0
{extra}
""", encoding="utf-8")
    return path


@pytest.fixture
def config_file(patchbay_home: Path, upstreams: tuple[FakeUpstream, FakeUpstream]) -> Path:
    a, b = upstreams
    return write_config(patchbay_home / "config.toml", a.url, b.url)


@dataclass
class Running:
    app: Any  # app.gui.App

    @property
    def bridge(self) -> Any:
        return self.app.bridge

    @property
    def window(self) -> Any:
        return self.app.window

    @property
    def url(self) -> str:
        return self.bridge.gateway().url

    def client(self, session: str | None = None) -> anthropic.Anthropic:
        headers = {"X-Claude-Code-Session-Id": session} if session else {}
        return anthropic.Anthropic(base_url=self.url, api_key=self.bridge.settings.gateway_token(), max_retries=0,
                                   default_headers=headers, timeout=20.0)


def send_in_thread(qtbot: Any, fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run a blocking client call off the GUI thread while Qt keeps spinning; return its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=int(timeout * 1000))
    if "error" in box:
        raise box["error"]
    return box.get("result")


def ask(running: Running, qtbot: Any, text: str = "hi", session: str | None = None, stream: bool = True,
        model: str = "claude-fake") -> Any:
    def call() -> Any:
        c = running.client(session)
        if stream:
            with c.messages.stream(model=model, max_tokens=64,
                                   messages=[{"role": "user", "content": text}]) as s:
                return s.get_final_message()
        return c.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": text}])

    return send_in_thread(qtbot, call)


@pytest.fixture
def start_app(qtbot, qasync_loop, patchbay_home) -> Iterator[Callable[..., Running]]:  # type: ignore[no-untyped-def]
    from app.gui import App

    apps: list[Any] = []

    def start(config: Path | None = None, *, expect_ok: bool = True, **kw: Any) -> Running:
        app = App(config, use_system_tray=False, **kw)
        # pytest-qt closes the window before this fixture quits the app; with no tray, closing is Quit,
        # which asks while Claude Code is connected (tests/gui/test_quit.py): no modal question then
        app.ask_on_quit = lambda *_a: ("cancel", False)
        apps.append(app)
        qtbot.addWidget(app.window)
        ok = app.start()
        if expect_ok:
            assert ok, [m.text for m in app.window.messages()]
        app.show_window()
        return Running(app)

    yield start
    for app in apps:
        app.quit()


def wait_for(qtbot: Any, pred: Callable[[], Any], timeout: float = 10.0) -> None:
    qtbot.waitUntil(lambda: bool(pred()), timeout=int(timeout * 1000))


def now() -> float:
    return time.time()


def halfway_today(now: float) -> float:
    """A moment today (and this month) before ``now``, whenever the test runs."""
    today = period_bounds("day", now)[0]
    return today + (now - today) / 2


def team_view(cfg: Config, ledger_file: Path, events: Iterable[RequestFinished],
              now: float) -> tuple[TeamView, str | None]:
    """Record ``events`` in a real SQLite ledger at ``ledger_file`` (priced by ``cfg``), then read the
    team's view of it as the bridge does (``read_team``): the view and the problem, if any."""
    led = Ledger(ledger_file, prices=PriceBook.load(cfg))
    led.start()
    for e in events:
        led.record(e)
    assert led.flush()
    led.close()
    store, reader = SqliteKeyStore(ledger_file), LedgerReader(ledger_file)
    try:
        assert cfg.team is not None
        return read_team(cfg.team, store, reader, cfg.budgets, now=now)
    finally:
        reader.close()
        store.close()
