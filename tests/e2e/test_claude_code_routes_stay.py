"""Routes that stay on, with the real Claude Code CLI through a gateway subprocess:

- a model written ``backend,model`` (``/model main,main-model``, which Claude Code keeps as the
  default for new sessions; here ``--model``) replaces the main model only: ``[routes]`` rules
  still take the requests they match;
- ``[routes] image`` takes the turn that carries a screenshot (Claude Code's Read of a PNG comes
  back as an image inside a tool result), and the turn after it goes back to the main backend;
- a tool loop with thinking ``enabled`` (``MAX_THINKING_TOKENS`` on a Claude 4.5 model name) that
  started on an OpenAI-compatible backend fails over to Claude mid-loop, and Claude (a fake that
  enforces Anthropic's "a final `assistant` message must start with a thinking block" rule with
  its wording) answers it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import spawn_gateway
from tests.e2e.test_claude_code import CONTENT, PROMPT, _explain, _turns, anthropic_responder
from tests.fakes import (
    AnthropicStream,
    FakeUpstream,
    OpenAIStream,
    ReceivedRequest,
    Response,
    ThinkingSigner,
    anthropic_text_events,
    anthropic_tool_use_events,
    openai_error,
    openai_tool_call_chunks,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult

pytestmark = pytest.mark.e2e


def _backends(**ups: tuple[str, FakeUpstream]) -> str:
    text = "[gateway]\nport = 0\n\n"
    for name, (kind, up) in ups.items():
        url = up.url + "/v1" if kind == "openai" else up.url
        models = 'models = ["deep-chat"]\n' if kind == "openai" else ""
        text += f'[[backends]]\nid = "{name}"\nkind = "{kind}"\nbase_url = "{url}"\nauth = "none"\n{models}\n'
    return text


def _rows(home: Path) -> list[tuple[str, str, str]]:
    from app.ledger.reader import LedgerReader

    reader = LedgerReader(home / "data" / "usage.sqlite3")
    try:
        rows = reader.requests(limit=50)
    finally:
        reader.close()
    return [(r.route, r.backend, r.requested_model) for r in sorted(rows, key=lambda r: r.started_at) if r.status == 200]


def _last_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results of the turn being answered (Claude Code may put a system message after it)."""
    messages = [m for m in body.get("messages") or [] if m.get("role") != "system"]
    content = messages[-1].get("content") if messages else None
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
        if isinstance(content, list) else []


def test_an_explicit_model_leaves_the_routes_on(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                tmp_path: Path) -> None:
    target = workdir / "hello.txt"
    with FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as main, \
            FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as side:
        config = _backends(main=("anthropic", main), side=("anthropic", side))
        # Claude Code's requests are ~50 KB: every one is "long" against this threshold
        config += '[active]\nbackend = "main"\n\n[routes]\nlong_context = "side,side-model"\n' \
                  "long_context_threshold = 1000\n"
        gw = spawn_gateway(config, tmp_path / "patchbay-home")
        try:
            result = run_claude(PROMPT, base_url=gw.url, cwd=workdir,
                                args=("--model", "main,main-model", "--output-format", "json",
                                      "--allowedTools", "Write"))
        finally:
            gw.stop()
        assert result.returncode == 0 and target.read_text() == CONTENT, _explain(result, side, gw)
        assert [t.json["model"] for t in _turns(side, "/v1/messages")] == ["side-model"] * 2
        assert not _turns(main, "/v1/messages")
    assert _rows(tmp_path / "patchbay-home") == [("long_context", "side", "main,main-model")] * 2


def _png() -> bytes:
    """A valid 16×16 grey PNG (Claude Code's Read sends a PNG back as an image block)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\x80" * 16 for _ in range(16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_the_image_route_takes_the_screenshot_turn_only(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                         tmp_path: Path) -> None:
    shot, target = workdir / "shot.png", workdir / "hello.txt"
    shot.write_bytes(_png())
    read = AnthropicStream(anthropic_tool_use_events([("Read", {"file_path": str(shot)})], ids=["toolu_read_1"],
                                                     msg_id="msg_read"))
    write = AnthropicStream(anthropic_tool_use_events([("Write", {"file_path": str(target), "content": CONTENT})],
                                                      ids=["toolu_write_1"], msg_id="msg_write"))
    done = AnthropicStream(anthropic_text_events("Done.", 2, msg_id="msg_done"))  # Claude Code merges same ids

    def main_turns(req: ReceivedRequest) -> Response | None:
        body = req.json or {}
        if not req.path.endswith("/v1/messages") or not body.get("tools"):
            return None
        answered = {r.get("tool_use_id") for m in body.get("messages", []) if isinstance(m.get("content"), list)
                    for r in m["content"] if isinstance(r, dict) and r.get("type") == "tool_result"}
        return done if "toolu_write_1" in answered else read

    with FakeUpstream(main_turns, wire="anthropic") as main, FakeUpstream(wire="anthropic") as eyes:
        eyes.set_default(lambda req: write if (req.json or {}).get("tools") else None)
        config = _backends(main=("anthropic", main), eyes=("anthropic", eyes))
        config += '[active]\nbackend = "main"\n\n[routes]\nimage = "eyes,eyes-model"\n'
        gw = spawn_gateway(config, tmp_path / "patchbay-home")
        try:
            result = run_claude("look at shot.png, then write the file", base_url=gw.url, cwd=workdir,
                                args=("--output-format", "json", "--allowedTools", "Read,Write"))
        finally:
            gw.stop()
        assert result.returncode == 0 and target.read_text() == CONTENT, _explain(result, eyes, gw)
        seen = _turns(eyes, "/v1/messages")
        assert len(seen) == 1 and any(b.get("type") == "image" for r in _last_results(seen[0].json)
                                      for b in r.get("content") or [] if isinstance(b, dict)), _explain(result, eyes, gw)
        assert len(_turns(main, "/v1/messages")) == 2  # the request after the screenshot came back
    routes = [r[:2] for r in _rows(tmp_path / "patchbay-home")]
    assert routes[-3:] == [("active", "main"), ("image", "eyes"), ("active", "main")]


def test_a_thinking_tool_loop_fails_over_to_claude(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                   tmp_path: Path) -> None:
    target = workdir / "hello.txt"
    signer = ThinkingSigner()
    write = OpenAIStream(openai_tool_call_chunks([("Write", {"file_path": str(target), "content": CONTENT})],
                                                 ids=["call_write_1"]))

    def deep_turns(req: ReceivedRequest) -> Response | None:
        body = req.json or {}
        if not req.path.endswith("/chat/completions") or not body.get("tools"):
            return None
        if any(m.get("role") == "tool" for m in body.get("messages", [])):
            return openai_error(503, "The server is overloaded, please try again later.", "server_error")
        return write

    claude_done = AnthropicStream(signer.text_events("the file is written", "I wrote hello.txt."))
    with FakeUpstream(deep_turns, wire="openai") as deep, \
            FakeUpstream(wire="anthropic", guard=signer.guard) as claude:
        claude.set_default(lambda req: claude_done if (req.json or {}).get("tools") else None)
        config = _backends(deep=("openai", deep), claude=("anthropic", claude))
        config += '[active]\nbackend = "deep"\n\n[routes]\nfallback = ["claude"]\n'
        gw = spawn_gateway(config, tmp_path / "patchbay-home")
        try:
            result = run_claude(PROMPT, base_url=gw.url, cwd=workdir, extra_env={"MAX_THINKING_TOKENS": "8000"},
                                args=("--model", "claude-sonnet-4-5", "--output-format", "json",
                                      "--allowedTools", "Write"))
        finally:
            gw.stop()
        assert result.returncode == 0 and result.json.get("is_error") is False, _explain(result, claude, gw)
        assert target.read_text() == CONTENT and signer.refused == []
        first = _turns(deep, "/chat/completions")[0]
        assert first.json["messages"]  # the loop started on the OpenAI-compatible backend
        sent = _turns(claude, "/v1/messages")
        assert len(sent) == 1 and "thinking" not in sent[0].json, _explain(result, claude, gw)
    assert [r[:2] for r in _rows(tmp_path / "patchbay-home")][-1] == ("fallback:1", "claude")
