"""Anthropic SDK → gateway → a fake AWS Bedrock on loopback that checks SigV4 signatures with
botocore's own signer and answers in real event-stream frames (CRCs and all, built by
tests/fakes/eventstream.py from the format's spec)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from app.config import parse_config
from app.core import Engine
from app.events import ContentDelta
from app.proxy.tokens import estimate_tokens
from tests.fakes.chunks import anthropic_message, anthropic_text_events, anthropic_tool_use_events
from tests.fakes.cloud import BedrockStream, FakeBedrock, bedrock_error
from tests.fakes.upstreams import AnthropicJSON
from tests.gateway.conftest import TOKEN, config_text

USER = [{"role": "user", "content": "hello"}]
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
AK, SK, ST = "AKIDPATCHBAYTEST", "fake/secret+key", "session-token-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clean AWS environment: nothing from the developer's ~/.aws, no metadata service."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock(keys={AK: (SK, ST)}, api_key="bedrock-api-key-123",
                     foundation_models=[
                         {"modelId": "anthropic.claude-haiku-4-5-20251001-v1:0", "providerName": "Anthropic",
                          "inferenceTypesSupported": ["ON_DEMAND"]},
                         {"modelId": "anthropic.claude-opus-5-5-v1:0", "providerName": "Anthropic",
                          "inferenceTypesSupported": ["INFERENCE_PROFILE"]},
                         {"modelId": "amazon.nova-pro-v1:0", "providerName": "Amazon",
                          "inferenceTypesSupported": ["ON_DEMAND"]}],
                     inference_profiles=[{"inferenceProfileId": MODEL}, {"inferenceProfileId": "us.amazon.nova-pro-v1:0"}],
                     ) as up:
        yield up


def _bedrock_backend(url: str, **kw: object) -> dict[str, object]:
    return {"id": "aws", "kind": "bedrock", "region": "us-east-1", "base_url": url, "models": [MODEL], **kw}


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch, bedrock: FakeBedrock, start_gateway):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_SESSION_TOKEN", ST)
    return start_gateway(config_text([_bedrock_backend(bedrock.url, auth="aws")], active="aws"))


def test_stream_is_signed_converted_and_decoded(signed, bedrock: FakeBedrock):
    bedrock.enqueue(BedrockStream(anthropic_text_events("Bonjour ☃ from Bedrock " * 4, pieces=7,
                                                        usage=(31, 9, 400, 20)), split="awkward"))
    client = signed.client(default_headers={"anthropic-beta": "claude-code-20250219, interleaved-thinking-2025-05-14"})
    with client.messages.stream(model="claude-opus-5-5", max_tokens=300, messages=USER) as s:
        msg = s.get_final_message()
    assert msg.content[0].text == "Bonjour ☃ from Bedrock " * 4
    sent = bedrock.requests[-1]
    assert sent.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream"
    assert bedrock.signed_by == [AK]  # the fake recomputed the SigV4 signature and it matched
    assert sent.headers["x-amz-security-token"] == ST
    body = sent.json
    assert "model" not in body and "stream" not in body
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["anthropic_beta"] == ["claude-code-20250219", "interleaved-thinking-2025-05-14"]
    assert body["max_tokens"] == 300 and body["messages"] == USER
    assert TOKEN not in str(sent.headers)
    fin = signed.finished(1)[0]
    u = fin.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (31, 9, 400, 20)
    assert fin.backend == "aws" and fin.ttft_ms is not None and fin.error_type is None
    assert "".join(e.text for e in signed.events() if isinstance(e, ContentDelta) and e.kind == "text") == msg.content[0].text


def test_tool_use_stream_and_the_arn_in_the_path(monkeypatch, bedrock: FakeBedrock, start_gateway):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_SESSION_TOKEN", ST)
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    gw = start_gateway(config_text([_bedrock_backend(bedrock.url, auth="aws", models=[arn])], active="aws"))
    bedrock.enqueue(BedrockStream(anthropic_tool_use_events([("Write", {"file_path": "a.txt", "content": "x"})]),
                                  split=5))
    with gw.client().messages.stream(model="claude-opus-5-5", max_tokens=100, messages=USER) as s:
        msg = s.get_final_message()
    assert msg.content[-1].type == "tool_use" and msg.content[-1].input == {"file_path": "a.txt", "content": "x"}
    # the ARN's "/" is escaped inside the path segment, ":" is not; the signature still matched
    assert bedrock.requests[-1].path == ("/model/arn:aws:bedrock:us-east-1:123456789012:"
                                         "application-inference-profile%2Fabc123/invoke-with-response-stream")
    assert bedrock.signed_by == [AK]


def test_non_streamed_request_uses_invoke(signed, bedrock: FakeBedrock):
    bedrock.enqueue(AnthropicJSON(anthropic_message("Whole answer.", usage=(12, 3))))
    msg = signed.client().messages.create(model="claude-x", max_tokens=50, messages=USER)
    assert msg.content[0].text == "Whole answer."
    assert bedrock.requests[-1].path.endswith("/invoke")
    fin = signed.finished(1)[0]
    assert (fin.usage.input_tokens, fin.usage.output_tokens) == (12, 3)


@pytest.mark.parametrize("exception, status, error_type, sdk_error", [
    ("throttlingException", 429, "rate_limit_error", anthropic.RateLimitError),
    ("modelTimeoutException", 408, "timeout_error", anthropic.APIStatusError),
    ("serviceUnavailableException", 503, "overloaded_error", anthropic.InternalServerError),
    ("validationException", 400, "invalid_request_error", anthropic.BadRequestError),
    ("internalServerException", 500, "api_error", anthropic.InternalServerError),
])
def test_exception_frame_before_any_event_is_an_http_error(signed, bedrock, exception, status, error_type, sdk_error):
    bedrock.enqueue(BedrockStream([], exception=(exception, f"Bedrock says: {exception} happened")))
    with pytest.raises(sdk_error) as info:
        signed.client().messages.create(model="claude-x", max_tokens=5, messages=USER, stream=True)
    assert info.value.status_code == status
    assert info.value.body["error"] == {"type": error_type, "message": f"Bedrock says: {exception} happened"}
    fin = signed.finished(1)[0]
    assert (fin.status, fin.error_type) == (status, error_type)


def test_exception_frame_after_events_is_an_sse_error(signed, bedrock):
    bedrock.enqueue(BedrockStream(anthropic_text_events("partial answer that stops", pieces=5),
                                  exception=("throttlingException", "Too many tokens, please wait."),
                                  exception_after=4, split="awkward"))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with signed.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
            for text in s.text_stream:
                seen.append(text)
    assert "Too many tokens, please wait." in str(info.value)
    assert seen  # some text reached the client before the error
    fin = signed.finished(1)[0]
    assert fin.status == 200 and fin.error_type == "rate_limit_error"


def test_bedrock_api_key_is_sent_as_bearer(monkeypatch, bedrock: FakeBedrock, start_gateway):
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123")
    gw = start_gateway(config_text([_bedrock_backend(bedrock.url, auth="env:AWS_BEARER_TOKEN_BEDROCK")],
                                   active="aws"))
    with gw.client().messages.stream(model="claude-x", max_tokens=20, messages=USER) as s:
        assert s.get_final_message().content[0].text == "Hello from the fake Bedrock."
    sent = bedrock.requests[-1]
    assert sent.headers["authorization"] == "Bearer bedrock-api-key-123"
    assert "x-amz-date" not in sent.headers and bedrock.signed_by == []


def test_a_wrong_secret_is_refused_with_the_upstreams_words(monkeypatch, bedrock, start_gateway):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", ST)
    gw = start_gateway(config_text([_bedrock_backend(bedrock.url, auth="aws")], active="aws"))
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER, stream=True)
    # refused credentials Patchbay holds: 424, and Claude Code told not to retry (app/proxy/stops.py)
    assert info.value.status_code == 424 and info.value.response.headers["x-should-retry"] == "false"
    msg = info.value.body["error"]["message"]
    assert "signature we calculated does not match" in msg and "bedrock:InvokeModel" in msg
    assert bedrock.signed_by == []


def test_no_aws_credentials_says_what_to_do(bedrock, start_gateway):
    gw = start_gateway(config_text([_bedrock_backend(bedrock.url, auth="aws")], active="aws"))
    with pytest.raises(anthropic.AuthenticationError) as info:
        gw.client().messages.create(model="claude-x", max_tokens=5, messages=USER)
    assert "found no AWS credentials" in str(info.value) and "aws sso login" in str(info.value)
    assert bedrock.requests == []


def test_pings_fill_bedrocks_silences(signed, bedrock):
    # Bedrock never pings; a slow first event and slow frames must not leave the client in silence
    bedrock.enqueue(BedrockStream(anthropic_text_events("slow", pieces=1), ttfb_s=0.5, delay_s=0.12))
    signed.runtime.apply(parse_config(config_text([_bedrock_backend(bedrock.url, auth="aws")], active="aws")
                                      .replace("ping_interval_s = 10.0", "ping_interval_s = 0.2")))
    with signed.http() as http:
        r = http.post("/v1/messages", headers={"x-api-key": TOKEN},
                      json={"model": "claude-x", "max_tokens": 5, "stream": True, "messages": USER})
    assert r.status_code == 200
    events = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "ping" and events.count("ping") >= 2
    real = [e for e in events if e != "ping"]
    assert real[0] == "message_start" and real[-1] == "message_stop"


def test_count_tokens_uses_bedrocks_count_tokens_api(signed, bedrock):
    n = signed.client().messages.count_tokens(model="claude-x", messages=USER, system="be brief")
    assert n.input_tokens == 42
    sent = bedrock.requests_to("/count-tokens")[-1]
    assert sent.path == f"/model/{MODEL}/count-tokens"
    inner = json.loads(base64.b64decode(sent.json["input"]["invokeModel"]["body"]))
    assert inner["system"] == "be brief" and inner["messages"] == USER and "model" not in inner


def test_count_tokens_estimates_where_the_model_cannot_count(signed, bedrock):
    bedrock.enqueue(bedrock_error(400, "ValidationException", "The provided model doesn't support counting tokens."),
                    match=lambda r: r.path.endswith("/count-tokens"))
    messages = [{"role": "user", "content": "x" * 400}]
    n = signed.client().messages.count_tokens(model="claude-x", messages=messages)
    assert n.input_tokens == estimate_tokens({"messages": messages}) > 50  # app/proxy/tokens.py


def test_expiring_credentials_are_refreshed_through_the_chain(tmp_path: Path, bedrock, start_gateway):
    """A profile whose credential_process hands out credentials that expire within botocore's
    refresh window: each request gets fresh ones (fetched in a worker thread, not on the loop)."""
    counter = tmp_path / "n"
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': f'AKIDROTATED{n}', 'SecretAccessKey': f's{n}',\n"
        "                  'SessionToken': f't{n}', 'Expiration': exp.strftime('%Y-%m-%dT%H:%M:%SZ')}))\n")
    (tmp_path / "aws-config").write_text(f"[profile work]\ncredential_process = {sys.executable} {script}\n")
    for n in range(1, 6):
        bedrock.keys[f"AKIDROTATED{n}"] = (f"s{n}", f"t{n}")
    gw = start_gateway(config_text([_bedrock_backend(bedrock.url, auth="aws", profile="work")], active="aws"))
    for _ in range(2):
        with gw.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
            s.get_final_message()
    # every request was signed with the credentials the process handed out last, never stale ones
    assert len(bedrock.signed_by) == 2 and bedrock.signed_by[0] != bedrock.signed_by[1]
    assert bedrock.signed_by[-1] == f"AKIDROTATED{counter.read_text()}"


def test_model_list_comes_from_bedrocks_control_plane(monkeypatch, bedrock, patchbay_home):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_SESSION_TOKEN", ST)
    cfg = parse_config(config_text([_bedrock_backend(bedrock.url, auth="aws")], active="aws"))
    eng = Engine()
    try:
        models = asyncio.run(eng.list_models(cfg.backends[0]))
    finally:
        eng.stop()
    assert models == [MODEL, "anthropic.claude-haiku-4-5-20251001-v1:0"]
    assert [r.path for r in bedrock.requests] == ["/inference-profiles", "/foundation-models"]
    assert bedrock.signed_by == [AK, AK]  # GETs with a query string are signed too


def test_an_http_throttle_before_the_stream_keeps_status_and_wording(signed, bedrock):
    bedrock.enqueue(bedrock_error(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    with pytest.raises(anthropic.RateLimitError) as info:
        signed.client().messages.create(model="claude-x", max_tokens=5, messages=USER, stream=True)
    assert info.value.body["error"] == {"type": "rate_limit_error",
                                        "message": "Too many requests, please wait before trying again."}


def test_a_frame_with_a_bad_crc_ends_the_stream_with_an_error(signed, bedrock):
    from tests.fakes.eventstream import bedrock_chunk
    from tests.fakes.upstreams import Raw

    events = anthropic_text_events("never finished", pieces=3)
    good = b"".join(bedrock_chunk(e) for e in events[:3])
    bad = bytearray(bedrock_chunk(events[3]))
    bad[-1] ^= 0xFF  # the message CRC no longer matches
    bedrock.enqueue(Raw(200, {"content-type": "application/vnd.amazon.eventstream"}, good + bytes(bad),
                        framing="chunked"))
    with pytest.raises(anthropic.APIStatusError) as info:
        with signed.client().messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
            s.get_final_message()
    assert "damaged event-stream frame" in str(info.value)
    assert signed.finished(1)[0].error_type == "api_error"


CLAUDE_CODE_BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
                     "per-turn-control-2026-07-01,mid-conversation-tool-changes-2026-07-01,"
                     "thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20,effort-2025-11-24")


def test_only_betas_bedrock_documents_are_passed_on(signed, bedrock):
    bedrock.betas = {"claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
                     "effort-2025-11-24"}
    client = signed.client(default_headers={"anthropic-beta": CLAUDE_CODE_BETAS})
    with client.messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
        s.get_final_message()
    assert bedrock.requests[-1].json["anthropic_beta"] == [
        "claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27", "effort-2025-11-24"]
    assert len(bedrock.requests) == 1


def test_a_model_that_refuses_every_beta_gets_none_from_then_on(signed, bedrock):
    bedrock.betas = set()  # some models (Opus 4.7 on Bedrock did) take no beta at all
    client = signed.client(default_headers={"anthropic-beta": CLAUDE_CODE_BETAS})
    for _ in range(2):
        with client.messages.stream(model="claude-x", max_tokens=5, messages=USER) as s:
            assert s.get_final_message().content[0].text == "Hello from the fake Bedrock."
    assert ["anthropic_beta" in r.json for r in bedrock.requests] == [True, False, False]
    assert [e.status for e in signed.finished(2)] == [200, 200]


def test_deferred_tools_are_sent_up_front_without_the_tool_search_beta(signed, bedrock):
    tools = [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}},
             {"name": "NotebookEdit", "description": "edit", "input_schema": {"type": "object"}, "defer_loading": True}]
    with signed.client().messages.stream(model="claude-x", max_tokens=5, messages=USER, tools=tools) as s:
        s.get_final_message()
    assert bedrock.requests[-1].json["tools"] == [{k: v for k, v in t.items() if k != "defer_loading"} for t in tools]
    client = signed.client(default_headers={"anthropic-beta": "tool-search-tool-2025-10-19"})
    with client.messages.stream(model="claude-x", max_tokens=5, messages=USER, tools=tools) as s:
        s.get_final_message()
    assert bedrock.requests[-1].json["tools"] == tools  # with the beta, Bedrock defers them itself
