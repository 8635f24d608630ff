"""ToolSearch on an OpenAI-compatible backend: the tool result Claude Code sends back holds
``tool_reference`` blocks (Anthropic's API expands each into the loaded tool's definition); the
model behind the translation must see which tool was loaded and what it takes, and find it in its
``tools`` so it can call it. Real gateway, the anthropic SDK as client, the OpenAI fake."""

from __future__ import annotations

from tests.fakes import OpenAIStream, openai_text_chunks

SEARCH_TOOL = {"name": "ToolSearch", "description": "Load deferred tools", "input_schema": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
LOADED = {"name": "mcp__inv__tool_07", "description": "Look up records of kind 7 in the inventory database.",
          "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                           "properties": {"query": {"type": "string"}}, "required": ["query"]},
          "defer_loading": True}


def test_a_tool_reference_reaches_the_model_as_the_loaded_tool(two_backends, openai_up):
    gw = two_backends
    openai_up.enqueue(OpenAIStream(openai_text_chunks("calling it next", 2)))
    messages = [
        {"role": "user", "content": "find tool 7"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_ts_1", "name": "ToolSearch",
                                           "input": {"query": "select:mcp__inv__tool_07"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_ts_1",
             "content": [{"type": "tool_reference", "tool_name": "mcp__inv__tool_07"}]},
            {"type": "text", "text": "Tool loaded."}]},
    ]
    with gw.client().messages.stream(model="gpt-fake", max_tokens=500, messages=messages,
                                     tools=[SEARCH_TOOL, LOADED]) as s:
        assert s.get_final_text() == "calling it next"
    sent = openai_up.requests_to("/chat/completions")[-1].json
    tool_msg = next(m for m in sent["messages"] if m["role"] == "tool")
    assert tool_msg["content"].startswith("Tool loaded: mcp__inv__tool_07 (you can call it now).")
    assert "kind 7 in the inventory database" in tool_msg["content"] and '"required":["query"]' in tool_msg["content"]
    assert "$schema" not in tool_msg["content"]
    assert "mcp__inv__tool_07" in [t["function"]["name"] for t in sent["tools"]]  # callable, not only described
