"""Anthropic Messages request → OpenAI Chat Completions request.

Pure: takes the parsed body Claude Code sent, answers a new dict; the input is never changed.
Anthropic-only fields (``metadata``, ``thinking``, ``context_management``, ``output_config``,
``cache_control`` anywhere, ``top_k``, beta fields) are left out: strict upstreams answer 400
"Extra inputs are not permitted" to them. ``output_config.format`` (a JSON schema) becomes
``response_format`` (:mod:`app.proxy.translate.structured`).

Guarantees about the message list produced:
- one leading ``system`` message at most (every system text folded into it);
- every ``tool`` message directly follows (with other tool messages) the assistant message that
  holds its ``tool_call_id``, and every assistant tool call is answered before the next
  non-tool message;
- no empty ``tool`` content, and no empty user content where it can be avoided.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from app.proxy.translate.structured import to_response_format

_BILLING_PREFIX = "x-anthropic-billing-header:"
NO_OUTPUT = "(no output)"
NO_RESULT = "(no result: this tool call was not completed)"
EMPTY_USER = "(empty message)"
ERROR_PREFIX = "Error: "


def to_openai_request(
    body: dict[str, Any],
    model: str,
    *,
    stream: bool,
    max_output_tokens: int | None = None,
    reasoning_effort: str | None = None,
    include_reasoning: bool = True,
    keep_thinking: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Build the OpenAI ``chat.completions`` body for an Anthropic ``/v1/messages`` body.

    ``max_output_tokens`` caps ``max_tokens`` (deepseek-chat takes at most 8192).
    ``reasoning_effort`` is sent as is when given (upstreams differ, so ``thinking`` maps to
    nothing by default). ``include_reasoning=False`` leaves assistant thinking out of the
    history (for upstreams that reject ``reasoning_content`` on messages); ``keep_thinking``
    picks the thinking blocks that may go (``app.proxy.thinking.keep_reasoning``: this backend's
    own reasoning, and other providers' only where the backend uses it).
    """
    messages = _chat_messages(body, include_reasoning, keep_thinking)
    out: dict[str, Any] = {"model": model, "messages": messages}

    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            mapped = _tool_choice(choice)
            if mapped is not None:
                out["tool_choice"] = mapped
            if choice.get("disable_parallel_tool_use") is True:
                out["parallel_tool_calls"] = False

    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        if max_output_tokens is not None and max_tokens > max_output_tokens:
            max_tokens = max_output_tokens
        out["max_tokens"] = max_tokens
    elif max_output_tokens is not None:
        out["max_tokens"] = max_output_tokens

    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            out[key] = value

    stops = stop_sequences_of(body)
    if stops:
        out["stop"] = list(stops)

    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    else:
        out["stream"] = False

    response_format = to_response_format(body)
    if response_format is not None:
        out["response_format"] = response_format

    if reasoning_effort:
        out["reasoning_effort"] = reasoning_effort
    return out


def _chat_messages(body: dict[str, Any], include_reasoning: bool,
                   keep_thinking: Callable[[Mapping[str, Any]], bool] | None) -> list[dict[str, Any]]:
    """The Chat Completions ``messages`` of an Anthropic body: one system message first (the
    ``system`` field and any system turns), then each turn converted, a tool call the next turn
    leaves unanswered given a placeholder result."""
    system_parts: list[str] = []
    _collect_system(body.get("system"), system_parts)

    messages: list[dict[str, Any]] = []
    known = _tools_by_name(body.get("tools"))  # what a ToolSearch result's tool_reference names
    waiting: list[str] = []  # tool_call ids of the last assistant message not yet answered
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        content = msg.get("content")
        if role == "system":
            _collect_system(content, system_parts)
            continue
        if role == "assistant":
            _answer_missing(waiting, messages)
            converted = _assistant_message(content, include_reasoning, keep_thinking)
            if converted is not None:
                messages.append(converted)
                calls = converted.get("tool_calls")
                waiting = [c["id"] for c in calls] if calls else []
            continue
        _user_messages(content, waiting, messages, known)
        waiting = []

    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return messages


# ---------------------------------------------------------------------------------------------
# system


def _collect_system(value: Any, parts: list[str]) -> None:
    if isinstance(value, str):
        if value.strip():
            parts.append(value)
        return
    if not isinstance(value, list):
        return
    for block in value:
        if isinstance(block, str):
            text = block
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            text = block["text"]
        else:
            continue
        # Claude Code's attribution line means nothing to other upstreams, and since it changes
        # between requests it would spoil their prompt-prefix caching.
        if not text.strip() or text.startswith(_BILLING_PREFIX):
            continue
        parts.append(text)


# ---------------------------------------------------------------------------------------------
# assistant


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits and other things orjson refuses
        return json.dumps(value, ensure_ascii=False)


def _assistant_message(content: Any, include_reasoning: bool,
                       keep_thinking: Callable[[Mapping[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content} if content else None
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                texts.append(text)
        elif kind == "tool_use":
            call_id = str(block.get("id") or "")
            if any(c["id"] == call_id for c in calls):
                continue  # a repeated id could never be answered unambiguously
            tool_input = block.get("input")
            arguments = tool_input if isinstance(tool_input, str) else _dumps(tool_input if tool_input is not None else {})
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": str(block.get("name") or ""), "arguments": arguments},
                }
            )
        elif kind == "thinking":
            text = block.get("thinking")
            if isinstance(text, str) and text and (keep_thinking is None or keep_thinking(block)):
                thinking.append(text)
        # redacted_thinking, server_tool_use, web_search_tool_result…: nothing an OpenAI
        # upstream can use
    if not texts and not calls and not (thinking and include_reasoning):
        return None
    msg: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else (None if calls else "")}
    if calls:
        msg["tool_calls"] = calls
    if thinking and include_reasoning:
        msg["reasoning_content"] = "".join(thinking)
    return msg


# ---------------------------------------------------------------------------------------------
# user


def _answer_missing(waiting: list[str], messages: list[dict[str, Any]]) -> None:
    """Answer tool calls the history left without a result (OpenAI refuses such a history)."""
    for call_id in waiting:
        messages.append({"role": "tool", "tool_call_id": call_id, "content": NO_RESULT})
    waiting.clear()


def _user_messages(content: Any, waiting: list[str], messages: list[dict[str, Any]],
                   known: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    if isinstance(content, str):
        _answer_missing(waiting, messages)
        messages.append({"role": "user", "content": content if content.strip() else EMPTY_USER})
        return
    parts: list[dict[str, Any]] = []
    open_ids = set(waiting)
    answered: list[str] = []
    had_blocks = False
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        had_blocks = True
        kind = block.get("type")
        if kind == "tool_result":
            call_id = str(block.get("tool_use_id") or "")
            text, images = _tool_result_content(block, known or {})
            if call_id in open_ids:
                open_ids.discard(call_id)
                answered.append(call_id)
                if images and text == NO_OUTPUT:
                    text = "(the tool returned images; they follow in the next message)"
                messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
            else:  # no matching call right before it (e.g. history edited): keep it as text
                parts.append({"type": "text", "text": f"[result of tool call {call_id}]\n{text}"})
            parts.extend(images)
        else:
            part = _user_part(block)
            if part is not None:
                parts.append(part)
    for call_id in waiting:
        if call_id in open_ids:
            messages.append({"role": "tool", "tool_call_id": call_id, "content": NO_RESULT})
    if parts:
        messages.append({"role": "user", "content": _collapse(parts)})
    elif not answered and (had_blocks or not waiting):
        messages.append({"role": "user", "content": EMPTY_USER})


def _collapse(parts: list[dict[str, Any]]) -> Any:
    """Text-only content as one string: the form every OpenAI-compatible server accepts."""
    for part in parts:
        if part["type"] != "text":
            return parts
    if len(parts) == 1:
        return parts[0]["text"]
    return "\n\n".join(p["text"] for p in parts)


def _user_part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if isinstance(text, str) and text:
            return {"type": "text", "text": text}
        return None
    if kind == "image":
        return _image_part(block.get("source"))
    if kind == "document":
        return _document_part(block)
    text = block.get("text")
    if isinstance(text, str) and text:  # unknown block kinds that carry text
        return {"type": "text", "text": text}
    return None


def _image_part(source: Any) -> dict[str, Any] | None:
    if not isinstance(source, dict):
        return None
    kind = source.get("type")
    if kind == "base64":
        media = source.get("media_type") or "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source.get('data') or ''}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    return {"type": "text", "text": "(an image was attached here, in a form this model cannot receive)"}


def _document_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    kind = source.get("type")
    title = block.get("title")
    if kind == "text" and isinstance(source.get("data"), str):
        text = source["data"]
        return {"type": "text", "text": f"{title}\n\n{text}" if isinstance(title, str) and title else text}
    if kind == "base64":
        media = source.get("media_type") or "application/pdf"
        return {
            "type": "file",
            "file": {
                "filename": title if isinstance(title, str) and title else "document.pdf",
                "file_data": f"data:{media};base64,{source.get('data') or ''}",
            },
        }
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "text", "text": f"(document: {source['url']})"}
    if kind == "content" and isinstance(source.get("content"), list):
        texts: list[str] = [b["text"] for b in source["content"] if isinstance(b, dict) and isinstance(b.get("text"), str)]
        if texts:
            return {"type": "text", "text": "\n".join(texts)}
    return None


def _tool_result_content(block: dict[str, Any],
                         known: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(text for the tool message, images to pass in the user message after it). A
    ``tool_reference`` (what ToolSearch returns: Anthropic's API loads that deferred tool) becomes
    the tool's name, description and parameters, so the model knows what it can now call."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts: list[str] = []
        for item in content:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "image":
                part = _image_part(item.get("source"))
                if part is not None:
                    images.append(part)
            elif kind == "document":
                part = _document_part(item)
                if part is not None and part["type"] == "text":
                    texts.append(part["text"])
            elif kind == "tool_reference":
                texts.append(_loaded_tool(item.get("tool_name"), known))
            elif isinstance(item.get("text"), str):
                texts.append(item["text"])
        text = "\n".join(t for t in texts if t)
    else:
        text = ""
    if not text.strip():
        text = NO_OUTPUT
    if block.get("is_error") is True and not text.startswith(ERROR_PREFIX):
        text = ERROR_PREFIX + text
    return text, images


# ---------------------------------------------------------------------------------------------
# tools


def _tools_by_name(tools: Any) -> dict[str, Mapping[str, Any]]:
    return {t["name"]: t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)} \
        if isinstance(tools, list) else {}


def _loaded_tool(name: Any, known: Mapping[str, Mapping[str, Any]]) -> str:
    """A loaded deferred tool, told in words: Anthropic's API expands a ``tool_reference`` into the
    tool's definition; an OpenAI-compatible model gets the same facts as text (the tool itself is
    in this request's ``tools``, which Claude Code sends with ``defer_loading: true``)."""
    tool = known.get(name) if isinstance(name, str) else None
    if tool is None:
        return f"Tool loaded: {name}."
    text = f"Tool loaded: {name} (you can call it now)."
    description = tool.get("description")
    if isinstance(description, str) and description.strip():
        text += f"\nDescription: {description.strip()}"
    schema = tool.get("input_schema")
    if isinstance(schema, dict):
        text += f"\nParameters (JSON schema): {_dumps({k: v for k, v in schema.items() if k != '$schema'})}"
    return text


def _tools(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not isinstance(tools, list):
        return out
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            continue  # server tools (web_search_…) and schema-less built-ins
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            continue
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            schema = {"type": "object", "properties": {}}
        elif "$schema" in schema:
            schema = {k: v for k, v in schema.items() if k != "$schema"}
        function: dict[str, Any] = {"name": name}
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        function["parameters"] = schema
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    return None


def stop_sequences_of(body: dict[str, Any]) -> tuple[str, ...]:
    """The request's ``stop_sequences`` sent upstream as ``stop``: OpenAI takes at most 4 (more
    would be refused outright); the answer names the one that matched (translate/response.py)."""
    stops = body.get("stop_sequences")
    if not isinstance(stops, list):
        return ()
    return tuple(s for s in stops if isinstance(s, str) and s)[:4]
