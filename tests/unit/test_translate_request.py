"""Anthropic → OpenAI request translation."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.proxy.translate.request import EMPTY_USER, NO_OUTPUT, NO_RESULT, to_openai_request


def tr(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    kw.setdefault("stream", True)
    return to_openai_request(body, "up-model", **kw)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def claude_code_body() -> dict[str, Any]:
    """Shaped like what Claude Code 2.1.x sends (docs/protocol.md §1)."""
    return {
        "model": "claude-opus-5-5",
        "messages": [
            user(
                [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}},
                ]
            )
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332; cc_entrypoint=cli;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [
            {
                "name": "Read",
                "description": "Read a file",
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"file_path": {"type": "string"}},
                    "required": ["file_path"],
                    "additionalProperties": False,
                },
            },
            {"name": "Lazy", "description": "d", "input_schema": {"type": "object"}, "defer_loading": True,
             "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ],
        "metadata": {"user_id": '{"device_id":"d","account_uuid":"","session_id":"s"}'},
        "max_tokens": 128000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        "stream": True,
    }


# -- top level -------------------------------------------------------------------------------------


def test_claude_code_body_keeps_only_openai_fields() -> None:
    body = claude_code_body()
    before = copy.deepcopy(body)
    out = tr(body)
    assert body == before  # input untouched
    assert set(out) == {"model", "messages", "tools", "max_tokens", "stream", "stream_options"}
    assert out["model"] == "up-model"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["max_tokens"] == 128000
    dumped = json.dumps(out)
    for word in ("cache_control", "defer_loading", "metadata", "context_management", "output_config",
                 "thinking", "$schema", "billing-header", "web_search"):
        assert word not in dumped


def test_system_blocks_folded_and_billing_line_dropped() -> None:
    out = tr(claude_code_body())
    assert out["messages"][0] == {"role": "system", "content": "You are Claude Code.\n\nBe brief."}
    assert out["messages"][1] == {"role": "user", "content": "<system-reminder>ctx</system-reminder>\n\nfix the bug"}


def test_system_string_and_mid_conversation_system_messages() -> None:
    body = {
        "system": "Base.",
        "messages": [
            user("hi"),
            {"role": "system", "content": "Now in plan mode."},
            assistant("ok"),
            {"role": "system", "content": [{"type": "text", "text": "Second.", "cache_control": {"type": "ephemeral"}}]},
            user("go"),
        ],
    }
    msgs = tr(body)["messages"]
    assert msgs[0] == {"role": "system", "content": "Base.\n\nNow in plan mode.\n\nSecond."}
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]


def test_no_system_message_when_none_given() -> None:
    msgs = tr({"messages": [user("hi")]})["messages"]
    assert msgs == [{"role": "user", "content": "hi"}]


def test_max_tokens_clamped_only_when_above_limit() -> None:
    assert tr({"messages": [user("x")], "max_tokens": 32000}, max_output_tokens=8192)["max_tokens"] == 8192
    assert tr({"messages": [user("x")], "max_tokens": 100}, max_output_tokens=8192)["max_tokens"] == 100
    assert tr({"messages": [user("x")]}, max_output_tokens=8192)["max_tokens"] == 8192
    assert "max_tokens" not in tr({"messages": [user("x")]})


def test_sampling_and_stop_sequences() -> None:
    out = tr({"messages": [user("x")], "temperature": 0.2, "top_p": 0.9, "top_k": 40,
              "stop_sequences": ["END", "", "###", "a", "b", "c"]}, stream=False)
    assert out["temperature"] == 0.2 and out["top_p"] == 0.9
    assert "top_k" not in out
    assert out["stop"] == ["END", "###", "a", "b"]
    assert out["stream"] is False and "stream_options" not in out


def test_reasoning_effort_only_when_asked() -> None:
    body = {"messages": [user("x")], "thinking": {"type": "enabled", "budget_tokens": 2000}}
    assert "reasoning_effort" not in tr(body)
    assert tr(body, reasoning_effort="high")["reasoning_effort"] == "high"


# -- tools -----------------------------------------------------------------------------------------


def test_tools_become_functions() -> None:
    out = tr(claude_code_body())
    assert out["tools"] == [
        {"type": "function", "function": {"name": "Read", "description": "Read a file", "parameters": {
            "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"],
            "additionalProperties": False}}},
        {"type": "function", "function": {"name": "Lazy", "description": "d", "parameters": {"type": "object"}}},
    ]


def test_tool_without_schema_gets_an_empty_object_schema() -> None:
    out = tr({"messages": [user("x")], "tools": [{"name": "Ping"}, {"type": "custom", "name": "C", "input_schema": {"type": "object"}}]})
    assert out["tools"][0] == {"type": "function", "function": {"name": "Ping", "parameters": {"type": "object", "properties": {}}}}
    assert out["tools"][1]["function"]["name"] == "C"


def test_tool_choice_mapping() -> None:
    tools = [{"name": "Read", "input_schema": {"type": "object"}}]
    cases = [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}),
    ]
    for choice, expected in cases:
        out = tr({"messages": [user("x")], "tools": tools, "tool_choice": choice})
        assert out["tool_choice"] == expected
        assert "parallel_tool_calls" not in out
    out = tr({"messages": [user("x")], "tools": tools, "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}})
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False


def test_no_tool_choice_without_tools() -> None:
    out = tr({"messages": [user("x")], "tools": [{"type": "web_search_20250305", "name": "web_search"}],
              "tool_choice": {"type": "any"}})
    assert "tools" not in out and "tool_choice" not in out


# -- content ---------------------------------------------------------------------------------------


def test_images_base64_and_url() -> None:
    out = tr({"messages": [user([
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
    ])]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]


def test_assistant_text_tool_use_and_thinking() -> None:
    out = tr({"messages": [
        user("read it"),
        assistant([
            {"type": "thinking", "thinking": "I should read.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xxx"},
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/a", "n": [1, "é"]}},
        ]),
        user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "data"}]),
    ]})
    a = out["messages"][1]
    assert a["role"] == "assistant"
    assert a["content"] == "Reading."
    assert a["reasoning_content"] == "I should read."
    assert a["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                "function": {"name": "Read", "arguments": a["tool_calls"][0]["function"]["arguments"]}}]
    assert json.loads(a["tool_calls"][0]["function"]["arguments"]) == {"file_path": "/a", "n": [1, "é"]}
    assert "xxx" not in json.dumps(out)
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "data"}


def test_assistant_tool_only_has_null_content_and_reasoning_can_be_left_out() -> None:
    body = {"messages": [user("x"), assistant([
        {"type": "thinking", "thinking": "t", "signature": ""},
        {"type": "tool_use", "id": "a", "name": "N", "input": {}}]),
        user([{"type": "tool_result", "tool_use_id": "a", "content": "ok"}])]}
    a = tr(body)["messages"][1]
    assert a["content"] is None and a["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "reasoning_content" not in tr(body, include_reasoning=False)["messages"][1]


def test_several_tool_results_in_order_then_the_rest_of_the_user_message() -> None:
    out = tr({"messages": [
        user("go"),
        assistant([{"type": "tool_use", "id": "a", "name": "A", "input": {}},
                   {"type": "tool_use", "id": "b", "name": "B", "input": {}}]),
        user([
            {"type": "text", "text": "before"},
            {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "B1"}, {"type": "text", "text": "B2"}]},
            {"type": "tool_result", "tool_use_id": "a", "content": "A out", "is_error": True, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "after"},
        ]),
    ]})
    msgs = out["messages"]
    assert msgs[2] == {"role": "tool", "tool_call_id": "b", "content": "B1\nB2"}
    assert msgs[3]["role"] == "tool" and msgs[3]["tool_call_id"] == "a"
    assert msgs[3]["content"].startswith("Error") and "A out" in msgs[3]["content"]
    assert msgs[4] == {"role": "user", "content": "before\n\nafter"}
    assert len(msgs) == 5


def test_empty_tool_result_gets_placeholder() -> None:
    out = tr({"messages": [user("go"), assistant([{"type": "tool_use", "id": "a", "name": "A", "input": {}}]),
                           user([{"type": "tool_result", "tool_use_id": "a", "content": []}])]})
    assert out["messages"][2]["content"] == NO_OUTPUT
    out = tr({"messages": [user("go"), assistant([{"type": "tool_use", "id": "a", "name": "A", "input": {}}]),
                           user([{"type": "tool_result", "tool_use_id": "a"}])]})
    assert out["messages"][2]["content"] == NO_OUTPUT
    assert len(out["messages"]) == 3


def test_tool_result_images_follow_as_user_message() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    out = tr({"messages": [user("shot"), assistant([{"type": "tool_use", "id": "a", "name": "Shot", "input": {}}]),
                           user([{"type": "tool_result", "tool_use_id": "a", "content": [img]}])]})
    msgs = out["messages"]
    assert msgs[2]["role"] == "tool" and msgs[2]["content"]
    assert msgs[3] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}


def test_unanswered_tool_calls_get_a_result_and_orphans_become_text() -> None:
    out = tr({"messages": [
        user("go"),
        assistant([{"type": "tool_use", "id": "a", "name": "A", "input": {}},
                   {"type": "tool_use", "id": "b", "name": "B", "input": {}}]),
        user([{"type": "tool_result", "tool_use_id": "a", "content": "A"},
              {"type": "tool_result", "tool_use_id": "zzz", "content": "stray"}]),
        assistant([{"type": "tool_use", "id": "c", "name": "C", "input": {}}]),
        assistant("more"),
        user("next"),
    ]})
    msgs = out["messages"]
    assert msgs[2] == {"role": "tool", "tool_call_id": "a", "content": "A"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "b", "content": NO_RESULT}
    assert msgs[4]["role"] == "user" and "stray" in msgs[4]["content"] and "zzz" in msgs[4]["content"]
    assert msgs[5]["tool_calls"][0]["id"] == "c"
    assert msgs[6] == {"role": "tool", "tool_call_id": "c", "content": NO_RESULT}
    assert msgs[7] == {"role": "assistant", "content": "more"}
    assert_tool_messages_valid(msgs)


def test_empty_user_content_gets_placeholder() -> None:
    msgs = tr({"messages": [user(""), assistant("a"), user([]), assistant("b"), user([{"type": "text", "text": ""}])]})["messages"]
    assert [m["content"] for m in msgs if m["role"] == "user"] == [EMPTY_USER] * 3


def test_documents() -> None:
    msgs = tr({"messages": [user([
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "body"}, "title": "T"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
    ])]})["messages"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "T\n\nbody"},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
    ]


def test_empty_assistant_message_dropped() -> None:
    msgs = tr({"messages": [user("a"), assistant([{"type": "redacted_thinking", "data": "x"}]), user("b")]})["messages"]
    assert [m["role"] for m in msgs] == ["user", "user"]


# -- property: whatever the history, tool messages are always well placed ---------------------------


def assert_tool_messages_valid(msgs: list[dict[str, Any]]) -> None:
    """Each tool message answers a call of the nearest assistant message before the tool run,
    and every assistant tool call is answered before the next non-tool message."""
    open_calls: set[str] = set()
    prev_role = None
    for m in msgs:
        role = m["role"]
        if role == "tool":
            assert prev_role in ("assistant", "tool"), msgs
            assert m["tool_call_id"] in open_calls, msgs
            open_calls.discard(m["tool_call_id"])
            assert m["content"]
        else:
            assert not open_calls, msgs
            if role == "assistant" and m.get("tool_calls"):
                open_calls = {c["id"] for c in m["tool_calls"]}
            if role == "user":
                assert m["content"] not in ("", []), msgs
        prev_role = role


ids = st.sampled_from(["a", "b", "c", "d"])
user_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=5)),
    st.builds(lambda i, c, e: {"type": "tool_result", "tool_use_id": i, "content": c, "is_error": e},
              ids, st.one_of(st.text(max_size=3), st.just([])), st.booleans()),
)
assistant_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=5)),
    st.builds(lambda i: {"type": "tool_use", "id": i, "name": "T", "input": {"x": 1}}, ids),
    st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": ""}, st.text(max_size=3)),
)
message = st.one_of(
    st.builds(user, st.one_of(st.text(max_size=4), st.lists(user_block, max_size=4))),
    st.builds(assistant, st.one_of(st.text(max_size=4), st.lists(assistant_block, max_size=4))),
    st.builds(lambda t: {"role": "system", "content": t}, st.text(max_size=4)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=8))
def test_any_history_gives_a_valid_openai_message_list(history: list[dict[str, Any]]) -> None:
    out = tr({"messages": history})
    msgs = out["messages"]
    assert_tool_messages_valid(msgs)
    assert sum(1 for m in msgs if m["role"] == "system") <= 1
    if msgs and any(m["role"] == "system" for m in msgs):
        assert msgs[0]["role"] == "system"
    json.dumps(out)
