"""Property-based fuzz of request bodies through every backend kind, in both wirings.

Hypothesis builds request bodies (valid ones bent field by field, and junk) and sends each to
``POST /v1/messages`` of a real Engine on a real port, whose four backends are the fakes of
tests/fakes: an Anthropic-format upstream, an OpenAI-compatible one, Bedrock (SigV4 checked,
event-stream frames) and Vertex (Google credentials the real way). Both wirings run: headless
(``patchbay serve``: no live view) and desktop (``gui=True``: the live view's events, with their
previews of the prompt and the working directory, are built for every request).

Whatever the body: no 5xx except an upstream-caused 502/504 (never "a bug in Patchbay"), never
plain text, an error always in Anthropic's shape, and one ledger row per request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core import Engine
from tests.fakes.cloud import FakeBedrock, FakeGoogleAuth, google_bearer_guard
from tests.fakes.upstreams import FakeUpstream

TOKEN = "pb-fuzz-token"
AK, SK = "AKIDPATCHBAYFUZZ", "fuzz/secret+key"
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"
MODELS = {"anthropic": "a,claude-fake", "openai": "o,gpt-fake", "bedrock": f"aws,{BEDROCK_MODEL}",
          "vertex": f"gcp,{VERTEX_MODEL}"}
EXAMPLES = int(os.environ.get("PATCHBAY_FUZZ_EXAMPLES", "150"))  # per kind and wiring
SENT: dict[str, int] = {}  # wiring → requests sent (for the ledger check and the closing note)

# ------------------------------------------------------------------------------------ bodies

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
block_types = st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document", "x", 5])


@st.composite
def blocks(draw: st.DrawFn) -> Any:
    block: dict[str, Any] = {"type": draw(block_types)}
    keys = draw(st.sets(st.sampled_from(["id", "name", "input", "content", "source", "tool_use_id",
                                         "cache_control", "thinking", "signature", "is_error"]), max_size=3))
    for key in ["text", *keys] if draw(st.booleans()) else keys:
        block[key] = draw(st.one_of(st.text(max_size=30), scalars, json_values))
    return draw(st.one_of(st.just(block), json_values)) if draw(st.integers(0, 9)) == 0 else block


@st.composite
def messages(draw: st.DrawFn) -> Any:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        content = draw(st.one_of(st.text(max_size=60), st.lists(blocks(), max_size=4), scalars, json_values))
        msg: Any = {"role": draw(st.sampled_from(["user", "user", "assistant", "system", "tool", 3])),
                    "content": content}
        if draw(st.integers(0, 15)) == 0:
            msg = draw(json_values)
        out.append(msg)
    return out


@st.composite
def bodies(draw: st.DrawFn, model: str) -> Any:
    body: dict[str, Any] = {"model": model, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "hello"}]}
    bent = draw(st.sets(st.sampled_from(["model", "max_tokens", "messages", "messages", "stream", "system",
                                         "system", "tools", "tool_choice", "thinking", "metadata", "stop_sequences",
                                         "temperature", "top_p", "extra"]), max_size=5))
    for key in bent:
        if key == "messages":
            body[key] = draw(st.one_of(messages(), json_values))
        elif key == "stream":
            body[key] = draw(st.one_of(st.booleans(), json_values))
        elif key == "system":
            body[key] = draw(st.one_of(st.text(max_size=80), st.lists(blocks(), max_size=3), json_values))
        elif key == "tools":
            body[key] = draw(st.one_of(st.lists(st.fixed_dictionaries(
                {"name": st.text(max_size=10), "input_schema": json_values},
                optional={"type": st.sampled_from(["web_search_20250305", "custom", "bash_20250124"]),
                          "description": st.text(max_size=20), "defer_loading": st.booleans()}), max_size=3),
                json_values))
        elif key == "thinking":
            body[key] = draw(st.one_of(st.fixed_dictionaries(
                {"type": st.sampled_from(["enabled", "adaptive", "disabled", 1]),
                 "budget_tokens": st.one_of(st.integers(-5, 10**6), json_values)}), json_values))
        elif key == "model":
            body[key] = draw(st.one_of(st.just(model.split(",")[0] + "," + draw(st.text(max_size=12))),
                                       st.text(max_size=20), json_values))
        elif key == "max_tokens":
            body[key] = draw(st.one_of(st.integers(-3, 10**7), json_values))
        elif key == "extra":
            body[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        else:
            body[key] = draw(json_values)
    return body


# ------------------------------------------------------------------------------------ the stage


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz-fakes")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK",
                     "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(tmp / "aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "aws-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ACCESS_KEY_ID", AK)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SK)
        mp.setenv("CLOUDSDK_CONFIG", str(tmp / "gcloud"))
        mp.setenv("NO_GCE_CHECK", "True")
        google = FakeGoogleAuth(tmp, (3600,)).start()
        mp.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(google.key_file))
        ups = {"anthropic": FakeUpstream(wire="anthropic", models=("claude-fake",)).start(),
               "openai": FakeUpstream(wire="openai", models=("gpt-fake",)).start(),
               "bedrock": FakeBedrock(keys={AK: (SK, None)}).start(),
               "vertex": FakeUpstream(wire="anthropic", guard=google_bearer_guard(google)).start()}
        try:
            yield {"ups": ups, "mp": mp}
        finally:
            for up in ups.values():
                up.stop()
            google.stop()


def _config(ups: dict[str, Any]) -> str:
    return f'''[gateway]
port = 0

[[backends]]
id = "a"
kind = "anthropic"
base_url = "{ups["anthropic"].url}"
auth = "none"

[[backends]]
id = "o"
kind = "openai"
base_url = "{ups["openai"].url}/v1"
auth = "none"
models = ["gpt-fake"]

[[backends]]
id = "aws"
kind = "bedrock"
region = "us-east-1"
base_url = "{ups["bedrock"].url}"
auth = "aws"
models = ["{BEDROCK_MODEL}"]

[[backends]]
id = "gcp"
kind = "vertex"
project = "fuzz-proj"
region = "us-east5"
base_url = "{ups["vertex"].url}"
auth = "google"
models = ["{VERTEX_MODEL}"]

[active]
backend = "a"
'''


@pytest.fixture(scope="module", params=["headless", "desktop"])
def engine(request: pytest.FixtureRequest, fakes: dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine, httpx.Client]]:
    home = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    (home / "config.toml").write_text(_config(fakes["ups"]))
    mp: pytest.MonkeyPatch = fakes["mp"]
    mp.setenv("PATCHBAY_HOME", str(home))
    mp.setenv("PATCHBAY_TOKEN", TOKEN)
    eng = Engine(gui=request.param == "desktop")
    eng.start()
    SENT[request.param] = 0
    client = httpx.Client(base_url=eng.url, timeout=30)
    try:
        yield request.param, eng, client
        assert eng.ledger.flush(10)
        rows = eng.reader.count()
        assert rows == SENT[request.param], f"{SENT[request.param]} requests, {rows} ledger rows ({request.param})"
    finally:
        client.close()
        eng.stop()


def _check(r: httpx.Response) -> None:
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith(("application/json", "text/event-stream")), (r.status_code, ctype, r.text[:300])
    if r.status_code >= 500:
        assert r.status_code in (502, 504), r.text[:500]
    if r.status_code >= 400:
        err = orjson.loads(r.content)
        assert err["type"] == "error" and isinstance(err["error"]["type"], str), r.text[:300]
        assert isinstance(err["error"]["message"], str) and err["error"]["message"]
        assert "bug in Patchbay" not in err["error"]["message"], err
    elif ctype.startswith("text/event-stream"):
        assert b"bug in Patchbay" not in r.content, r.text[-500:]
        assert r.content.rstrip().endswith((b'"message_stop"}', b"}")), r.text[-300:]
    else:
        msg = orjson.loads(r.content)
        assert msg.get("type") == "message", r.text[:300]


@pytest.mark.parametrize("kind", list(MODELS))
def test_no_body_breaks_the_gateway(engine: tuple[str, Engine, httpx.Client], kind: str) -> None:
    wiring, _eng, client = engine

    @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(body=bodies(MODELS[kind]))
    def one(body: Any) -> None:
        raw = json.dumps(body).encode()  # the stdlib writes integers beyond 64 bits too
        SENT[wiring] += 1
        r = client.post("/v1/messages", content=raw, headers={"x-api-key": TOKEN,
                                                               "content-type": "application/json"})
        _check(r)

    one()


def test_junk_that_is_not_a_json_object_gets_an_anthropic_answer_and_a_row(
        engine: tuple[str, Engine, httpx.Client]) -> None:
    wiring, _eng, client = engine
    for raw in (b"", b"[]", b"5", b'"x"', b"{", b"\xff\xfe", b"null", b'{"model": 5}', b"[" * 400 + b"]" * 400):
        SENT[wiring] += 1
        r = client.post("/v1/messages", content=raw, headers={"x-api-key": TOKEN})
        assert r.status_code == 400, raw
        _check(r)
