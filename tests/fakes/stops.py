"""OpenAI-compatible servers applying a request's ``stop`` the way each one does.

All cut the answer before the first stop string and leave the string out of the text, with
``finish_reason: "stop"``. Then they differ in what they say about it:
- ``openai``: nothing more (OpenAI's API reference);
- ``vllm``: the string in the choice's ``stop_reason`` (vLLM's OpenAI server);
- ``sglang``: the string in the choice's ``matched_stop`` (SGLang, LMDeploy).
``StopServer(flavour, text)`` is a responder for :class:`FakeUpstream` that scripts ``text``.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.chunks import openai_completion, openai_text_chunks
from tests.fakes.upstreams import OpenAIJSON, OpenAIStream, ReceivedRequest, Response

FIELDS = {"openai": None, "vllm": "stop_reason", "sglang": "matched_stop"}


class StopServer:
    def __init__(self, flavour: str, text: str) -> None:
        self.field = FIELDS[flavour]
        self.text = text

    def __call__(self, req: ReceivedRequest) -> Response | None:
        body: dict[str, Any] = req.json or {}
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        hits = [(self.text.find(s), s) for s in stops if s in self.text]
        text, matched = self.text, None
        if hits:
            at, matched = min(hits)
            text = self.text[:at]
        said = {self.field: matched} if self.field is not None else {}
        if req.is_stream:
            chunks = openai_text_chunks(text, 3)
            for c in chunks:
                for choice in c.get("choices") or []:
                    if choice.get("finish_reason"):
                        choice.update(said)
            return OpenAIStream(chunks)
        completion = openai_completion(text, finish_reason="stop")
        completion["choices"][0].update(said)
        return OpenAIJSON(completion)
