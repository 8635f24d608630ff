"""Claude Code's WebSearch through a gateway whose active backend is OpenAI-compatible, with the
real CLI: the search request (its only tool is the server tool ``web_search_20250305``) is never
sent to the OpenAI model, which would make the results up. Without a backend that can search,
Claude Code gets a 400 at once and hands its message to the model as the tool's error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import spawn_gateway
from tests.fakes import (
    FakeUpstream,
    OpenAIStream,
    ReceivedRequest,
    Response,
    openai_text_chunks,
    openai_tool_call_chunks,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult

pytestmark = pytest.mark.e2e


def test_websearch_on_an_openai_backend_is_refused_not_invented(run_claude: Callable[..., ClaudeResult],
                                                                workdir: Path, tmp_path: Path) -> None:
    call = OpenAIStream(openai_tool_call_chunks([("WebSearch", {"query": "patchbay gateway"})], ids=["call_ws_1"]))
    done = OpenAIStream(openai_text_chunks("The search is not available here.", 2))
    made_up = OpenAIStream(openai_text_chunks("1. Patchbay wins an award (made up)", 2))

    def turns(req: ReceivedRequest) -> Response | None:
        body: dict[str, Any] = req.json or {}
        if not req.path.endswith("/chat/completions"):
            return None
        if not body.get("tools"):
            return made_up  # what an OpenAI model answers to "Perform a web search for the query: …"
        return done if any(m.get("role") == "tool" for m in body["messages"]) else call

    with FakeUpstream(turns, wire="openai") as deepseek:
        config = ("[gateway]\nport = 0\n\n[[backends]]\nid = \"deepseek\"\nkind = \"openai\"\n"
                  f"base_url = \"{deepseek.url}/v1\"\nauth = \"none\"\nmodels = [\"deepseek-chat\"]\n\n"
                  "[active]\nbackend = \"deepseek\"\n")
        gw = spawn_gateway(config, tmp_path / "patchbay-home")
        try:
            result = run_claude("search the web for patchbay", base_url=gw.url, cwd=workdir,
                                args=("--output-format", "json", "--allowedTools", "WebSearch"),
                                extra_env={"CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1"})
        finally:
            gw.stop()
        why = result.describe() + "\n" + gw.log()[-3000:]
        assert result.returncode == 0 and result.seconds < 60, why
        sent = deepseek.requests_to("/chat/completions")
        assert not any("Perform a web search" in str(r.json["messages"]) for r in sent), why
        tool_msgs = [m for r in sent for m in r.json["messages"] if m.get("role") == "tool"]
        assert tool_msgs and "only Anthropic's API runs" in tool_msgs[-1]["content"], why
        assert "made up" not in str(tool_msgs)
