"""OpenAI Chat Completions answers → Anthropic Messages answers (non-streaming, and errors).

Also holds the small mappings the stream translator shares: finish reasons, usage, tool
argument clean-up, and error types by HTTP status.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from app.events import Usage
from app.proxy.translate.ids import new_message_id, tool_use_id_for

# ---------------------------------------------------------------------------------------------
# shared mappings


def stop_reason_for(finish_reason: str | None, *, had_tool_calls: bool) -> str:
    """Anthropic ``stop_reason`` for an OpenAI ``finish_reason``.

    Tool calls win over ``stop`` (some upstreams say ``stop`` after emitting tool calls), but
    not over ``length`` (a cut-off call) or ``content_filter``.
    """
    if finish_reason == "length":
        return "max_tokens"
    if finish_reason == "content_filter":
        return "refusal"
    if had_tool_calls or finish_reason in ("tool_calls", "function_call"):
        return "tool_use"
    return "end_turn"


def usage_from_openai(usage: Any, *, fallback_input: int = 0) -> Usage:
    """Anthropic-shaped usage from an OpenAI ``usage`` object.

    ``input_tokens`` excludes cached (and cache-written) prompt tokens, as Anthropic counts them.
    Knows ``prompt_tokens_details.cached_tokens`` (OpenAI, vLLM, OpenRouter),
    ``prompt_tokens_details.cache_write_tokens`` (OpenRouter) and DeepSeek's
    ``prompt_cache_hit_tokens``.
    """
    if not isinstance(usage, dict):
        return Usage(input_tokens=fallback_input)
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = written = 0
    if isinstance(details, dict):
        cached = _int(details.get("cached_tokens"))
        written = _int(details.get("cache_write_tokens"))
    if not cached:
        cached = _int(usage.get("prompt_cache_hit_tokens"))
    if cached > prompt:
        cached = prompt
    if written > prompt - cached:
        written = prompt - cached
    return Usage(
        input_tokens=prompt - cached - written,
        output_tokens=completion,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=cached,
    )


def _int(value: Any) -> int:
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, float):
        return int(value) if value > 0 else 0
    return 0


def usage_dict(usage: Usage) -> dict[str, int]:
    """The four-field Anthropic usage object (every field present)."""
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": usage.output_tokens,
    }


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # NaN, huge ints; raises ValueError when truly invalid


_DECODER = json.JSONDecoder()


def normalize_tool_arguments(raw: str) -> tuple[str, dict[str, Any]]:
    """Clean up an upstream's tool-call ``arguments`` string.

    Returns ``(json_text, parsed_object)``. ``json_text`` is ``raw`` itself whenever ``raw`` is
    a JSON object, so the client sees exactly what the model wrote. Repairs, in order: empty →
    ``{}``; several objects glued together (``{}{"a":1}``, a known upstream bug) → the first
    non-empty one; a JSON string holding an object (double-encoded) → that object; anything else
    that is not an object → ``{}``.
    """
    text = raw.strip()
    if not text:
        return "{}", {}
    try:
        value = _loads(text)
    except ValueError:
        value = _glued(text)
        if value is None:
            return "{}", {}
        return value
    if isinstance(value, dict):
        return raw, value
    if isinstance(value, str):
        try:
            inner = _loads(value)
        except ValueError:
            return "{}", {}
        if isinstance(inner, dict):
            return value, inner
    return "{}", {}


def _glued(text: str) -> tuple[str, dict[str, Any]] | None:
    pos = 0
    end = len(text)
    first: tuple[str, dict[str, Any]] | None = None
    while pos < end:
        try:
            value, stop = _DECODER.raw_decode(text, pos)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        if first is None or (not first[1] and value):
            first = (text[pos:stop], value)
        pos = stop
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
    return first


# ---------------------------------------------------------------------------------------------
# non-streaming answers


def matched_stop(choice: dict[str, Any], text: str, sequences: tuple[str, ...]) -> str | None:
    """Which of the request's ``stop_sequences`` ended an answer whose ``finish_reason`` is "stop".

    OpenAI itself says only "stop" and leaves the string out of the text, so nothing tells it
    from the model's own end there; vLLM names the string in ``stop_reason``, SGLang and LMDeploy
    in ``matched_stop``, and a server that keeps the string in the text ends the text with it.
    """
    for name in ("stop_reason", "matched_stop"):
        named = choice.get(name)
        if type(named) is str and named in sequences:
            return named
    return next((s for s in sequences if text.endswith(s)), None)


def openai_response_to_anthropic(resp: dict[str, Any], *, requested_model: str | None = None,
                                 signature: str = "", stop_sequences: tuple[str, ...] = ()) -> dict[str, Any]:
    """A ``chat.completion`` object → an Anthropic ``message`` object.

    Blocks come in the order thinking, text, tool_use; the content is never an empty list.
    ``signature``: what the thinking block is signed with (``app.proxy.thinking.reasoning_signature``).
    """
    choices = resp.get("choices") or []
    choice: dict[str, Any] = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []

    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": signature})

    text = _message_text(message.get("content"))
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str):
        text = refusal
    if text:
        content.append({"type": "text", "text": text})

    tool_calls = message.get("tool_calls") or []
    for call in tool_calls:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if isinstance(args, dict):  # a few servers send the object itself
            parsed = args
        else:
            _, parsed = normalize_tool_arguments(args if isinstance(args, str) else "")
        content.append(
            {"type": "tool_use", "id": tool_use_id_for(_str_or_none(call.get("id"))), "name": fn.get("name") or "", "input": parsed}
        )

    if not content:
        content.append({"type": "text", "text": ""})

    finish = choice.get("finish_reason")
    usage = usage_from_openai(resp.get("usage"))
    reason = stop_reason_for(finish, had_tool_calls=bool(tool_calls))
    matched = matched_stop(choice, text or "", stop_sequences) if reason == "end_turn" and finish == "stop" \
        and stop_sequences else None
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": resp.get("model") or requested_model or "",
        "content": content,
        "stop_reason": "stop_sequence" if matched is not None else reason,
        "stop_sequence": matched,
        "usage": usage_dict(usage),
    }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _message_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # some servers answer with content parts
        return "".join(
            part.get("text") or ""
            for part in value
            if isinstance(part, dict) and part.get("type") in ("text", "output_text")
        )
    return ""


# ---------------------------------------------------------------------------------------------
# errors

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for_status(status: int) -> str:
    known = _TYPE_BY_STATUS.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _anthropic_status(status: int) -> int:
    if status == 503:
        return 529  # Anthropic's "overloaded": clients back off and retry
    if status == 422:
        return 400
    if 400 <= status <= 599:
        return status
    return 502  # an "error" that came with a 2xx/3xx status is a bad gateway answer


_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "reduce the length",
)
_MAX_CTX = re.compile(r"(?:maximum context length|context length|context window)[^0-9]{0,40}?(\d+)", re.I)
_ACTUAL = re.compile(r"(?:resulted in|requested|you requested|prompt has|input has|got)\D{0,20}?(\d+)\s*tokens", re.I)


def _context_message(message: str, code: str) -> str | None:
    """Anthropic's wording for "prompt too long", so clients compact instead of failing.

    Claude Code recognises ``prompt is too long`` and compacts the conversation; OpenAI-style
    upstreams say "maximum context length is N tokens". The upstream text is kept after it.
    """
    low = message.lower()
    if low.startswith("prompt is too long"):
        return message
    if code != "context_length_exceeded" and not any(h in low for h in _CONTEXT_HINTS):
        return None
    if "output" in low and "max_tokens" in low and "context" not in low:
        return None
    limit = _MAX_CTX.search(message)
    actual = _ACTUAL.search(message)
    if limit and actual:
        return f"prompt is too long: {actual.group(1)} tokens > {limit.group(1)} maximum ({message})"
    return f"prompt is too long: {message}"


def _error_fields(body: bytes) -> tuple[str, str]:
    """(message, code) from an upstream error body, keeping the upstream's own wording."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "", ""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text[:4000], ""
    if isinstance(data, list) and data:  # Gemini's OpenAI layer wraps errors in a list
        data = data[0]
    return error_object_fields(data, fallback=text[:4000])


def error_object_fields(data: Any, *, fallback: str = "") -> tuple[str, str]:
    """(message, code) from a parsed error payload: ``{"error":{…}}``, ``{"error":"…"}``,
    ``{"message":…}`` or FastAPI's ``{"detail":…}``."""
    if not isinstance(data, dict):
        return fallback, ""
    err = data.get("error", data)
    if isinstance(err, str):
        return err, ""
    if not isinstance(err, dict):
        return fallback, ""
    message = err.get("message")
    if not isinstance(message, str) or not message:
        detail = err.get("detail")
        if isinstance(detail, str):
            message = detail
        elif detail is not None:
            message = json.dumps(detail, ensure_ascii=False)
        else:
            message = fallback
    raw_code = err.get("code") or err.get("type") or ""
    return message, str(raw_code)


def openai_error_to_anthropic(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    """An upstream's error answer → (our HTTP status, Anthropic error body).

    The message is the upstream's own text (``error.message``, ``detail``, or the raw body),
    except that context-length errors are reworded to Anthropic's ``prompt is too long: …``
    with the upstream text kept in brackets.
    """
    message, code = _error_fields(body)
    err_type = error_type_for_status(status)
    out_status = _anthropic_status(status)
    if status in (400, 413, 422) or code == "context_length_exceeded":
        reworded = _context_message(message, code)
        if reworded is not None:
            message = reworded
            err_type = "invalid_request_error"
            out_status = 400
    if not message:
        message = (
            f"The upstream answered HTTP {status} without saying why. "
            "Check the backend's address, key and model name, or try again."
        )
    return out_status, {"type": "error", "error": {"type": err_type, "message": message}}


def error_type_for_stream_error(err: Any) -> tuple[str, str]:
    """(Anthropic error type, message) for an ``{"error": {...}}`` object inside a stream."""
    message, code = error_object_fields({"error": err} if not isinstance(err, dict) else {"error": err})
    status = None
    if isinstance(err, dict):
        raw = err.get("code")
        if isinstance(raw, int):
            status = raw
        elif isinstance(raw, str) and raw.isdigit():
            status = int(raw)
    low = (code + " " + message).lower()
    if status is not None and 400 <= status <= 599:
        err_type = error_type_for_status(status)
    elif "rate" in low and "limit" in low:
        err_type = "rate_limit_error"
    elif "overload" in low or "capacity" in low or "unavailable" in low:
        err_type = "overloaded_error"
    elif "context_length" in low or "invalid" in low:
        err_type = "invalid_request_error"
    else:
        err_type = "api_error"
    if not message:
        message = "The upstream reported an error in the middle of its answer without details. Try again."
    return err_type, message
