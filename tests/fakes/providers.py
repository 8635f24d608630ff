"""Fake OpenAI-compatible providers that enforce the history rules real ones publish
(docs/protocol.md §7), each as a ``guard`` that refuses with the provider's own error wording and a
``respond`` that drives a ``Write`` tool loop the way the provider answers:

- :class:`DeepSeekThinking`: a thinking model (``deepseek-reasoner``; ``wording="kimi"`` for
  Moonshot's Kimi K2.5/K2.6) streams ``reasoning_content`` before its ``tool_calls`` and refuses
  (400) any assistant message with ``tool_calls`` that lacks ``reasoning_content``.
- :class:`OpenRouterGemini`: Gemini 3 through OpenRouter streams ``reasoning`` plus
  ``reasoning_details`` (an encrypted thought signature with each tool call) and refuses (400
  "Provider returned error", the reason in ``metadata.raw``) an assistant tool-call message whose
  ``reasoning_details`` do not carry a signature it issued for that function.
- :class:`MistralIds`: Mistral's API issues nine-character tool-call ids and refuses (400,
  ``invalid_function_call``) any tool-call id or ``tool_call_id`` that is not ``[a-zA-Z0-9]{9}``.

Use as ``FakeUpstream(provider.respond, wire="openai", guard=provider.guard)``. Each ``Write``
turn writes ``file<N>.txt`` under ``folder`` (N = tool-call turns in the history + 1), so a
session continued later writes a new file instead of overwriting one it has not read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Any

from tests.fakes.chunks import _chunk, _usage_chunk, openai_completion, openai_text_chunks, split_text
from tests.fakes.upstreams import JSON, OpenAIJSON, OpenAIStream, ReceivedRequest, Response

CONTENT = "written through a provider with rules\n"


def _messages(req: ReceivedRequest) -> list[JSON]:
    body = req.json
    msgs = body.get("messages") if isinstance(body, dict) else None
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def tool_turns(messages: list[JSON]) -> list[int]:
    """Indices of the assistant messages that carry ``tool_calls``."""
    return [n for n, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")]


def whole(chunks: list[JSON]) -> JSON:
    """The non-streamed ``chat.completion`` the same answer makes: the chunks' deltas joined."""
    message: JSON = {"role": "assistant", "content": None}
    calls: dict[int, JSON] = {}
    finish = usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            finish = choice.get("finish_reason") or finish
            for key, value in (choice.get("delta") or {}).items():
                if key == "tool_calls":
                    for frag in value:
                        call = calls.setdefault(frag["index"], {"type": "function", "function": {"arguments": ""}})
                        call.update({k: v for k, v in frag.items() if k in ("id", "type")})
                        fn = frag.get("function") or {}
                        call["function"]["name"] = fn.get("name") or call["function"].get("name")
                        call["function"]["arguments"] += fn.get("arguments") or ""
                elif key == "reasoning_details":
                    message.setdefault(key, []).extend(value)
                elif isinstance(value, str) and key != "role":
                    message[key] = (message.get(key) or "") + value
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    first = chunks[0]
    return {"id": first["id"], "object": "chat.completion", "created": first["created"], "model": first["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


class _ToolLoop:
    """A model that answers each new user prompt with one ``Write`` call and each tool result
    with a short text; title and other tool-less requests get a short text."""

    model = "fake-model"
    done_text = "The file is written."

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.refused: list[str] = []  # the messages of every refusal, in order
        self.served: list[JSON] = []  # the bodies of the requests it answered (tool turns only)

    def respond(self, req: ReceivedRequest) -> Response | None:
        if not req.path.endswith("/chat/completions"):
            return None
        msgs = _messages(req)
        if not (req.json or {}).get("tools"):
            return OpenAIStream(openai_text_chunks("A title", 2)) if req.is_stream else \
                OpenAIJSON(openai_completion("A title"))
        self.served.append(req.json)
        if msgs and msgs[-1].get("role") == "tool":
            chunks = self.text_chunks()
        else:
            path = self.folder / f"file{len(tool_turns(msgs)) + 1}.txt"
            chunks = self.tool_chunks(json.dumps({"file_path": str(path), "content": CONTENT}))
        return OpenAIStream(chunks) if req.is_stream else OpenAIJSON(whole(chunks))

    def text_chunks(self) -> list[JSON]:
        return openai_text_chunks(self.done_text, 3, model=self.model)

    def tool_chunks(self, arguments: str) -> list[JSON]:  # pragma: no cover - each provider has its own
        raise NotImplementedError

    def _call_chunks(self, call_id: str, arguments: str, lead: list[JSON], head_extra: JSON | None = None) -> list[JSON]:
        cid, model = "chatcmpl-provider", self.model
        head: JSON = {"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                      "function": {"name": "Write", "arguments": ""}}]}
        head.update(head_extra or {})
        chunks = [_chunk(cid, model, {"role": "assistant", "content": None}), *lead, _chunk(cid, model, head)]
        for piece in split_text(arguments, 3):
            chunks.append(_chunk(cid, model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        chunks.append(_chunk(cid, model, {}, "tool_calls"))
        chunks.append(_usage_chunk(cid, model, (40, 12, 0)))
        return chunks


# --------------------------------------------------------------------------- DeepSeek / Kimi


class DeepSeekThinking(_ToolLoop):
    """DeepSeek's thinking mode (or Kimi's, ``wording="kimi"``)."""

    REASONING = "The user wants a file written, so I call Write with the path and the content."

    def __init__(self, folder: Path, *, wording: str = "deepseek", model: str = "deepseek-reasoner") -> None:
        super().__init__(folder)
        self.wording = wording
        self.model = model

    def message(self, index: int) -> str:
        if self.wording == "kimi":
            return f"thinking is enabled but reasoning_content is missing in assistant tool call message at index {index}"
        return f"Missing `reasoning_content` field in the assistant message at message index {index}"

    def guard(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST" or not req.path.endswith("/chat/completions"):
            return None
        msgs = _messages(req)
        for n in tool_turns(msgs):
            if not isinstance(msgs[n].get("reasoning_content"), str):
                text = self.message(n)
                self.refused.append(text)
                return OpenAIJSON({"error": {"message": text, "type": "invalid_request_error", "param": None,
                                             "code": "invalid_request_error"}}, 400)
        return None

    def tool_chunks(self, arguments: str) -> list[JSON]:
        lead = [_chunk("chatcmpl-provider", self.model, {"reasoning_content": p}) for p in split_text(self.REASONING, 3)]
        return self._call_chunks("call_00_" + secrets.token_hex(8), arguments, lead)

    def text_chunks(self) -> list[JSON]:
        return openai_text_chunks(self.done_text, 3, model=self.model, reasoning="The file is there; I say so.")


# --------------------------------------------------------------------------- OpenRouter serving Gemini 3


class OpenRouterGemini(_ToolLoop):
    model = "google/gemini-3-pro-preview"
    RAW = ("Gemini models require OpenRouter reasoning details to be preserved in each request. Please refer to our "
           "docs: https://openrouter.ai/docs/guides/best-practices/reasoning-tokens#preserving-reasoning-blocks. "
           "Upstream error: {\n  \"error\": {\n    \"code\": 400,\n    \"message\": \"Function call is missing a "
           "thought_signature in functionCall parts. This is required for tools to work correctly, and missing "
           "thought_signature may lead to degraded model performance. Additional data, function call "
           "`default_api:%s` , position %d. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
           "for more details.\",\n    \"status\": \"INVALID_ARGUMENT\"\n  }\n}\n")

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._key = secrets.token_bytes(16)

    def signature(self, name: str, nonce: str) -> str:
        mac = hmac.new(self._key, f"{nonce}:{name}".encode(), hashlib.sha256).digest()
        return nonce + "." + base64.b64encode(mac).decode()

    def _signed(self, details: Any, name: str) -> bool:
        for item in details if isinstance(details, list) else ():
            data = item.get("data") if isinstance(item, dict) and item.get("type") == "reasoning.encrypted" else None
            if isinstance(data, str) and "." in data and hmac.compare_digest(self.signature(name, data.split(".")[0]), data):
                return True
        return False

    def guard(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST" or not req.path.endswith("/chat/completions"):
            return None
        msgs = _messages(req)
        for n in tool_turns(msgs):
            name = msgs[n]["tool_calls"][0].get("function", {}).get("name", "")
            if not self._signed(msgs[n].get("reasoning_details"), name):
                raw = self.RAW % (name, n + 1)
                self.refused.append(raw)
                return OpenAIJSON({"error": {"message": "Provider returned error", "code": 400,
                                             "metadata": {"raw": raw, "provider_name": "Google AI Studio"}},
                                   "user_id": "user_fake"}, 400)
        return None

    def tool_chunks(self, arguments: str) -> list[JSON]:
        cid, model = "gen-provider", self.model
        thought = "I should write the file."
        lead = [_chunk(cid, model, {"content": "", "reasoning": thought, "reasoning_details": [
            {"type": "reasoning.text", "text": thought, "format": "google-gemini-v1", "index": 0}]})]
        call_id = "tool_Write_" + secrets.token_hex(6)
        sig = self.signature("Write", secrets.token_hex(6))
        extra = {"reasoning_details": [{"type": "reasoning.encrypted", "data": sig, "id": call_id,
                                        "format": "google-gemini-v1", "index": 1}]}
        return self._call_chunks(call_id, arguments, lead, extra)


# --------------------------------------------------------------------------- Mistral


class MistralIds(_ToolLoop):
    model = "devstral-medium-2512"
    ID = re.compile(r"^[a-zA-Z0-9]{9}$")
    ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

    def guard(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST" or not req.path.endswith("/chat/completions"):
            return None
        for m in _messages(req):
            ids = [c.get("id") for c in m.get("tool_calls") or [] if isinstance(c, dict)]
            if m.get("role") == "tool":
                ids.append(m.get("tool_call_id"))
            for tool_id in ids:
                if not isinstance(tool_id, str) or not self.ID.match(tool_id):
                    text = f"Tool call id was {tool_id} but must be a-z, A-Z, 0-9, with a length of 9."
                    self.refused.append(text)
                    return OpenAIJSON({"object": "error", "message": text, "type": "invalid_function_call",
                                       "param": None, "code": "3280"}, 400)
        return None

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.issued: list[str] = []  # the tool-call ids it gave, in order

    def tool_chunks(self, arguments: str) -> list[JSON]:
        call_id = "".join(secrets.choice(self.ALPHABET) for _ in range(9))
        self.issued.append(call_id)
        return self._call_chunks(call_id, arguments, [])


# --------------------------------------------------------------------------- no rules at all


class PlainOpenAI(_ToolLoop):
    """An OpenAI-compatible model with no history rules and no reasoning (``call_…`` ids)."""

    model = "gpt-fake"

    def guard(self, req: ReceivedRequest) -> Response | None:
        return None

    def tool_chunks(self, arguments: str) -> list[JSON]:
        return self._call_chunks("call_" + secrets.token_hex(12), arguments, [])
