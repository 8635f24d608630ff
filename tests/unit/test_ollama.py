"""The Ollama client and monitor against a fake Ollama on loopback (tests/fakes/ollama.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.host.ollama import (
    OllamaClient,
    OllamaError,
    OllamaMonitor,
    PullMeter,
    PullProgress,
    model_warnings,
    parse_ps,
)
from app.proxy.backends.probe import is_ollama_url
from tests.fakes.ollama import FakeOllama

GB = 1_000_000_000


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as ol:
        ol.add_model("qwen3-coder:30b", 18 * GB, family="qwen3moe", parameter_size="30.5B", quantization="Q4_K_M",
                     context_max=262144, capabilities=("completion", "tools"), loaded=True, context_length=4096)
        ol.add_model("gpt-oss:20b", 13 * GB, family="gptoss", parameter_size="20.9B", quantization="MXFP4",
                     context_max=131072, capabilities=("completion", "tools", "thinking"))
        yield ol


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_poll_reads_version_installed_loaded_and_details(ollama: FakeOllama):
    mon = OllamaMonitor(ollama.url)
    s = run(mon.poll())
    assert s.running is True and s.message is None and s.version == "0.12.6"
    assert [(m.name, m.size, m.quantization, m.parameter_size) for m in s.installed] == [
        ("gpt-oss:20b", 13 * GB, "MXFP4", "20.9B"), ("qwen3-coder:30b", 18 * GB, "Q4_K_M", "30.5B")]
    (loaded,) = s.loaded
    assert loaded.name == "qwen3-coder:30b" and loaded.context_length == 4096
    assert loaded.size == int(18 * GB * 1.1) and loaded.vram_share == 1.0
    assert loaded.expires_at is not None and 290 < loaded.expires_at - time.time() <= 300
    assert s.info["qwen3-coder:30b"].context_length == 262144  # model_info["qwen3moe.context_length"]
    assert s.info["gpt-oss:20b"].capabilities == ("completion", "tools", "thinking")
    assert s.info["gpt-oss:20b"].architecture == "gptoss"
    shows = len(ollama.requests_to("/api/show"))
    run(mon.poll())
    assert len(ollama.requests_to("/api/show")) == shows  # details are asked once per digest


def test_a_small_context_and_a_model_larger_than_free_vram_are_warned_about(ollama: FakeOllama):
    ollama.load("gpt-oss:20b", size_vram=int(13 * GB * 1.1 * 0.4), context_length=131072)
    ollama.add_model("llama3.3:70b", 42 * GB)
    s = run(OllamaMonitor(ollama.url).poll())
    w = model_warnings(s, free_vram=20 * GB)
    by = {(x.model, x.kind): x.text for x in w}
    assert set(by) == {("qwen3-coder:30b", "context"), ("gpt-oss:20b", "spill"), ("llama3.3:70b", "spill")}
    assert "4,096-token context" in by[("qwen3-coder:30b", "context")]
    assert "Claude Code needs at least 64k" in by[("qwen3-coder:30b", "context")]
    assert "OLLAMA_CONTEXT_LENGTH=65536" in by[("qwen3-coder:30b", "context")]
    assert "60% of it runs on the CPU" in by[("gpt-oss:20b", "spill")]
    assert "larger than the free GPU memory (20.0 GB)" in by[("llama3.3:70b", "spill")]
    # no GPU known: nothing is said about free memory
    assert {x.model for x in model_warnings(s, free_vram=None) if x.kind == "spill"} == {"gpt-oss:20b"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_down_says_so_backs_off_and_recovers_by_itself():
    port = _free_port()
    mon = OllamaMonitor(f"http://127.0.0.1:{port}", interval_s=3.0, max_backoff_s=60.0)
    assert mon.state.running is None
    delays = []
    for _ in range(7):
        s = run(mon.poll())
        assert s.running is False
        delays.append(s.next_check_s)
    assert s.message is not None and s.message.startswith(f"Ollama is not running at http://127.0.0.1:{port}.")
    assert delays == [3.0, 6.0, 12.0, 24.0, 48.0, 60.0, 60.0]
    with FakeOllama(port=port) as ol:  # Ollama comes up on that port
        ol.add_model("qwen3:8b")
        s = run(mon.poll())
        assert s.running is True and s.names == ["qwen3:8b"] and s.message is None
        assert mon.next_delay_s == 3.0
        ol.stop()  # and goes away again
        s = run(mon.poll())
        assert s.running is False and s.installed == () and mon.next_delay_s == 3.0
        ol.start()
        assert run(mon.poll()).running is True


def test_pull_streams_progress_and_installs_the_model(ollama: FakeOllama):
    ollama.script_pull("qwen3:8b", steps=5, total=5_000_000)
    client = OllamaClient(ollama.url)
    meter = PullMeter()

    async def pull() -> list[PullProgress]:
        out = []
        async for p in client.pull("qwen3:8b"):
            meter.add(p)
            out.append(p)
        return out

    lines = run(pull())
    assert lines[0].status == "pulling manifest" and lines[-1].done
    assert [p.completed for p in lines if p.total] == [1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000]
    assert meter.completed == meter.total == 5_000_000
    (req,) = ollama.requests_to("/api/pull")
    assert req.json == {"model": "qwen3:8b", "stream": True}
    assert "qwen3:8b" in [m.name for m in run(client.installed())]


def test_a_pull_that_fails_halfway_says_why_and_installs_nothing(ollama: FakeOllama):
    ollama.script_pull("qwen3:8b", steps=10, fail_after=4, error="max retries exceeded: unexpected EOF")
    client = OllamaClient(ollama.url)
    seen: list[PullProgress] = []

    async def pull() -> None:
        async for p in client.pull("qwen3:8b"):
            seen.append(p)

    with pytest.raises(OllamaError) as info:
        run(pull())
    assert str(info.value) == "Pulling qwen3:8b failed: max retries exceeded: unexpected EOF."
    assert [p.completed for p in seen if p.total][-1] == 4 * 50_000_000 // 10
    assert "qwen3:8b" not in [m.name for m in run(client.installed())]


def test_a_pull_refused_before_any_progress_gives_ollamas_words(ollama: FakeOllama):
    ollama.script_pull("nosuch:1b", status=500, error="pull model manifest: file does not exist")

    async def pull() -> None:
        async for _ in OllamaClient(ollama.url).pull("nosuch:1b"):
            pass

    with pytest.raises(OllamaError, match=r"^Ollama could not pull nosuch:1b: pull model manifest: file does not "
                                          r"exist\.$"):
        run(pull())


def test_cancelling_a_pull_closes_the_connection_and_installs_nothing(ollama: FakeOllama):
    ollama.script_pull("qwen3:8b", steps=200, delay_s=0.02)
    client = OllamaClient(ollama.url)
    seen: list[PullProgress] = []

    async def main() -> None:
        async def pull() -> None:
            async for p in client.pull("qwen3:8b"):
                seen.append(p)

        task = asyncio.ensure_future(pull())
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert not seen[-1].done
    (req,) = ollama.requests_to("/api/pull")
    deadline = time.monotonic() + 5
    while req.outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert req.outcome == "peer-closed"  # the fake saw the client go away mid-stream
    assert "qwen3:8b" not in [m.name for m in run(client.installed())]


def test_unload_and_remove(ollama: FakeOllama):
    client = OllamaClient(ollama.url)
    run(client.unload("qwen3-coder:30b"))
    (req,) = ollama.requests_to("/api/generate")
    assert req.json == {"model": "qwen3-coder:30b", "keep_alive": 0}
    assert run(client.loaded()) == ()
    run(client.remove("gpt-oss:20b"))
    (req,) = ollama.requests_to("/api/delete", method="DELETE")
    assert req.json == {"model": "gpt-oss:20b"}
    assert [m.name for m in run(client.installed())] == ["qwen3-coder:30b"]
    with pytest.raises(OllamaError, match=r"^Ollama could not remove gpt-oss:20b: model 'gpt-oss:20b' not found\.$"):
        run(client.remove("gpt-oss:20b"))


def test_a_bad_model_name_is_refused_before_asking(ollama: FakeOllama):
    async def pull() -> None:
        async for _ in OllamaClient(ollama.url).pull("qwen 3; rm -rf"):
            pass

    with pytest.raises(OllamaError, match="is not a model name"):
        run(pull())
    assert ollama.requests_to("/api/pull") == []


def test_something_else_on_the_port_is_named():
    from tests.fakes.upstreams import FakeUpstream, Raw

    with FakeUpstream(Raw(200, {"content-type": "text/html"}, "<html>hello</html>")) as up:
        s = run(OllamaMonitor(up.url).poll())
    assert s.running is False and "not Ollama's API" in (s.message or "")


def test_ps_times_and_ollama_urls():
    (m,) = parse_ps({"models": [{"name": "a", "size": 10, "size_vram": 4,
                                 "expires_at": "2024-06-04T14:38:31.83753-07:00"}]})
    assert m.expires_at == pytest.approx(1717537111.83753) and m.vram_share == 0.4 and m.context_length is None
    assert is_ollama_url("http://localhost:11434", "http://127.0.0.1:11434")
    assert is_ollama_url("http://127.0.0.1:11434/v1", "http://localhost:11434")
    assert is_ollama_url("http://gpu-box:8080/v1", "http://gpu-box:8080")
    assert not is_ollama_url("https://api.deepseek.com/v1", "http://localhost:11434")
    assert not is_ollama_url("http://127.0.0.1:1234/v1", "http://localhost:11434")  # LM Studio


def test_pull_meter_sums_layers_and_measures_speed():
    m = PullMeter(window_s=3.0)
    m.add(PullProgress("pulling a", "a", 100, 0), now=0.0)
    m.add(PullProgress("pulling b", "b", 300, 0), now=0.0)
    m.add(PullProgress("pulling a", "a", 100, 100), now=1.0)
    m.add(PullProgress("pulling b", "b", 300, 150), now=2.0)
    assert (m.completed, m.total) == (250, 400)
    assert m.bytes_per_s == pytest.approx(125.0)
    resumed = PullMeter()  # a layer half fetched by an earlier pull: only new bytes make the speed
    resumed.add(PullProgress("pulling manifest"), now=0.0)
    resumed.add(PullProgress("pulling c", "c", 1000, 500), now=1.0)
    resumed.add(PullProgress("pulling c", "c", 1000, 600), now=2.0)
    assert (resumed.completed, resumed.fetched, resumed.bytes_per_s) == (600, 100, pytest.approx(100.0))
