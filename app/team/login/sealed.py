"""The IdP's refresh token, kept so that each refresh of a sign-in asks the IdP again (a person
removed or signed out there is cut off at the next refresh: within one access-token lifetime), yet
stored in no form a reader of the database can use.

It is sealed (AES-256-GCM) under a key derived (HKDF-SHA256) from the credential only the client
holds and the database keeps as a hash: the device code until the first token answer, then the
current Patchbay refresh token; each rotation unseals it with the old token and seals it again under
the new one (before the first token answer, sealed to a public key derived from the device code:
below). A stolen database, or a stolen backup, holds hashes, public keys and ciphertexts only.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_INFO = b"patchbay login: the IdP refresh token"


def _key(holder_secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(holder_secret.encode("utf-8"))


def seal(value: str, holder_secret: str) -> str:
    nonce = os.urandom(12)
    data = AESGCM(_key(holder_secret)).encrypt(nonce, value.encode("utf-8"), None)
    return base64.urlsafe_b64encode(nonce + data).decode("ascii")


def unseal(blob: str, holder_secret: str) -> str | None:
    """The value, or None when ``holder_secret`` is not the one it was sealed under (or it is damaged)."""
    try:
        raw = base64.urlsafe_b64decode(blob.encode("ascii"))
        return AESGCM(_key(holder_secret)).decrypt(raw[:12], raw[12:], None).decode("utf-8")
    except (InvalidTag, ValueError):
        return None


# Between the browser leg and the first token answer the IdP's refresh token waits in the device
# code's row, but the callback does not know the device code (only the CLI and its hash do). So the
# device authorization derives an X25519 key pair from the device code and stores the public half;
# the callback seals to it (an ephemeral key, ECDH, HKDF, AES-GCM), and the poll that presents the
# device code derives the private half again to open it.

def _device_private(device_code: str) -> X25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + b" (device)").derive(
        device_code.encode("utf-8"))
    return X25519PrivateKey.from_private_bytes(seed)


def device_public_key(device_code: str) -> str:
    raw = _device_private(device_code).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode("ascii")


def seal_to(public_key: str, value: str) -> str:
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(public_key)))
    eph = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(eph).decode("ascii") + "." + seal(value, shared.hex())


def unseal_with_code(blob: str, device_code: str) -> str | None:
    eph, _, rest = blob.partition(".")
    try:
        shared = _device_private(device_code).exchange(X25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(eph)))
    except ValueError:
        return None
    return unseal(rest, shared.hex())
