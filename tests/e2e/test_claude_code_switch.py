"""The real Claude Code CLI switches backend in the middle of a session after reasoning.

An ``openai`` backend reasons and asks for a ``Write``; while Claude Code runs the tool, the user
switches the active backend (the tray does a config reload; here: the config file and SIGHUP)
to an Anthropic-format backend whose fake refuses thinking blocks it did not sign, as the real
API does ("Invalid signature in thinking block"). Claude Code's next request carries the
reasoning back in its history; the switch must go through without a single refusal, with the
tool call and its result, and without the foreign reasoning. Then the session goes on
(``--continue``) with ``--model oai,gpt-fake``: the openai backend answers again."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import spawn_gateway
from tests.e2e.test_claude_code import CALL_ID, CONTENT, PROMPT, _explain
from tests.fakes import (
    AnthropicJSON,
    AnthropicStream,
    FakeUpstream,
    OpenAIJSON,
    OpenAIStream,
    ReceivedRequest,
    Response,
    ThinkingSigner,
    anthropic_message,
    openai_completion,
    openai_text_chunks,
    openai_tool_call_chunks,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult, GatewayProcess

pytestmark = pytest.mark.e2e

REASONING = "The user wants a file; I will call Write."


def switch_active(gw: GatewayProcess, backend: str) -> None:
    """What picking a backend in the tray does: the config says so and the gateway re-reads it."""
    text = gw.config_path.read_text()
    start = text.index("[active]")
    gw.config_path.write_text(text[:start] + f'[active]\nbackend = "{backend}"\n')
    os.kill(gw.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(gw.url + "/health", timeout=5).json()["active"]["backend"] == backend:
            return
        time.sleep(0.05)
    raise AssertionError(f"the gateway did not switch to {backend}:\n{gw.log()[-2000:]}")


def reasoning_openai(file_path: str, on_tool_call: Callable[[], None]) -> Callable[[ReceivedRequest], Response | None]:
    def respond(req: ReceivedRequest) -> Response | None:
        if not req.path.endswith("/chat/completions"):
            return None
        body: dict[str, Any] = req.json or {}
        if not body.get("tools"):
            return OpenAIStream(openai_text_chunks("A title", 2)) if req.is_stream else \
                OpenAIJSON(openai_completion("A title"))
        msgs = body.get("messages", [])
        if any(m.get("role") == "tool" for m in msgs) or len([m for m in msgs if m.get("role") == "user"]) > 1:
            return OpenAIStream(openai_text_chunks("Back on the openai backend.", 3, reasoning="Thinking again."))
        chunks = openai_tool_call_chunks([("Write", {"file_path": file_path, "content": CONTENT})], pieces=4,
                                         ids=[CALL_ID])
        # reasoning first, as DeepSeek's thinking mode streams it
        reasoning = [dict(chunks[0], choices=[{"index": 0, "delta": {"reasoning_content": p}, "finish_reason": None}])
                     for p in (REASONING[:20], REASONING[20:])]
        on_tool_call()  # the user switches backend while Claude Code runs the tool
        return OpenAIStream([chunks[0], *reasoning, *chunks[1:]])

    return respond


def signing_anthropic(signer: ThinkingSigner) -> Callable[[ReceivedRequest], Response | None]:
    def respond(req: ReceivedRequest) -> Response | None:
        if not req.path.endswith("/v1/messages"):
            return None
        if req.is_stream:
            return AnthropicStream(signer.text_events("Claude thinks it over.", "Claude here: hello.txt is written."))
        return AnthropicJSON(anthropic_message("Claude here."))

    return respond


def blocks_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for m in messages if isinstance(m.get("content"), list) for b in m["content"]]


def test_switch_backend_mid_session_after_reasoning(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                    tmp_path: Path) -> None:
    target = workdir / "hello.txt"
    signer = ThinkingSigner()
    gws: list[GatewayProcess] = []
    with FakeUpstream(reasoning_openai(str(target), lambda: switch_active(gws[0], "anth")), wire="openai") as oai, \
            FakeUpstream(signing_anthropic(signer), wire="anthropic", guard=signer.guard) as anth:
        config = ("[gateway]\nport = 0\n\n"
                  f'[[backends]]\nid = "oai"\nkind = "openai"\nbase_url = "{oai.url}/v1"\nauth = "none"\n'
                  'models = ["gpt-fake"]\n\n'
                  f'[[backends]]\nid = "anth"\nkind = "anthropic"\nbase_url = "{anth.url}"\nauth = "none"\n\n'
                  '[active]\nbackend = "oai"\nmodel = "gpt-fake"\n')
        gw = spawn_gateway(config, tmp_path / "patchbay-home")
        gws.append(gw)
        try:
            first = run_claude(PROMPT, base_url=gw.url, cwd=workdir)
            why = _explain(first, anth, gw) + f"\nrefused: {signer.refused}"
            assert first.returncode == 0 and first.json.get("is_error") is False, why
            assert target.read_text() == CONTENT and first.json.get("num_turns") == 2, why
            assert "Claude here" in first.json.get("result", ""), why
            assert signer.refused == [], why  # not one "Invalid signature in thinking block"
            # the reasoning reached Claude Code (and came back in its history), the tool turn went to oai
            assert len([r for r in oai.requests_to("/chat/completions") if r.has_tools]) == 1, why
            after = [r for r in anth.requests_to("/v1/messages") if r.has_tools]
            assert len(after) == 1, why
            blocks = blocks_of(after[0].json["messages"])
            assert {"tool_use", "tool_result"} <= {b.get("type") for b in blocks}, blocks
            assert not [b for b in blocks if b.get("type") == "thinking"], "foreign reasoning reached Anthropic"

            # /model oai,gpt-fake later in the same session: the openai backend serves it
            second = run_claude("back on openai", base_url=gw.url, cwd=workdir,
                                args=("--continue", "--model", "oai,gpt-fake", "--output-format", "json"))
            assert second.returncode == 0 and second.json.get("is_error") is False, _explain(second, oai, gw)
            assert "Back on the openai backend." in second.json.get("result", "")
            last = [r for r in oai.requests_to("/chat/completions") if r.has_tools][-1].json["messages"]
            assert "Claude thinks it over." not in json.dumps(last)  # another model's reasoning is not its own
            assert signer.refused == []
        finally:
            gw.stop()
