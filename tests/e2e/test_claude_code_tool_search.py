"""Tool search with the real Claude Code CLI on an OpenAI-compatible backend, in a session with 60
MCP tools (a stdio MCP server, ``tests/fakes/mcp_stdio.py``): the model calls ToolSearch, the
tool result Claude Code sends back (``tool_reference`` blocks) reaches the model as the loaded
tool's name, description and parameters, and the model can then call that MCP tool. With tool
search the first request is far smaller than with every MCP tool sent up front."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.proxy.tokens import text_tokens
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

MCP_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_stdio.py"
TOOL = "mcp__inv__tool_07"


def _tool_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body.get("messages", []) if m.get("role") == "tool"]


def _session(run_claude: Callable[..., ClaudeResult], workdir: Path, home: Path,
             tool_search: str) -> tuple[ClaudeResult, list[ReceivedRequest]]:
    load = OpenAIStream(openai_tool_call_chunks([("ToolSearch", {"query": f"select:{TOOL}", "max_results": 1})],
                                                ids=["call_search_1"]))
    use = OpenAIStream(openai_tool_call_chunks([(TOOL, {"query": "blue widgets"})], ids=["call_tool_1"]))
    done = OpenAIStream(openai_text_chunks("Found the blue widgets.", 2))

    def turns(req: ReceivedRequest) -> Response | None:
        body = req.json or {}
        if not req.path.endswith("/chat/completions") or not body.get("tools"):
            return None
        texts = _tool_texts(body)
        if tool_search == "false" or any("tool_07 found" in t for t in texts):  # off: one answer is enough
            return done
        return use if any(t.startswith(f"Tool loaded: {TOOL}") for t in texts) else load

    config_path = workdir / "mcp.json"
    config_path.write_text(json.dumps({"mcpServers": {"inv": {"command": sys.executable,
                                                              "args": [str(MCP_SERVER), "60"]}}}))
    with FakeUpstream(turns, wire="openai") as deep:
        gw = spawn_gateway(f'[gateway]\nport = 0\n\n[[backends]]\nid = "deep"\nkind = "openai"\n'
                           f'base_url = "{deep.url}/v1"\nauth = "none"\nmodels = ["deep-chat"]\n\n'
                           '[active]\nbackend = "deep"\n', home)
        try:
            result = run_claude("look up blue widgets", base_url=gw.url, cwd=workdir,
                                args=("--output-format", "json", "--mcp-config", str(config_path),
                                      "--allowedTools", f"ToolSearch,{TOOL}"),
                                extra_env={"ENABLE_TOOL_SEARCH": tool_search})
        finally:
            gw.stop()
        return result, deep.requests_to("/chat/completions")


def test_a_tool_found_by_tool_search_can_be_called(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                   tmp_path: Path) -> None:
    result, sent = _session(run_claude, workdir, tmp_path / "on", "true")
    turns = [r for r in sent if r.json.get("tools")]
    why = result.describe() + "\n" + "\n".join(str(_tool_texts(r.json))[:400] for r in turns)
    assert result.returncode == 0 and result.json.get("result") == "Found the blue widgets.", why
    loaded = _tool_texts(turns[1].json)[-1]
    assert loaded.startswith(f"Tool loaded: {TOOL}") and "kind 7 in the inventory database" in loaded, why
    assert TOOL in [t["function"]["name"] for t in turns[1].json["tools"]], why
    assert any('tool_07 found: {"query": "blue widgets"}' in t for t in _tool_texts(turns[2].json)), why

    off, sent_off = _session(run_claude, workdir, tmp_path / "off", "false")
    first_on, first_off = turns[0], [r for r in sent_off if r.json.get("tools")][0]
    on_tokens, off_tokens = round(text_tokens(first_on.body)), round(text_tokens(first_off.body))
    print(f"first request with tool search: {len(first_on.json['tools'])} tools, ~{on_tokens} tokens; "
          f"without: {len(first_off.json['tools'])} tools, ~{off_tokens} tokens")
    assert len(first_off.json["tools"]) >= 60 + len(first_on.json["tools"]) // 2
    assert on_tokens < off_tokens * 0.7
