"""OpenAI non-streaming answers and errors → Anthropic shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.events import Usage
from app.proxy.translate.ids import new_message_id, new_tool_use_id
from app.proxy.translate.response import (
    normalize_tool_arguments,
    openai_error_to_anthropic,
    openai_response_to_anthropic,
    usage_from_openai,
)

USAGE_KEYS = {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}


def completion(message: dict[str, Any], finish: str | None = "stop", usage: Any = None, model: str = "up-model") -> dict[str, Any]:
    resp: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    if usage is not None:
        resp["usage"] = usage
    return resp


def test_text_answer() -> None:
    out = openai_response_to_anthropic(completion({"content": "Hello"}, usage={
        "prompt_tokens": 50, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 20}}))
    assert out["id"].startswith("msg_") and out["type"] == "message" and out["role"] == "assistant"
    assert out["model"] == "up-model"
    assert out["content"] == [{"type": "text", "text": "Hello"}]
    assert out["stop_reason"] == "end_turn" and out["stop_sequence"] is None
    assert out["usage"] == {"input_tokens": 30, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20}


def test_reasoning_text_and_tool_calls() -> None:
    out = openai_response_to_anthropic(completion({
        "content": "Reading.",
        "reasoning_content": "Need the file.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "/a"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "Ls", "arguments": ""}},
            {"id": "call_3", "type": "function", "function": {"name": "G", "arguments": '{}{"q": 1}'}},
        ]}, finish="tool_calls"))
    kinds = [b["type"] for b in out["content"]]
    assert kinds == ["thinking", "text", "tool_use", "tool_use", "tool_use"]
    assert out["content"][0] == {"type": "thinking", "thinking": "Need the file.", "signature": ""}
    uses = out["content"][2:]
    assert [(u["name"], u["input"]) for u in uses] == [("Read", {"file_path": "/a"}), ("Ls", {}), ("G", {"q": 1})]
    assert all(u["id"].startswith("toolu_") for u in uses) and len({u["id"] for u in uses}) == 3
    assert out["stop_reason"] == "tool_use"


def test_tool_calls_with_finish_stop_is_tool_use_and_reasoning_field() -> None:
    out = openai_response_to_anthropic(completion({"content": None, "reasoning": "r", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "X", "arguments": {"a": 1}}}]}, finish="stop"))
    assert out["stop_reason"] == "tool_use"
    assert out["content"][0]["thinking"] == "r" and out["content"][1]["input"] == {"a": 1}


@pytest.mark.parametrize(("finish", "expected"), [("stop", "end_turn"), ("length", "max_tokens"),
                                                  ("content_filter", "refusal"), (None, "end_turn")])
def test_finish_reasons(finish: str | None, expected: str) -> None:
    assert openai_response_to_anthropic(completion({"content": "x"}, finish=finish))["stop_reason"] == expected


def test_empty_answer_has_one_empty_text_block_and_full_usage() -> None:
    out = openai_response_to_anthropic({"choices": [], "model": ""}, requested_model="asked")
    assert out["content"] == [{"type": "text", "text": ""}]
    assert out["model"] == "asked"
    assert set(out["usage"]) == USAGE_KEYS


def test_content_parts_and_refusal() -> None:
    out = openai_response_to_anthropic(completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}))
    assert out["content"] == [{"type": "text", "text": "ab"}]
    out = openai_response_to_anthropic(completion({"content": None, "refusal": "I can't."}, finish="content_filter"))
    assert out["content"] == [{"type": "text", "text": "I can't."}] and out["stop_reason"] == "refusal"


def test_usage_variants() -> None:
    assert usage_from_openai(None, fallback_input=7) == Usage(7, 0, 0, 0)
    assert usage_from_openai({"prompt_tokens": 10, "completion_tokens": 2}) == Usage(10, 2, 0, 0)
    assert usage_from_openai({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}) == Usage(10, 2, 0, 0)
    assert usage_from_openai({"prompt_tokens": 100, "completion_tokens": 1, "prompt_cache_hit_tokens": 60}) == Usage(40, 1, 0, 60)
    assert usage_from_openai({"prompt_tokens": 100, "completion_tokens": 1,
                              "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 30}}) == Usage(20, 1, 30, 50)
    assert usage_from_openai({"prompt_tokens": 5, "completion_tokens": None,
                              "prompt_tokens_details": {"cached_tokens": 9}}) == Usage(0, 0, 0, 5)


def test_normalize_tool_arguments() -> None:
    assert normalize_tool_arguments(' {"a": 1} ') == (' {"a": 1} ', {"a": 1})
    assert normalize_tool_arguments("") == ("{}", {})
    assert normalize_tool_arguments("  ") == ("{}", {})
    assert normalize_tool_arguments('{}{"a":1}') == ('{"a":1}', {"a": 1})
    assert normalize_tool_arguments('{"a":1}{"a":1}') == ('{"a":1}', {"a": 1})
    assert normalize_tool_arguments('{} {}') == ("{}", {})
    assert normalize_tool_arguments(json.dumps('{"a": [1]}')) == ('{"a": [1]}', {"a": [1]})
    assert normalize_tool_arguments("[1]") == ("{}", {})
    assert normalize_tool_arguments('{"a": ') == ("{}", {})
    assert normalize_tool_arguments('{"n": NaN}')[1]["n"] != 0  # stdlib fallback for what orjson refuses


# -- errors ----------------------------------------------------------------------------------------


def err(status: int, body: Any) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return openai_error_to_anthropic(status, raw)


@pytest.mark.parametrize(("status", "out_status", "kind"), [
    (400, 400, "invalid_request_error"), (401, 401, "authentication_error"), (402, 402, "billing_error"),
    (403, 403, "permission_error"), (404, 404, "not_found_error"), (408, 408, "timeout_error"),
    (413, 413, "request_too_large"), (422, 400, "invalid_request_error"), (429, 429, "rate_limit_error"),
    (500, 500, "api_error"), (502, 502, "api_error"), (503, 529, "overloaded_error"), (504, 504, "timeout_error"),
    (529, 529, "overloaded_error"), (418, 418, "invalid_request_error"), (599, 599, "api_error"), (200, 502, "api_error"),
])
def test_error_status_mapping(status: int, out_status: int, kind: str) -> None:
    got_status, body = err(status, {"error": {"message": "boom", "type": "x", "code": None}})
    assert got_status == out_status
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}}


def test_error_wording_kept_from_many_shapes() -> None:
    assert err(429, {"error": {"message": "Rate limit reached for model", "code": "rate_limit_exceeded"}})[1]["error"]["message"] == "Rate limit reached for model"
    assert err(401, {"error": "Invalid API key"})[1]["error"]["message"] == "Invalid API key"
    assert err(404, {"detail": "Not Found"})[1]["error"]["message"] == "Not Found"
    assert err(500, {"message": "internal"})[1]["error"]["message"] == "internal"
    assert err(400, [{"error": {"code": 400, "message": "Gemini says no", "status": "INVALID_ARGUMENT"}}])[1]["error"]["message"] == "Gemini says no"
    assert err(502, b"<html>Bad Gateway</html>")[1]["error"]["message"] == "<html>Bad Gateway</html>"
    detail = err(422, {"detail": [{"loc": ["body", "x"], "msg": "field required"}]})[1]["error"]["message"]
    assert "field required" in detail


def test_empty_error_body_gets_a_sentence() -> None:
    status, body = openai_error_to_anthropic(500, b"")
    assert status == 500
    message = body["error"]["message"]
    assert "500" in message and message.endswith(".")


def test_context_length_errors_use_anthropic_wording() -> None:
    upstream = ("This model's maximum context length is 131072 tokens. However, your messages resulted in "
                "150000 tokens. Please reduce the length of the messages.")
    status, body = err(400, {"error": {"message": upstream, "type": "invalid_request_error", "code": "context_length_exceeded"}})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    message = body["error"]["message"]
    assert message.startswith("prompt is too long: 150000 tokens > 131072 maximum")
    assert upstream in message
    _, body = err(400, {"error": {"message": "Input is too long: context window exceeded"}})
    assert body["error"]["message"].startswith("prompt is too long: ")
    _, body = err(400, {"error": {"message": "temperature must be <= 2"}})
    assert body["error"]["message"] == "temperature must be <= 2"


def test_ids_are_unique_and_well_formed() -> None:
    made = {new_tool_use_id() for _ in range(2000)}
    assert len(made) == 2000
    for tool_id in list(made)[:50]:
        assert tool_id.startswith("toolu_01") and len(tool_id) == 30 and tool_id[6:].isalnum()
    assert new_message_id().startswith("msg_01")
