"""OpenAI chunk stream → Anthropic event stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.events import Usage
from app.proxy.translate.stream import OpenAIStreamTranslator, encode_events

try:  # anthropic ≥ 2.x runs on the httpx2 fork and refuses httpx objects
    import httpx2 as sdk_httpx
except ImportError:  # pragma: no cover - older SDKs
    import httpx as sdk_httpx  # type: ignore[no-redef]

Events = list[tuple[str, dict[str, Any]]]
USAGE_KEYS = {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}


# -- a strict validator of the Anthropic grammar (docs/protocol.md §2) ---------------------------------


@dataclass
class Assembled:
    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error: dict[str, Any] | None = None


DELTA_FOR = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}


def validate(events: Events) -> Assembled:
    """Assert ``events`` is a valid Anthropic stream; answer what it says."""
    # the bytes we would send must decode back to the same events
    raw = encode_events(events).decode()
    frames = raw.split("\n\n")
    assert frames[-1] == ""
    decoded = []
    for frame in frames[:-1]:
        ev_line, data_line = frame.split("\n")
        assert ev_line.startswith("event: ") and data_line.startswith("data: ")
        decoded.append((ev_line[7:], json.loads(data_line[6:])))
    assert decoded == [(t, json.loads(orjson.dumps(d))) for t, d in events]

    out = Assembled()
    assert events, "no events"
    assert events[0][0] == "message_start"
    msg = events[0][1]["message"]
    assert msg["id"].startswith("msg_") and msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["content"] == [] and msg["stop_reason"] is None and msg["stop_sequence"] is None
    assert USAGE_KEYS <= set(msg["usage"])
    open_index: int | None = None
    next_index = 0
    body = events[1:]
    if body and body[-1][0] == "error":
        out.error = body[-1][1]
        assert out.error["type"] == "error" and set(out.error["error"]) == {"type", "message"}
        body = body[:-1]
        tail: Events = []
    else:
        assert len(body) >= 2 and body[-1][0] == "message_stop" and body[-2][0] == "message_delta", events
        tail = body[-2:]
        body = body[:-2]
    for name, data in body:
        assert data["type"] == name
        if name == "content_block_start":
            assert open_index is None, "two blocks open"
            assert data["index"] == next_index, "indices must be sequential"
            block = dict(data["content_block"])
            kind = block["type"]
            if kind == "text":
                assert block == {"type": "text", "text": ""}
            elif kind == "thinking":
                assert block == {"type": "thinking", "thinking": "", "signature": ""}
            elif kind == "tool_use":
                assert set(block) == {"type", "id", "name", "input"} and block["input"] == {}
                assert block["id"].startswith("toolu_") and block["name"]
                block["json"] = ""
            else:
                raise AssertionError(kind)
            out.blocks.append(block)
            open_index = next_index
            next_index += 1
        elif name == "content_block_delta":
            assert open_index is not None and data["index"] == open_index
            block = out.blocks[open_index]
            delta = data["delta"]
            assert delta["type"] == DELTA_FOR[block["type"]]
            if delta["type"] == "text_delta":
                assert delta["text"]
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                assert delta["thinking"]
                block["thinking"] += delta["thinking"]
            else:
                block["json"] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected {name} in the middle")
    if out.error is not None:
        assert open_index is None
        return out
    assert open_index is None, "a block left open"
    assert next_index > 0, "empty content"
    md = tail[0][1]
    assert set(md) == {"type", "delta", "usage"}
    assert set(md["delta"]) == {"stop_reason", "stop_sequence"}
    assert set(md["usage"]) == USAGE_KEYS
    out.stop_reason = md["delta"]["stop_reason"]
    out.stop_sequence = md["delta"]["stop_sequence"]
    out.usage = md["usage"]
    assert tail[1][1] == {"type": "message_stop"}
    tool_ids = [b["id"] for b in out.blocks if b["type"] == "tool_use"]
    assert len(set(tool_ids)) == len(tool_ids)
    for b in out.blocks:
        if b["type"] == "tool_use":
            b["input"] = json.loads(b.pop("json"))
            assert isinstance(b["input"], dict)
    return out


def run(chunks: list[Any], **kw: Any) -> tuple[OpenAIStreamTranslator, Events]:
    t = OpenAIStreamTranslator(kw.pop("model", "requested"), **kw)
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    events += t.finish()
    return t, events


def delta(**d: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "up-model",
            "choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def finish(reason: str, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason, **extra}]}


def usage_chunk(prompt: int, completion: int, cached: int | None = None, *, choices: Any = ()) -> dict[str, Any]:
    u: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached is not None:
        u["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"choices": list(choices) if choices is not None else None, "usage": u}


def tc(index: int | None = None, id: str | None = None, name: str | None = None, args: str | None = None) -> dict[str, Any]:
    frag: dict[str, Any] = {}
    if index is not None:
        frag["index"] = index
    if id is not None:
        frag["id"] = id
        frag["type"] = "function"
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    frag["function"] = fn
    return frag


def texts(a: Assembled, kind: str = "text") -> str:
    return "".join(b[kind] for b in a.blocks if b["type"] == kind)


def tools(a: Assembled) -> list[tuple[str, Any]]:
    return [(b["name"], b["input"]) for b in a.blocks if b["type"] == "tool_use"]


# -- examples ------------------------------------------------------------------------------------------


def test_plain_text_with_usage_after_finish() -> None:
    t, ev = run([delta(role="assistant", content=""), delta(content="Hel"), delta(content="lo"), finish("stop"),
                 usage_chunk(100, 7, cached=40)], input_tokens=90)
    a = validate(ev)
    assert texts(a) == "Hello" and len(a.blocks) == 1
    assert a.stop_reason == "end_turn" and a.stop_sequence is None
    assert a.usage == {"input_tokens": 60, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40}
    assert t.usage == Usage(60, 7, 0, 40) and t.usage_reported
    assert t.model == "up-model" and t.stop_reason == "end_turn" and t.first_content_seen
    start = ev[0][1]["message"]
    assert start["model"] == "requested" and start["usage"]["input_tokens"] == 90


def test_message_start_has_full_usage_shape() -> None:
    t = OpenAIStreamTranslator("m", input_tokens=12, message_id="msg_fixed")
    [(name, data)] = t.start()
    assert name == "message_start" and data["message"]["id"] == "msg_fixed"
    assert USAGE_KEYS <= set(data["message"]["usage"]) and data["message"]["usage"]["input_tokens"] == 12
    assert t.start() == []  # once only


def test_reasoning_then_text_then_tool() -> None:
    t, ev = run([
        delta(reasoning_content="Let me "), delta(reasoning_content="think."),
        delta(content="I'll read it."),
        delta(tool_calls=[tc(0, "call_1", "Read", "")]),
        delta(tool_calls=[tc(0, args='{"file_path":')]),
        delta(tool_calls=[tc(0, args=' "/a.py"}')]),
        finish("tool_calls"),
        usage_chunk(10, 20, choices=None),
    ])
    a = validate(ev)
    assert [b["type"] for b in a.blocks] == ["thinking", "text", "tool_use"]
    assert texts(a, "thinking") == "Let me think." and texts(a) == "I'll read it."
    assert tools(a) == [("Read", {"file_path": "/a.py"})]
    assert a.stop_reason == "tool_use"
    assert t.tool_ids["call_1"] == a.blocks[2]["id"] and a.blocks[2]["id"] != "call_1"


def test_openrouter_reasoning_field_and_no_double_counting() -> None:
    _, ev = run([delta(reasoning="R1", reasoning_details=[{"text": "R1"}]), delta(reasoning_content="R2", reasoning="R2"),
                 delta(content="T"), finish("stop")])
    a = validate(ev)
    assert texts(a, "thinking") == "R1R2" and texts(a) == "T"


def test_interleaved_thinking_and_text_make_new_blocks() -> None:
    _, ev = run([delta(reasoning="a"), delta(content="b"), delta(reasoning="c"), delta(content="d"), finish("stop")])
    a = validate(ev)
    assert [b["type"] for b in a.blocks] == ["thinking", "text", "thinking", "text"]


def test_tool_calls_with_stop_finish_reason_is_tool_use() -> None:
    _, ev = run([delta(tool_calls=[tc(0, "c", "Ls", "{}")]), finish("stop")])
    assert validate(ev).stop_reason == "tool_use"


@pytest.mark.parametrize(("reason", "expected"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), ("tool_calls", "tool_use"),
    ("something_new", "end_turn"),
])
def test_finish_reasons(reason: str, expected: str) -> None:
    _, ev = run([delta(content="x"), finish(reason)])
    assert validate(ev).stop_reason == expected


def test_length_with_tool_call_stays_max_tokens() -> None:
    _, ev = run([delta(tool_calls=[tc(0, "c", "Write", '{"content": "abc')]), finish("length")])
    a = validate(ev)
    assert a.stop_reason == "max_tokens"
    assert tools(a) == [("Write", {})]  # a cut-off object is never sent as broken JSON


def test_stop_sequence_known_from_vllm() -> None:
    _, ev = run([delta(content="x"), finish("stop", stop_reason="END")], stop_sequences=["END"])
    a = validate(ev)
    assert a.stop_reason == "stop_sequence" and a.stop_sequence == "END"
    _, ev = run([delta(content="x"), finish("stop", stop_reason=None)], stop_sequences=["END"])
    assert validate(ev).stop_reason == "end_turn"


def test_no_content_at_all_gives_one_empty_text_block() -> None:
    t, ev = run([delta(role="assistant"), delta(content=""), finish("stop"), usage_chunk(5, 0)])
    a = validate(ev)
    assert a.blocks == [{"type": "text", "text": ""}]
    assert not t.first_content_seen


def test_finish_without_any_chunk_and_without_start() -> None:
    t = OpenAIStreamTranslator("m")
    ev = t.finish()
    assert validate(ev).blocks == [{"type": "text", "text": ""}]
    assert t.finish() == [] and t.feed(delta(content="late")) == []


def test_feed_before_start_sends_message_start_once() -> None:
    t = OpenAIStreamTranslator("m")
    ev = t.feed(delta(content="a"))
    assert ev[0][0] == "message_start"
    ev += t.start() + t.feed(delta(content="b")) + t.finish()
    assert texts(validate(ev)) == "ab"


def test_parallel_calls_sequential() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, "a", "Read", '{"p":'), ]),
        delta(tool_calls=[tc(0, args='"x"}')]),
        delta(tool_calls=[tc(1, "b", "Grep", '{"q":"y"}')]),
        delta(tool_calls=[tc(2, "c", "Ls", "")]),
        finish("tool_calls"),
    ])
    a = validate(ev)
    assert tools(a) == [("Read", {"p": "x"}), ("Grep", {"q": "y"}), ("Ls", {})]


def test_parallel_calls_interleaved() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, "a", "Read", '{"p"'), tc(1, "b", "Grep", '{"q"')]),
        delta(tool_calls=[tc(1, args=':"y"}')]),
        delta(tool_calls=[tc(0, args=':"x"}')]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": "x"}), ("Grep", {"q": "y"})]


def test_calls_without_index() -> None:
    _, ev = run([
        delta(tool_calls=[tc(None, "a", "Read", '{"p":1}'), tc(None, "b", "Read", '{"p":2}')]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": 1}), ("Read", {"p": 2})]
    _, ev = run([delta(tool_calls=[tc(None, "a", "Read", '{"p"')]), delta(tool_calls=[tc(None, args=":1}")]), finish("stop")])
    assert tools(validate(ev)) == [("Read", {"p": 1})]


def test_all_calls_on_index_zero_with_new_ids() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, "a", "Read", '{"p":')]), delta(tool_calls=[tc(0, args="1}")]),
        delta(tool_calls=[tc(0, "b", "Read", '{"p":2}')]),
        delta(tool_calls=[tc(0, "c", "Ls", "{}")]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": 1}), ("Read", {"p": 2}), ("Ls", {})]


def test_all_calls_on_index_zero_without_ids() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, name="Read", args='{"p":1}')]),
        delta(tool_calls=[tc(0, name="Read", args='{"p":2}')]),
        delta(tool_calls=[tc(0, name="Ls", args="{}")]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": 1}), ("Read", {"p": 2}), ("Ls", {})]


def test_repeated_id_and_name_on_every_fragment_is_one_call() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, "a", "Read", '{"p"')]),
        delta(tool_calls=[tc(0, "a", "Read", ':1}')]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": 1})]


def test_glued_and_odd_arguments() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, "a", "Read", "{}")]), delta(tool_calls=[tc(0, args='{"p": 1}')]),
        delta(tool_calls=[tc(1, "b", "Ls", None)]),
        delta(tool_calls=[tc(2, "c", "Enc", json.dumps(json.dumps({"q": [1]})))]),
        delta(tool_calls=[{"index": 3, "id": "d", "function": {"name": "Obj", "arguments": {"z": True}}}]),
        delta(tool_calls=[tc(4, "e", "Bad", "not json")]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": 1}), ("Ls", {}), ("Enc", {"q": [1]}), ("Obj", {"z": True}), ("Bad", {})]


def test_glued_prefix_while_interleaved_with_another_call() -> None:
    _, ev = run([
        delta(tool_calls=[tc(0, "a", "Read", "{}")]),
        delta(tool_calls=[tc(1, "b", "Ls", '{"d":')]),
        delta(tool_calls=[tc(0, args='{"p":1}')]),
        delta(tool_calls=[tc(1, args='"x"}')]),
        finish("tool_calls"),
    ])
    assert tools(validate(ev)) == [("Read", {"p": 1}), ("Ls", {"d": "x"})]


def test_arguments_sent_verbatim_when_valid() -> None:
    raw = '{ "b": 1,\n  "a": "é\\u00e9" }'
    _, ev = run([delta(tool_calls=[tc(0, "a", "X", raw[:5])]), delta(tool_calls=[tc(0, args=raw[5:])]), finish("tool_calls")])
    partial = "".join(d["delta"]["partial_json"] for n, d in ev if n == "content_block_delta")
    assert partial == raw


def test_text_after_tool_call_closes_it_and_stray_newlines_do_not() -> None:
    _, ev = run([
        delta(content="Sure."),
        delta(tool_calls=[tc(0, "a", "Read", '{"p"')]),
        delta(content="\n"),
        delta(tool_calls=[tc(0, args=":1}")]),
        delta(content="Done."),
        finish("stop"),
    ])
    a = validate(ev)
    assert [b["type"] for b in a.blocks] == ["text", "tool_use", "text"]
    assert tools(a) == [("Read", {"p": 1})]
    assert a.blocks[2]["text"] == "\nDone."
    assert a.stop_reason == "tool_use"


def test_tool_blocks_are_sent_at_finish_reason_before_usage() -> None:
    t = OpenAIStreamTranslator("m")
    t.start()
    t.feed(delta(tool_calls=[tc(0, "a", "Read", '{"p":1}')]))
    t.feed(delta(tool_calls=[tc(1, "b", "Read", '{"p":2}')]))
    ev = t.feed(finish("tool_calls"))
    names = [n for n, _ in ev]
    assert names.count("content_block_stop") >= 1 and "message_delta" not in names
    ev2 = t.feed(usage_chunk(1, 2)) + t.finish()
    assert [n for n, _ in ev2] == ["message_delta", "message_stop"]


def test_usage_estimated_when_upstream_reports_none() -> None:
    t, ev = run([delta(content="x" * 40), finish("stop")], input_tokens=33)
    a = validate(ev)
    assert a.usage == {"input_tokens": 33, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    assert not t.usage_reported


def test_deepseek_cache_hit_usage() -> None:
    t, _ = run([delta(content="x"), finish("stop"),
                {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 3, "prompt_cache_hit_tokens": 64,
                                          "prompt_cache_miss_tokens": 36}}])
    assert t.usage == Usage(36, 3, 0, 64)


def test_usage_on_the_finish_chunk_itself() -> None:
    chunk = finish("stop")
    chunk["usage"] = {"prompt_tokens": 9, "completion_tokens": 2}
    t, ev = run([delta(content="x"), chunk])
    assert validate(ev).usage["output_tokens"] == 2


def test_error_chunk_mid_stream() -> None:
    t = OpenAIStreamTranslator("m")
    ev = t.start() + t.feed(delta(content="partial"))
    ev += t.feed({"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429}})
    a = validate(ev)
    assert a.error == {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit exceeded: free-models-per-day"}}
    assert texts(a) == "partial"
    assert t.error == ("rate_limit_error", "Rate limit exceeded: free-models-per-day")
    assert t.finish() == [] and t.feed(delta(content="more")) == []


def test_fail_closes_open_tool_block() -> None:
    t = OpenAIStreamTranslator("m")
    ev = t.start() + t.feed(delta(tool_calls=[tc(0, "a", "Read", '{"p"')]))
    ev += t.fail("api_error", "The upstream closed the connection. Try again.")
    a = validate(ev)
    assert a.error is not None and a.error["error"]["type"] == "api_error"
    assert t.fail("api_error", "again") == []


def test_finish_reason_error() -> None:
    _, ev = run([delta(content="x"), finish("error")])
    assert validate(ev).error is not None


def test_only_first_choice_and_junk_ignored() -> None:
    _, ev = run([
        {"choices": [{"index": 1, "delta": {"content": "other"}}, {"index": 0, "delta": {"content": "mine"}}]},
        {"choices": [None]}, "junk", {"choices": [{"index": 0, "delta": None}]},
        delta(tool_calls=["bad"]), finish("stop"),
    ])
    assert texts(validate(ev)) == "mine"


def test_on_delta_hook_reports_everything_once() -> None:
    seen: list[tuple[int, str, str]] = []
    t = OpenAIStreamTranslator("m", on_delta=lambda i, k, s: seen.append((i, k, s)))
    t.start()
    for c in [delta(reasoning="r"), delta(content="t"), delta(tool_calls=[tc(0, "a", "Read", '{"p"')]),
              delta(tool_calls=[tc(1, "b", "Ls", "{}")]), delta(tool_calls=[tc(0, args=":1}")]), finish("tool_calls")]:
        t.feed(c)
    t.finish()
    assert seen == [(0, "thinking", "r"), (1, "text", "t"), (2, "tool_use", "Read"), (2, "tool_input", '{"p"'),
                    (2, "tool_input", ":1}"), (3, "tool_use", "Ls"), (3, "tool_input", "{}")]


def test_encode_events_bytes() -> None:
    out = encode_events([("ping", {"type": "ping"}), ("custom_x", {"a": "é"})])
    assert out == b'event: ping\ndata: {"type":"ping"}\n\nevent: custom_x\ndata: {"a":"\xc3\xa9"}\n\n'
    assert encode_events([]) == b""


# -- property tests ------------------------------------------------------------------------------------

json_leaf = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=8), st.booleans(), st.none(),
                      st.floats(allow_nan=False, allow_infinity=False, width=32))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                              st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=8)
tool_args = st.dictionaries(st.text(max_size=6), json_value, max_size=4)


def split(draw: st.DrawFn, s: str, max_pieces: int = 6) -> list[str]:
    if not s:
        return []
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(s) - 1)), max_size=max_pieces)))
    cuts = [c for c in cuts if 0 < c < len(s)]
    bounds = [0, *cuts, len(s)]
    return [s[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class Script:
    chunks: list[Any]
    text: str
    reasoning: str
    calls: list[tuple[str, dict[str, Any]]]
    usage: tuple[int, int, int] | None
    finish: str


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    chunks: list[Any] = [delta(role="assistant", content="")]
    reasoning_parts: list[str] = []
    text_parts: list[str] = []
    # reasoning and text segments, possibly alternating
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["reasoning_content", "reasoning", "content"]))
        piece = draw(st.text(min_size=1, max_size=30))
        for frag in split(draw, piece):
            chunks.append(delta(**{kind: frag}))
        (text_parts if kind == "content" else reasoning_parts).append(piece)
        if draw(st.booleans()):
            chunks.append(delta(content=None))
    # tool calls
    calls: list[tuple[str, dict[str, Any]]] = []
    n_calls = draw(st.integers(0, 3))
    mode = draw(st.sampled_from(["normal", "interleaved", "no_index", "index0_new_ids"]))
    per_call: list[list[dict[str, Any]]] = []
    for i in range(n_calls):
        name = draw(st.sampled_from(["Read", "Write", "Bash", "Grep"]))
        args = draw(tool_args)
        calls.append((name, args))
        raw = json.dumps(args, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1])))
        if draw(st.booleans()) and args:
            raw = "{}" + raw  # the glued-arguments upstream bug
        pieces = split(draw, raw, 8)
        index = None if mode == "no_index" else (0 if mode == "index0_new_ids" else i)
        first_args = pieces[0] if draw(st.booleans()) else ""
        rest = pieces[1:] if first_args else pieces
        frags = [tc(index, f"call_{i}", name, first_args)]
        frags += [tc(index, args=p) for p in rest]
        per_call.append(frags)
    if mode == "interleaved":
        while any(per_call):
            live = [f for f in per_call if f]
            pick = draw(st.integers(0, len(live) - 1))
            # the first fragment of a later call must not come before an earlier call's first
            # fragment (OpenAI numbers calls in order of appearance)
            first_unstarted = next((i for i, f in enumerate(per_call) if f and "id" in f[0]), None)
            chosen = live[pick]
            if "id" in chosen[0] and per_call.index(chosen) != first_unstarted:
                chosen = per_call[first_unstarted]  # type: ignore[index]
            n = draw(st.integers(1, 2))
            batch, chosen[:] = chosen[:n], chosen[n:]
            chunks.append(delta(tool_calls=batch))
    else:
        for frags in per_call:
            for f in frags:
                chunks.append(delta(tool_calls=[f]))
    finish_reason = "tool_calls" if len(calls) > 0 and draw(st.booleans()) else "stop"
    chunks.append(finish(finish_reason))
    usage = None
    if draw(st.booleans()):
        prompt = draw(st.integers(0, 10**6))
        cached = draw(st.integers(0, prompt))
        completion = draw(st.integers(0, 10**5))
        usage = (prompt, completion, cached)
        chunks.append(usage_chunk(prompt, completion, cached, choices=draw(st.sampled_from([(), None]))))
    return Script(chunks, "".join(text_parts), "".join(reasoning_parts), calls, usage, finish_reason)


def check_script(script: Script, a: Assembled, t: OpenAIStreamTranslator) -> None:
    assert texts(a) == script.text
    assert texts(a, "thinking") == script.reasoning
    assert tools(a) == script.calls
    assert a.stop_reason == ("tool_use" if script.calls else "end_turn")
    if script.usage is not None:
        prompt, completion, cached = script.usage
        assert a.usage == {"input_tokens": prompt - cached, "output_tokens": completion,
                           "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}
        assert t.usage == Usage(prompt - cached, completion, 0, cached)
    assert t.first_content_seen == bool(script.text or script.reasoning or script.calls)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_any_valid_upstream_stream_translates_faithfully(script: Script) -> None:
    t, ev = run(script.chunks)
    check_script(script, validate(ev), t)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(), st.integers(0, 40), st.sampled_from(["rate_limit_error", "api_error"]))
def test_failing_anywhere_still_ends_cleanly(script: Script, cut: int, err: str) -> None:
    t = OpenAIStreamTranslator("m")
    ev = t.start()
    for c in script.chunks[:cut]:
        ev += t.feed(c)
    ev += t.fail(err, "The upstream went away. Try again.")
    a = validate(ev)
    if a.error is not None:
        assert a.error["error"]["type"] == err


# -- the official SDK's strict parser accepts our streams -------------------------------------------


def sdk_final_message(sse: bytes) -> Any:
    def handler(request: Any) -> Any:
        return sdk_httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    http_client = sdk_httpx.Client(transport=sdk_httpx.MockTransport(handler))
    client = anthropic.Anthropic(api_key="x", base_url="http://127.0.0.1:9", http_client=http_client, max_retries=0)
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
        return stream.get_final_message()


def test_sdk_accepts_a_full_stream() -> None:
    _, ev = run([delta(reasoning_content="hmm"), delta(content="Hi"), delta(tool_calls=[tc(0, "a", "Read", '{"p":')]),
                 delta(tool_calls=[tc(0, args='"x"}')]), finish("tool_calls"), usage_chunk(10, 5, 2)])
    msg = sdk_final_message(encode_events(ev))
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "hmm" and msg.content[1].text == "Hi"
    assert msg.content[2].input == {"p": "x"} and msg.content[2].name == "Read"
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (8, 5, 2)


def test_sdk_raises_on_our_error_event() -> None:
    t = OpenAIStreamTranslator("m")
    ev = t.start() + t.feed(delta(content="x")) + t.fail("overloaded_error", "Overloaded")
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk_final_message(encode_events(ev))
    assert "Overloaded" in str(info.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_sdk_accepts_any_translated_stream(script: Script) -> None:
    t, ev = run(script.chunks)
    msg = sdk_final_message(encode_events(ev))
    assert "".join(b.text for b in msg.content if b.type == "text") == script.text
    assert "".join(b.thinking for b in msg.content if b.type == "thinking") == script.reasoning
    assert [(b.name, b.input) for b in msg.content if b.type == "tool_use"] == script.calls
    assert msg.content
