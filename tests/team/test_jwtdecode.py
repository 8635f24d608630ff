"""The identity sources' PyJWT decoder refuses exactly what PyJWT refuses.

``app.team.jwtdecode.decode_segment`` stands in for PyJWT's own base64url segment check (same rules, C
speed). These tests hold it to PyJWT's installed version: on generated segments the two agree
byte for byte and error for error, and whole tokens damaged in the ways that check exists for
are refused by both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from app.team.jwtdecode import OVERRIDES, decode_segment, decoder
from tests.fakes.idp import FakeIdP, make_key

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
JUNK = "=+/!. \n\t\x00é"  # what a segment must not hold (and '=' where it may)
segments = st.builds(lambda core, pad: (core + pad).encode("utf-8"),
                     st.text(alphabet=B64URL + JUNK, max_size=40) | st.text(alphabet=B64URL, max_size=40),
                     st.sampled_from(["", "=", "==", "===", "===="]))


def outcome(fn: Callable[[bytes, str], bytes], data: bytes) -> tuple[str, object]:
    try:
        return "ok", fn(data, "header")
    except jwt.DecodeError as exc:
        return "refused", str(exc)


def test_the_installed_pyjwt_has_the_check_that_is_replaced() -> None:
    # were it gone, the override would be dead code and these tests would compare nothing real
    assert OVERRIDES


@settings(max_examples=600, deadline=None)
@given(segments)
def test_segment_agrees_with_pyjwt_on_generated_segments(data: bytes) -> None:
    assert outcome(decode_segment, data) == outcome(PyJWS._decode_base64url_segment, data)


@pytest.mark.parametrize("data", [b"", b"QQ", b"QR", b"QUI", b"QUJ", b"QUJD", b"Q", b"QUJDR", b"QQ==", b"QQ=",
                                  b"QUI=", b"QUI==", b"QUJD====", b"!!!!", b"QQ!!", b"Q+/A", b"QUJD\n"])
def test_segment_agrees_with_pyjwt_on_the_edges(data: bytes) -> None:
    # canonical vs stray bits (QQ/QR, QUI/QUJ), impossible lengths, padding right and wrong, junk
    assert outcome(decode_segment, data) == outcome(PyJWS._decode_base64url_segment, data)


def damaged(token: str) -> dict[str, str]:
    head, payload, sig = token.split(".")
    return {
        "junk in the signature": f"{head}.{payload}.{sig[:-4]}!!!!",
        "stray bits in the last character": f"{head}.{payload}.{sig[:-1]}{'B' if sig[-1] == 'A' else 'A'}",
        "padding that does not fill a quantum": f"{head}.{payload}.{sig}=",
        "an impossible length": f"{head}.{payload}{'X' * ((1 - len(payload)) % 4 or 4)}.{sig}",
        "a standard-alphabet character": f"{head}.{payload}.{sig[:-2]}+/",
    }


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_whole_tokens_damaged_are_refused_by_both(alg: str) -> None:
    key = make_key(alg)
    now = int(time.time())
    token = jwt.encode({"sub": "a", "exp": now + 60}, key.private, algorithm=alg, headers={"kid": key.kid})
    assert decoder.decode(token, key.public, algorithms=[alg])["sub"] == "a"
    for what, bad in damaged(token).items():
        for decode in (jwt.decode, decoder.decode):
            with pytest.raises(jwt.InvalidTokenError):
                decode(bad, key.public, algorithms=[alg])
                pytest.fail(f"{what}: accepted by {decode}")


def test_the_albs_padded_segments_are_accepted(idp: FakeIdP) -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gw/50dc6c495c0c9188"
    token = idp.alb_token("alice@corp.example", signer=arn)
    assert "=" in token
    claims = decoder.decode(token, idp.current("alb").public, algorithms=["ES256"])
    assert claims["email"] == "alice@corp.example"


def test_the_decoder_knows_no_symmetric_or_unsigned_algorithm(idp: FakeIdP) -> None:
    claims = idp.claims_for("iap", "a@corp.example", "aud")
    hs = idp.hs256_with_public_key("iap", claims)
    none = idp.unsigned_token(claims)
    # even a caller who lists them gets nothing: the decoder has no such algorithm
    with pytest.raises(jwt.InvalidAlgorithmError):
        decoder.decode(hs, idp.current("iap").pem(), algorithms=["HS256"], audience="aud")
    with pytest.raises(jwt.InvalidAlgorithmError):
        decoder.decode(none, "", algorithms=["none"], audience="aud")
