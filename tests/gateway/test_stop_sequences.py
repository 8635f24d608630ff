"""A stop sequence matched on an OpenAI-kind backend comes back as Anthropic says it:
``stop_reason: "stop_sequence"`` and ``stop_sequence`` set to the string (streamed or not), where
the server says which string it was (vLLM, SGLang); OpenAI itself does not say, and Patchbay
never claims a sequence it cannot know (docs/protocol.md)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeUpstream
from tests.fakes.stops import StopServer
from tests.gateway.conftest import config_text

USER = [{"role": "user", "content": "count"}]
SCRIPT = "one two ### three"


def _ask(start_gateway, flavour: str, stream: bool):  # type: ignore[no-untyped-def]
    with FakeUpstream(StopServer(flavour, SCRIPT), wire="openai", models=("m",)) as up:
        gw = start_gateway(config_text([{"id": flavour, "kind": "openai", "base_url": up.url + "/v1", "auth": "none",
                                         "models": ["m"]}], active=flavour))
        kw = dict(model="m", max_tokens=50, messages=USER, stop_sequences=["STOP", "###"])
        with gw.client() as c:
            if stream:
                with c.messages.stream(**kw) as s:  # type: ignore[arg-type]
                    msg = s.get_final_message()
            else:
                msg = c.messages.create(**kw)  # type: ignore[arg-type]
        assert up.requests[-1].json["stop"] == ["STOP", "###"]
    return msg


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("flavour", ["vllm", "sglang"])
def test_the_matched_sequence_is_named(start_gateway, flavour, stream):
    msg = _ask(start_gateway, flavour, stream)
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "###")
    assert msg.content[0].text == "one two "  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_which_does_not_say_is_not_guessed(start_gateway, stream):
    msg = _ask(start_gateway, "openai", stream)
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
