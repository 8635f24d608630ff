"""The Monitor page against a fake Ollama on loopback, and the hardware plots and tray tooltip with
psutil for real and NVML through a fake of the pynvml module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QInputDialog, QMessageBox

from app.host.hardware import HardwareSampler, NvmlSampler
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.nvml import FakeNvml
from tests.fakes.ollama import FakeOllama
from tests.fakes.upstreams import AnthropicStream
from tests.gui.conftest import ask, wait_for, write_config

GB = 1_000_000_000  # model sizes, the way Ollama counts them
GiB = 1024**3  # memory


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as ol:
        ol.add_model("qwen3-coder:30b", 18 * GB, family="qwen3moe", parameter_size="30.5B", quantization="Q4_K_M",
                     context_max=262144, loaded=True, context_length=4096)
        ol.add_model("gpt-oss:20b", 13 * GB, family="gptoss", parameter_size="20.9B", quantization="MXFP4",
                     context_max=131072)
        yield ol


@pytest.fixture
def config(patchbay_home: Path, upstreams: Any, ollama: FakeOllama) -> Path:
    a, b = upstreams
    extra = f"""
[[backends]]
id = "ollama"
kind = "anthropic"
base_url = "{ollama.url}"
auth = "none"

[ollama]
url = "{ollama.url}"
"""
    return write_config(patchbay_home / "config.toml", a.url, b.url, extra)


def monitor(r: Any) -> Any:
    r.window.show_page("monitor")
    return r.window.page("monitor")


def row(page: Any, name: str) -> Any:
    i = page.models.find(name)
    return page.models.row(i) if i >= 0 else None


def cell(page: Any, name: str, column: int) -> str:
    return page.models.index(page.models.find(name), column).data()


def test_installed_and_loaded_models_with_their_warnings(start_app, config, ollama, qtbot):
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: page.models.rowCount() == 2)
    assert "Ollama 0.12.6 at " + ollama.url in page.ollama_label.text()
    assert "2 installed · 1 loaded" in page.ollama_label.text()
    assert cell(page, "qwen3-coder:30b", 1) == "18.0 GB"
    assert cell(page, "qwen3-coder:30b", 3) == "Q4_K_M"
    assert cell(page, "qwen3-coder:30b", 4) == "4k of 256k"  # loaded with / trained for
    assert cell(page, "qwen3-coder:30b", 6) == "100% GPU"
    assert cell(page, "gpt-oss:20b", 4) == "max 128k" and cell(page, "gpt-oss:20b", 6) == "—"
    assert cell(page, "gpt-oss:20b", 5) == "on disk"
    assert page.warnings_label.isVisible()
    assert "Claude Code needs at least 64k" in page.warnings_label.text()
    assert "OLLAMA_CONTEXT_LENGTH=65536" in page.warnings_label.text()
    assert cell(page, "qwen3-coder:30b", 0).endswith("⚠")


def test_pull_shows_progress_with_bytes_and_speed_then_lists_the_model_everywhere(start_app, config, ollama,
                                                                                   qtbot, monkeypatch):
    ollama.script_pull("qwen3:8b", steps=40, total=5 * GB, delay_s=0.03)
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: page.pull_button.isEnabled())
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("qwen3:8b", True))
    page.pull_button.click()
    assert not page.pull_button.isEnabled()  # one pull at a time
    wait_for(qtbot, lambda: page.pull_bar.isVisible() and page.pull_bar.value() > 0)
    text = page.pull_text.text()
    assert text.startswith("Pulling qwen3:8b · pulling ") and " of 5.0 GB" in text
    wait_for(qtbot, lambda: "/s" in page.pull_text.text())  # the speed, once there are two samples
    assert page.cancel_button.isVisible()
    wait_for(qtbot, lambda: page.pull_text.text() == "✓ qwen3:8b pulled (5.0 GB)")
    assert not page.pull_bar.isVisible()
    wait_for(qtbot, lambda: row(page, "qwen3:8b") is not None)
    (req,) = ollama.requests_to("/api/pull")
    assert req.json == {"model": "qwen3:8b", "stream": True}

    # the tray's model submenu for the Ollama backend shows what is installed now
    tray = r.app.tray
    tray.backend_actions["ollama"].trigger()
    tray.models_menu.aboutToShow.emit()
    wait_for(qtbot, lambda: "qwen3:8b" in tray.model_actions)
    assert {"qwen3-coder:30b", "gpt-oss:20b", "qwen3:8b"} <= set(tray.model_actions)
    assert ollama.requests_to("/api/tags", method="GET")


def test_a_pull_that_fails_halfway_says_why(start_app, config, ollama, qtbot, monkeypatch):
    ollama.script_pull("qwen3:8b", steps=10, fail_after=5, error="max retries exceeded: unexpected EOF", delay_s=0.01)
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: page.pull_button.isEnabled())
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("qwen3:8b", True))
    page.pull_button.click()
    wait_for(qtbot, lambda: "failed" in page.pull_text.text())
    assert "Pulling qwen3:8b failed: max retries exceeded: unexpected EOF." in page.pull_text.text()
    assert not page.pull_bar.isVisible() and page.pull_button.isEnabled()
    assert any(m.title == "qwen3:8b was not pulled" for m in r.window.messages())
    assert row(page, "qwen3:8b") is None


def test_a_bad_name_is_refused_without_asking_ollama(start_app, config, ollama, qtbot, monkeypatch):
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: page.pull_button.isEnabled())
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("qwen 3 please", True))
    page.pull_button.click()
    assert "is not a model name" in page.pull_text.text()
    assert ollama.requests_to("/api/pull") == []


def test_cancel_stops_the_download(start_app, config, ollama, qtbot, monkeypatch):
    ollama.script_pull("qwen3:8b", steps=400, total=5 * GB, delay_s=0.02)
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: page.pull_button.isEnabled())
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("qwen3:8b", True))
    page.pull_button.click()
    wait_for(qtbot, lambda: page.pull_bar.value() > 0)
    page.cancel_button.click()
    wait_for(qtbot, lambda: "cancelled" in page.pull_text.text())
    assert page.pull_text.text().startswith("Pull of qwen3:8b cancelled at ")
    (req,) = ollama.requests_to("/api/pull")
    wait_for(qtbot, lambda: req.outcome == "peer-closed")  # the connection closed mid-stream
    assert r.bridge.monitor.pulling() == [] and row(page, "qwen3:8b") is None


def test_unload_and_remove_call_the_server(start_app, config, ollama, qtbot, monkeypatch):
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: page.models.rowCount() == 2)
    page.select_model("gpt-oss:20b")
    assert not page.unload_button.isEnabled()  # not loaded
    page.select_model("qwen3-coder:30b")
    assert page.unload_button.isEnabled()
    page.unload_button.click()
    wait_for(qtbot, lambda: not row(page, "qwen3-coder:30b").loaded)
    (req,) = ollama.requests_to("/api/generate")
    assert req.json == {"model": "qwen3-coder:30b", "keep_alive": 0}
    assert not page.warnings_label.isVisible()  # nothing loaded with a small context any more

    page.select_model("gpt-oss:20b")
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _p, _t, text, *a: asked.append(text) or
                        QMessageBox.StandardButton.No)
    page.remove_button.click()
    assert asked and "Delete gpt-oss:20b (13.0 GB) from disk?" in asked[0]
    assert ollama.requests_to("/api/delete", method="DELETE") == []  # asked first, and the answer was no
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    page.remove_button.click()
    wait_for(qtbot, lambda: row(page, "gpt-oss:20b") is None)
    (req,) = ollama.requests_to("/api/delete", method="DELETE")
    assert req.json == {"model": "gpt-oss:20b"}


def test_ollama_down_is_said_and_it_recovers_by_itself(start_app, config, ollama, qtbot):
    ollama.stop()
    r = start_app(config)
    page = monitor(r)
    wait_for(qtbot, lambda: "not running" in page.ollama_label.text())
    assert f"Ollama is not running at {ollama.url}." in page.ollama_label.text()
    assert "Next check in 3 s." in page.ollama_label.text()
    assert "`" not in page.ollama_label.text() and "“ollama serve”" in page.ollama_label.text()  # rich text: no backticks
    assert not page.pull_button.isEnabled() and page.models.rowCount() == 0
    ollama.start()  # no click: the next scheduled poll finds it
    wait_for(qtbot, lambda: page.models.rowCount() == 2, timeout=15)
    assert "Ollama 0.12.6" in page.ollama_label.text()


def test_no_gpu_is_said_in_words_and_cpu_ram_are_plotted(start_app, config, qtbot):
    r = start_app(config, hardware_factory=lambda: HardwareSampler([]))
    page = monitor(r)
    wait_for(qtbot, lambda: len(page.history) >= 1 and page.cpu.curve.getData()[0] is not None)
    assert page.gpu.absent and page.gpu.note.toPlainText() == "No GPU found on this machine"
    assert page.gpu.curve.getData()[0] is None or len(page.gpu.curve.getData()[0]) == 0
    assert page.vram.absent
    assert " of " in page.ram.value.text() and page.cpu.value.text().endswith("%")
    assert "<b>No GPU found</b>: local models run on the CPU." in page.hw_label.text()  # not "(no GPU found)"
    tray = r.app.tray
    tray.backend_actions["ollama"].trigger()
    assert "no GPU found · CPU " in tray.tooltip()


def test_gpu_plots_and_the_tray_tooltip_with_an_nvidia_gpu(start_app, config, ollama, qtbot):
    nvml = FakeNvml([{"name": "NVIDIA GeForce RTX 4090", "util": 87, "mem": (20 * GiB, 24 * GiB), "temp": 71,
                      "power_mw": 312_500, "procs": [(4242, 19 * GiB)]}])
    r = start_app(config, hardware_factory=lambda: HardwareSampler([NvmlSampler(nvml)]))
    page = monitor(r)
    wait_for(qtbot, lambda: not page.gpu.absent and page.gpu.value.text() == "87%")
    xs, ys = page.gpu.curve.getData()
    assert len(xs) >= 1 and set(ys) == {87.0}
    assert page.vram.value.text() == "20.0 of 24.0 GiB"
    assert "NVIDIA GeForce RTX 4090</b> · 71 °C · 312 W" in page.hw_label.text()
    tray = r.app.tray
    assert "GPU" not in tray.tooltip()  # the active backend is remote: no GPU talk
    tray.backend_actions["ollama"].trigger()
    assert tray.tooltip().endswith("\nGPU 87% · VRAM 20.0 of 24.0 GiB")


def test_local_tokens_per_second_come_from_requests_served_locally(start_app, config, ollama, upstreams, qtbot):
    r = start_app(config)
    page = monitor(r)
    ask(r, qtbot, "remote", model="claude-fake")  # the active backend (alpha) is not local
    assert sum(r.bridge.monitor.local_throughput()[1]) == 0
    ollama.up.enqueue(AnthropicStream(anthropic_text_events("local answer " * 20, pieces=10, usage=(50, 400),
                                                            model="qwen3-coder:30b"),
                                      delay_s=0.03), match=lambda req: req.path == "/v1/messages")
    r.app.tray.backend_actions["ollama"].trigger()
    ask(r, qtbot, "local", model="qwen3-coder:30b")
    # all 400 output tokens, spread over the seconds they streamed in (shown once each second is over)
    wait_for(qtbot, lambda: sum(r.bridge.monitor.local_throughput()[1]) == pytest.approx(400.0))
    wait_for(qtbot, lambda: page.tps.curve.getData()[1] is not None and max(page.tps.curve.getData()[1]) > 0)
    assert ollama.requests_to("/v1/messages")
    wait_for(qtbot, lambda: page.models.rowCount() == 2)
    r.bridge.monitor.refresh_ollama()
    wait_for(qtbot, lambda: cell(page, "qwen3-coder:30b", 7) == "now")  # last used
