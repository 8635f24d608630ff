"""The request body's depth limit (app/proxy/request_body.py): exactly MAX_DEPTH levels pass,
one more is a 400, whatever the body's size (the check no longer counts brackets first)."""

from __future__ import annotations

import orjson
import pytest

from app.errors import ApiError
from app.proxy.request_body import MAX_DEPTH, parse_body


def body_of_depth(depth: int, pad: int = 0) -> bytes:
    head = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * pad}]})
    inner = depth - 1  # the body object is the first level
    return head[:-1] + b',"extra":' + b"[" * inner + b"1" + b"]" * inner + b"}"


@pytest.mark.parametrize("pad", [0, 40_000])
def test_max_depth_passes_and_one_more_is_refused(pad: int) -> None:
    assert parse_body(body_of_depth(MAX_DEPTH, pad), False)["model"] == "m"
    with pytest.raises(ApiError) as err:
        parse_body(body_of_depth(MAX_DEPTH + 1, pad), False)
    assert err.value.status == 400 and str(MAX_DEPTH) in err.value.message
