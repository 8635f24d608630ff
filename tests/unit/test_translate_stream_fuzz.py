"""The OpenAI stream translator fuzzed on chunk shapes: whatever an upstream sends, ``feed``
never raises, the events keep the Anthropic stream grammar, and the text read so far survives."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.proxy.translate.stream import OpenAIStreamTranslator

EXAMPLES = 300

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=False), st.text(max_size=8))
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                    max_leaves=8)


def _maybe(strategy: Any) -> Any:
    return st.one_of(strategy, junk)


tool_call = st.fixed_dictionaries({}, optional={
    "index": _maybe(st.integers(0, 2)), "id": _maybe(st.sampled_from(["call_1", "call_2"])),
    "type": _maybe(st.just("function")),
    "function": _maybe(st.fixed_dictionaries({}, optional={
        "name": _maybe(st.sampled_from(["read", "write"])),
        "arguments": _maybe(st.sampled_from(['{"a"', ': 1}', "{}", '{"b": 2}', ""]))}))})
delta = st.fixed_dictionaries({}, optional={
    "role": _maybe(st.just("assistant")), "content": _maybe(st.text(max_size=10)),
    "reasoning_content": _maybe(st.text(max_size=10)), "refusal": _maybe(st.text(max_size=5)),
    "tool_calls": _maybe(st.lists(_maybe(tool_call), max_size=3))})
choice = st.fixed_dictionaries({}, optional={
    "index": _maybe(st.just(0)), "delta": _maybe(delta),
    "finish_reason": _maybe(st.sampled_from(["stop", "length", "tool_calls", "content_filter", "error", None]))})
usage = st.fixed_dictionaries({}, optional={"prompt_tokens": _maybe(st.integers(0, 100)),
                                            "completion_tokens": _maybe(st.integers(0, 100))})
chunk = st.fixed_dictionaries({}, optional={
    "id": _maybe(st.just("c")), "model": _maybe(st.just("m")), "choices": _maybe(st.lists(_maybe(choice), max_size=3)),
    "usage": _maybe(usage), "error": st.one_of(st.none(), junk)})


def _check_grammar(events: list[tuple[str, dict[str, Any]]]) -> None:
    assert events[0][0] == "message_start"
    open_index: int | None = None
    next_index = 0
    for name, data in events[1:]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index = next_index
            next_index += 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name in ("message_delta", "message_stop", "error"):
            assert open_index is None
    assert events[-1][0] in ("message_stop", "error")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.one_of(chunk, junk), max_size=12))
def test_any_chunk_shapes_keep_the_stream_grammar(chunks: list[Any]) -> None:
    tr = OpenAIStreamTranslator("m", input_tokens=5)
    events = tr.start()
    for c in chunks:
        events += tr.feed(c)  # never raises
    events += tr.finish()
    _check_grammar(events)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(odd=st.lists(st.one_of(junk, st.builds(lambda c: {"choices": c}, junk),
                              st.builds(lambda d: {"choices": [{"index": 0, "delta": d}]}, junk)), max_size=6))
def test_odd_chunks_never_lose_the_text_around_them(odd: list[Any]) -> None:
    tr = OpenAIStreamTranslator("m")
    events = tr.start()
    events += tr.feed({"choices": [{"index": 0, "delta": {"content": "before "}}]})
    for c in odd:
        if isinstance(c, dict) and "error" in c:
            continue  # an error object ends a stream on purpose
        events += tr.feed(c)
    events += tr.feed({"choices": [{"index": 0, "delta": {"content": "after"}}]})
    events += tr.finish()
    text = "".join(d["delta"]["text"] for n, d in events
                   if n == "content_block_delta" and d["delta"].get("type") == "text_delta")
    assert text.startswith("before ") and text.endswith("after")
    _check_grammar(events)
