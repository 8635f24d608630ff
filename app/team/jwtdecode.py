"""The PyJWT decoder the identity sources use: PyJWT as it is, asymmetric algorithms only, with its
base64url segment check done at C speed.

Why: on a first-seen token most of the time that is not the signature itself went into one line
of PyJWT (its fix for GHSA-hxm8-2xgr-2p9m), which tests every character of every segment
against the base64url alphabet in a Python generator: ~0.1 µs a character, 30-65 µs for an IAP or
an OIDC token, more than an RS256 signature check costs. ``decode_segment`` below refuses exactly what
PyJWT's ``PyJWS._decode_base64url_segment`` refuses (tests/team/test_jwtdecode.py checks the two
against each other on generated input, so a PyJWT that changes its rules fails that test) and
decodes to the same bytes; everything else (the JOSE header, the ``crit`` rules, the signature
through ``cryptography``, every claim check) is PyJWT's own code, unchanged.

Should a PyJWT release stop calling that method, the override is simply unused and PyJWT's own
check runs: slower, never looser.
"""

from __future__ import annotations

import binascii

import jwt
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode

# Asymmetric algorithms only: "none" and the HMAC family are never accepted, so a token "signed"
# with a public key used as an HMAC secret (algorithm confusion) is refused before any key is used.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
OVERRIDES = hasattr(PyJWS, "_decode_base64url_segment")  # whether PyJWT has the check this replaces


def decode_segment(segment: bytes, name: str) -> bytes:
    """One base64url segment of a compact JWS, decoded, under PyJWT's rules: at most two trailing
    ``=``, and only when they make the length a multiple of four (the ALB pads, others do not);
    nothing outside the base64url alphabet; no length that no encoding can have; and the encoding
    must be the canonical one (no stray bits in the last character)."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if (padding > 2 or (padding and len(segment) % 4 != 0) or len(stripped) % 4 == 1
            or stripped.translate(None, _ALPHABET)):
        raise DecodeError(f"Invalid {name} padding")
    try:
        decoded = base64url_decode(stripped)
    except (TypeError, binascii.Error) as err:
        raise DecodeError(f"Invalid {name} padding") from err
    if base64url_encode(decoded) != stripped:
        raise DecodeError(f"Invalid {name} padding")
    return decoded


class _JWS(PyJWS):
    _decode_base64url_segment = staticmethod(decode_segment)


class Decoder(jwt.PyJWT):
    """``jwt.PyJWT`` whose JWS layer knows only the asymmetric algorithms and checks segments fast."""

    def __init__(self) -> None:
        super().__init__()
        self._jws = _JWS(algorithms=ASYMMETRIC, options=self._jws.options)


decoder = Decoder()
