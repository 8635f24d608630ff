"""The real Claude Code CLI, end to end: claude -p → gateway subprocess → fake upstream.

The fake upstream answers a model turn that offers tools with a ``Write`` tool call, and the
turn that carries its result with a short text; any other request Claude Code makes (title
generation, count_tokens, …) gets a short text or a built-in answer. Claude Code must write the
file and finish after two turns, and the upstream must have seen both turns in its own wire
format, the second carrying the tool result tied to the first answer's call id.

The first test runs the CLI straight against the Anthropic fake: it proves the harness and the
fake, so that when only the gateway tests fail, the gateway is at fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes import (
    AnthropicJSON,
    AnthropicStream,
    FakeUpstream,
    OpenAIJSON,
    OpenAIStream,
    ReceivedRequest,
    Response,
    anthropic_message,
    anthropic_text_events,
    anthropic_tool_use_events,
    openai_completion,
    openai_text_chunks,
    openai_tool_call_chunks,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult, GatewayProcess

pytestmark = pytest.mark.e2e

CONTENT = "hello from patchbay\n"
CALL_ID = "call_patchbay_write_1"
TOOLU_ID = "toolu_patchbay_write_1"
PROMPT = "write the file"


# --------------------------------------------------------------------------- scripted upstreams


def openai_responder(file_path: str) -> Callable[[ReceivedRequest], Response | None]:
    write = OpenAIStream(openai_tool_call_chunks([("Write", {"file_path": file_path, "content": CONTENT})],
                                                 pieces=6, ids=[CALL_ID]), split="awkward")
    done = OpenAIStream(openai_text_chunks("I wrote hello.txt.", 4, usage=(30, 6, 10)), split="awkward")
    short = OpenAIStream(openai_text_chunks("Writing a file", 2, usage=(5, 3, 0)))
    short_json = OpenAIJSON(openai_completion("Writing a file"))

    def respond(req: ReceivedRequest) -> Response | None:
        if not req.path.endswith("/chat/completions"):
            return None
        body: dict[str, Any] = req.json or {}
        if not body.get("tools"):
            return short if req.is_stream else short_json
        if any(m.get("role") == "tool" for m in body.get("messages", [])):
            return done
        return write

    return respond


def _has_tool_result(body: dict[str, Any]) -> bool:
    return any(
        isinstance(m.get("content"), list) and any(b.get("type") == "tool_result" for b in m["content"])
        for m in body.get("messages", [])
    )


def anthropic_responder(file_path: str) -> Callable[[ReceivedRequest], Response | None]:
    write = AnthropicStream(anthropic_tool_use_events([("Write", {"file_path": file_path, "content": CONTENT})],
                                                      pieces=6, ids=[TOOLU_ID], usage=(40, 20, 0, 30)),
                            split="awkward")
    done = AnthropicStream(anthropic_text_events("I wrote hello.txt.", 4, usage=(50, 6, 30, 0)), split="awkward")
    short = AnthropicStream(anthropic_text_events("Writing a file", 2))
    short_json = AnthropicJSON(anthropic_message("Writing a file"))

    def respond(req: ReceivedRequest) -> Response | None:
        if not req.path.endswith("/v1/messages"):
            return None
        body: dict[str, Any] = req.json or {}
        if not body.get("tools"):
            return short if req.is_stream else short_json
        return done if _has_tool_result(body) else write

    return respond


# --------------------------------------------------------------------------- checks


def _explain(result: ClaudeResult, up: FakeUpstream, gw: GatewayProcess | None) -> str:
    seen = "\n".join(f"  {r.method} {r.path}?{r.query} tools={r.has_tools} outcome={r.outcome}" for r in up.requests)
    text = f"claude: {result.describe()}\nupstream saw:\n{seen or '  nothing'}"
    if gw is not None:
        text += f"\ngateway stderr:\n{gw.log()[-4000:]}"
    return text


def _check_claude_wrote_the_file(result: ClaudeResult, target: Path, up: FakeUpstream,
                                 gw: GatewayProcess | None) -> None:
    why = _explain(result, up, gw)
    assert result.returncode == 0, why
    out = result.json
    assert out.get("is_error") is False, why
    assert out.get("num_turns") == 2, why
    assert target.exists(), why
    assert target.read_text() == CONTENT


def _check_the_gateway_recorded(gw: GatewayProcess, expected: list[tuple[int, int, int, int]]) -> None:
    """Both model turns reached the ledger with their usage (input, output, cache read, cache write)."""
    from app.ledger.reader import LedgerReader

    gw.stop()  # a clean stop flushes the ledger writer
    reader = LedgerReader(gw.home / "data" / "usage.sqlite3")
    try:
        rows = reader.requests(limit=100)
    finally:
        reader.close()
    seen = [(r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens) for r in rows
            if r.error_type is None and r.status == 200]
    for usage in expected:
        assert usage in seen, (usage, seen)
    assert all(r.client and r.client.startswith("claude-cli/") for r in rows)
    assert len({r.session_id for r in rows}) == 1 and rows[0].session_id
    totals = json.loads(gw.cli("usage", "--json", "--by", "backend").stdout)
    assert totals["total"]["requests"] == len(rows) >= 2


def _turns(up: FakeUpstream, path_suffix: str) -> list[ReceivedRequest]:
    """The model turns of the main agent: generation requests that offer tools."""
    return [r for r in up.requests_to(path_suffix) if r.has_tools]


# --------------------------------------------------------------------------- tests


def test_claude_code_against_the_fake_upstream_directly(run_claude: Callable[..., ClaudeResult],
                                                        workdir: Path) -> None:
    target = workdir / "hello.txt"
    with FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as up:
        result = run_claude(PROMPT, base_url=up.url, cwd=workdir, token="direct")
    _check_claude_wrote_the_file(result, target, up, None)
    turns = _turns(up, "/v1/messages")
    assert len(turns) == 2, _explain(result, up, None)
    assert _has_tool_result(turns[1].json)


def test_claude_code_through_gateway_to_openai_upstream(run_claude: Callable[..., ClaudeResult],
                                                        start_gateway: Callable[..., GatewayProcess],
                                                        workdir: Path) -> None:
    target = workdir / "hello.txt"
    with FakeUpstream(openai_responder(str(target)), wire="openai") as up:
        gw = start_gateway("openai", up.url + "/v1")
        result = run_claude(PROMPT, base_url=gw.url, cwd=workdir)
    _check_claude_wrote_the_file(result, target, up, gw)

    turns = _turns(up, "/chat/completions")
    assert len(turns) == 2, _explain(result, up, gw)
    first, second = (t.json for t in turns)
    assert "Write" in [t["function"]["name"] for t in first["tools"]]
    assert first["stream"] is True
    # the second turn replays the first answer's call and answers it with one tool message.
    # The gateway may hand Claude Code its own toolu_ ids in place of the upstream's call ids
    # (so a session can move to an Anthropic backend mid-way); either way the tool message must
    # name the replayed call, and that call must be the one the upstream made.
    tool_messages = [m for m in second["messages"] if m.get("role") == "tool"]
    assert len(tool_messages) == 1, second["messages"]
    assert tool_messages[0]["content"]  # never an empty tool content
    i = second["messages"].index(tool_messages[0])
    replayed = second["messages"][i - 1]
    assert replayed["role"] == "assistant"
    assert len(replayed["tool_calls"]) == 1
    call = replayed["tool_calls"][0]
    assert tool_messages[0]["tool_call_id"] == call["id"]
    assert call["function"]["name"] == "Write"
    assert json.loads(call["function"]["arguments"]) == {"file_path": str(target), "content": CONTENT}
    assert all(r.headers.get("authorization") != f"Bearer {gw.token}" for r in up.requests), \
        "the gateway token leaked to the upstream"
    # the Write turn (10 in, 20 out) and the answer after it (30 in of which 10 cached, 6 out)
    _check_the_gateway_recorded(gw, [(10, 20, 0, 0), (20, 6, 10, 0)])


def test_claude_code_through_gateway_to_anthropic_upstream(run_claude: Callable[..., ClaudeResult],
                                                           start_gateway: Callable[..., GatewayProcess],
                                                           workdir: Path) -> None:
    target = workdir / "hello.txt"
    with FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as up:
        gw = start_gateway("anthropic", up.url)
        result = run_claude(PROMPT, base_url=gw.url, cwd=workdir)
    _check_claude_wrote_the_file(result, target, up, gw)

    turns = _turns(up, "/v1/messages")
    assert len(turns) == 2, _explain(result, up, gw)
    first, second = turns
    assert "Write" in [t["name"] for t in first.json["tools"]]
    results = [b for m in second.json["messages"] if isinstance(m.get("content"), list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert [b["tool_use_id"] for b in results] == [TOOLU_ID]
    # passthrough forwards Claude Code's protocol headers verbatim
    assert first.headers.get("anthropic-version") == "2023-06-01"
    assert "claude-code-20250219" in first.headers.get("anthropic-beta", "")
    assert all(r.headers.get("authorization") != f"Bearer {gw.token}" for r in up.requests), \
        "the gateway token leaked to the upstream"
    _check_the_gateway_recorded(gw, [(40, 20, 0, 30), (50, 6, 30, 0)])
