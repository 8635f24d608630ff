"""Reasoning sent back where a provider needs it, and nine-character tool-call ids
(app/proxy/reasoning_store.py, app/proxy/translate/quirks.py, app/proxy/translate/ids.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from app.proxy.reasoning_store import ReasoningStore, merge_details
from app.proxy.translate.ids import new_tool_use_id, nine_char_id, tool_use_id_for
from app.proxy.translate.quirks import apply_quirks
from app.proxy.translate.request import to_openai_request
from app.proxy.translate.stream import OpenAIStreamTranslator

NINE = re.compile(r"^[A-Za-z0-9]{9}$")


def _history(*tool_ids: str, thinking: str | None = None) -> dict[str, Any]:
    """A Claude Code history: one assistant turn per tool id, each answered."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for tid in tool_ids:
        content: list[dict[str, Any]] = []
        if thinking is not None:
            content.append({"type": "thinking", "thinking": thinking, "signature": "patchbay:ds"})
        content.append({"type": "tool_use", "id": tid, "name": "Write", "input": {"file_path": "/a"}})
        messages.append({"role": "assistant", "content": content})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "ok"}]})
    return {"model": "m", "max_tokens": 100, "messages": messages}


def _translate(body: dict[str, Any], quirks: set[str], store: ReasoningStore, backend: str = "ds") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = to_openai_request(body, "m", stream=True)["messages"]
    apply_quirks(messages, frozenset(quirks), backend, store.recall)
    return messages


# --------------------------------------------------------------------------- ids


def test_a_nine_character_upstream_id_comes_back_unchanged() -> None:
    toolu = tool_use_id_for("aB3dE6gH9")
    assert toolu.startswith("toolu_01") and len(toolu) == len(new_tool_use_id())
    assert nine_char_id(toolu) == "aB3dE6gH9"
    assert tool_use_id_for("aB3dE6gH9") != toolu  # a fresh toolu_ id each time: never two alike in a session


def test_any_other_id_maps_to_the_same_nine_characters_every_time() -> None:
    for tid in ("call_00_abc", "toolu_bdrk_01XyZ", "toolu_vrtx_01abc", "", new_tool_use_id()):
        short = nine_char_id(tid)
        assert NINE.match(short) and short == nine_char_id(tid)
        assert nine_char_id(tid, 1) != short and NINE.match(nine_char_id(tid, 1))


def test_tool_id_9_renames_calls_and_results_alike() -> None:
    ids = ["call_a", "call_b", tool_use_id_for("Zz9Zz9Zz9")]
    messages = _translate(_history(*ids), {"tool_id_9"}, ReasoningStore())
    calls = [c["id"] for m in messages if m.get("tool_calls") for c in m["tool_calls"]]
    results = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert calls == results and all(NINE.match(c) for c in calls) and calls[2] == "Zz9Zz9Zz9"
    assert len(set(calls)) == 3


def test_two_ids_with_the_same_nine_characters_stay_apart() -> None:
    one = "toolu_01" + "SAMESAME1" + "a" * 13
    two = "toolu_01" + "SAMESAME1" + "b" * 13
    messages = _translate(_history(one, two), {"tool_id_9"}, ReasoningStore())
    calls = [m["tool_calls"][0]["id"] for m in messages if m.get("tool_calls")]
    assert calls[0] == "SAMESAME1" and calls[1] != "SAMESAME1" and NINE.match(calls[1])
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == calls


# --------------------------------------------------------------------------- reasoning


def test_reasoning_content_from_the_client_then_the_store_then_empty() -> None:
    store = ReasoningStore()
    store.remember("ds", ["toolu_seen"], "I reasoned about it.")
    store.remember("other", ["toolu_other"], "Another model's reasoning.")
    messages = _translate(_history("toolu_seen", "toolu_other", "toolu_unknown"), {"reasoning_content"}, store)
    said = [m.get("reasoning_content") for m in messages if m.get("tool_calls")]
    assert said == ["I reasoned about it.", "", ""]  # another backend's only with foreign_reasoning
    messages = _translate(_history("toolu_other"), {"reasoning_content", "foreign_reasoning"}, store)
    assert [m["reasoning_content"] for m in messages if m.get("tool_calls")] == ["Another model's reasoning."]
    # the client's own thinking block wins over the store
    messages = _translate(_history("toolu_seen", thinking="What the client kept."), {"reasoning_content"}, store)
    assert [m["reasoning_content"] for m in messages if m.get("tool_calls")] == ["What the client kept."]


def test_no_rule_no_change() -> None:
    store = ReasoningStore()
    store.remember("ds", ["toolu_x"], "r", [{"type": "reasoning.encrypted", "data": "sig", "index": 0}])
    messages = _translate(_history("toolu_x"), set(), store)
    assert "reasoning_content" not in messages[1] and "reasoning_details" not in messages[1]
    assert messages[1]["tool_calls"][0]["id"] == "toolu_x"


def test_reasoning_details_go_back_only_to_the_backend_that_sent_them() -> None:
    store = ReasoningStore()
    details = [{"type": "reasoning.encrypted", "data": "sig", "id": "tool_1", "format": "google-gemini-v1", "index": 0}]
    store.remember("openrouter", ["toolu_g"], "", details)
    messages = _translate(_history("toolu_g"), {"reasoning_details"}, store, backend="openrouter")
    assert messages[1]["reasoning_details"] == details
    elsewhere = _translate(_history("toolu_g"), {"reasoning_details"}, store, backend="other")
    assert "reasoning_details" not in elsewhere[1]


def test_streamed_details_are_merged_into_whole_items() -> None:
    pieces = [
        {"type": "reasoning.text", "text": "I should ", "format": "google-gemini-v1", "index": 0},
        {"type": "reasoning.text", "text": "write.", "index": 0},
        {"type": "reasoning.encrypted", "data": "abc", "id": "tool_1", "format": "google-gemini-v1", "index": 1},
    ]
    assert merge_details(pieces) == [
        {"type": "reasoning.text", "text": "I should write.", "format": "google-gemini-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": "abc", "id": "tool_1", "format": "google-gemini-v1", "index": 1},
    ]


def test_the_stream_translator_keeps_what_the_store_needs() -> None:
    tr = OpenAIStreamTranslator("m")
    tr.feed({"choices": [{"index": 0, "delta": {"reasoning": "Hmm.", "reasoning_details": [
        {"type": "reasoning.text", "text": "Hmm.", "index": 0}]}}]})
    tr.feed({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "Ab1Cd2Ef3", "function": {"name": "Write", "arguments": "{}"}}]}}]})
    tr.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    tr.finish()
    assert "".join(tr.reasoning_parts) == "Hmm." and tr.reasoning_details[0]["text"] == "Hmm."
    assert [nine_char_id(t) for t in tr.tool_use_ids] == ["Ab1Cd2Ef3"]


def test_the_store_is_bounded_and_survives_a_restart(tmp_path: Path) -> None:
    store = ReasoningStore(keep=3)
    store.attach(tmp_path)
    for n in range(5):
        store.remember("ds", [f"toolu_{n}"], f"reasoning {n}" + "x" * 20_000)
    again = ReasoningStore(keep=3)
    again.attach(tmp_path)
    found = again.recall([f"toolu_{n}" for n in range(5)])
    assert sorted(found) == ["toolu_2", "toolu_3", "toolu_4"]
    assert len(found["toolu_4"].reasoning) == 16_000 and found["toolu_4"].backend == "ds"
    assert (tmp_path / "reasoning.sqlite3").stat().st_mode & 0o077 == 0  # owner-only, like the ledger
    again.detach()  # the engine stopped: the file is closed, notes go on in memory
    again.remember("ds", ["toolu_9"], "later")
    assert set(again.recall(["toolu_4", "toolu_9"])) == {"toolu_9"}


def test_nothing_to_keep_writes_nothing(tmp_path: Path) -> None:
    store = ReasoningStore()
    store.remember("ds", ["toolu_1"], "")  # no reasoning, no details
    store.remember("ds", [], "reasoning without a tool call")
    assert store.recall(["toolu_1"]) == {}
    big = [{"type": "reasoning.encrypted", "data": "s" * 40_000, "index": 0}]
    store.remember("or", ["toolu_2"], "short", big)  # a signature too big to keep is not kept at all
    assert store.recall(["toolu_2"])["toolu_2"].details is None
