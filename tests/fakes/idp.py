"""A fake identity provider on loopback that signs real tokens with keys made by ``cryptography``.

It publishes keys the way each real source does, on one :class:`FakeUpstream` port:

- ``GET /iap/public_key-jwk`` — Google IAP's JWK set (ES256, P-256);
- ``GET /alb/KID`` — one PEM public key per key id, like ``public-keys.auth.elb.REGION.amazonaws.com``;
- ``GET /cf/cdn-cgi/access/certs`` — Cloudflare Access's ``{"keys", "public_cert", "public_certs"}`` (RS256);
- ``GET /oidc/.well-known/openid-configuration`` → ``jwks_uri`` = ``/oidc/jwks`` (RS256).

    with FakeIdP() as idp:
        idp.iap_token("alice@corp.example", aud=AUD)          # what IAP puts in x-goog-iap-jwt-assertion
        idp.alb_token("alice@corp.example", signer=ARN)        # x-amzn-oidc-data, padded base64 like the ALB's
        idp.cloudflare_token("alice@corp.example", aud=TAG)
        idp.oidc_token("alice@corp.example", aud="patchbay", groups=["eng"])
        idp.rotate("oidc")                                     # a new key signs; the old one is withdrawn
        idp.fetches("/oidc/jwks")                              # how often the keys were fetched

Attack shapes a real IdP never makes: ``unsigned_token`` (``alg: none``), ``hs256_with_public_key``
(the published public key used as an HMAC secret), ``token_with_unknown_kid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.fakes.upstreams import FakeUpstream, JSONResponse, Raw, ReceivedRequest, Response

IAP_ISSUER = "https://cloud.google.com/iap"
REALM_ALG = {"iap": "ES256", "alb": "ES256", "cloudflare": "RS256", "oidc": "RS256"}


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        d: dict[str, Any] = algo.to_jwk(self.public, as_dict=True)
        d.update(kid=self.kid, alg=self.alg, use="sig")
        return d

    def pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_key(alg: str, kid: str | None = None) -> SigningKey:
    kid = kid or secrets.token_hex(8)
    if alg == "ES256":
        return SigningKey(kid, alg, ec.generate_private_key(ec.SECP256R1()))
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _b64(data: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class FakeIdP:
    def __init__(self, *, cloudflare_team: str = "corp") -> None:
        self.cloudflare_team = cloudflare_team
        self.keys: dict[str, list[SigningKey]] = {realm: [make_key(alg)] for realm, alg in REALM_ALG.items()}
        self.server = FakeUpstream(self._answer, wire="anthropic")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeIdP:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeIdP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    # where each source's keys are
    @property
    def iap_jwks_url(self) -> str:
        return f"{self.url}/iap/public_key-jwk"

    @property
    def alb_keys_url(self) -> str:
        return f"{self.url}/alb"

    @property
    def cloudflare_certs_url(self) -> str:
        return f"{self.url}/cf/cdn-cgi/access/certs"

    @property
    def oidc_issuer(self) -> str:
        return f"{self.url}/oidc"

    @property
    def cloudflare_issuer(self) -> str:
        return f"https://{self.cloudflare_team}.cloudflareaccess.com"

    def fetches(self, path: str) -> int:
        """GET requests whose path is ``path`` (or, for ``/alb``, starts with it)."""
        return sum(1 for r in self.server.requests if r.method == "GET"
                   and (r.path == path or (path == "/alb" and r.path.startswith("/alb/"))))

    # ------------------------------------------------------------------ keys

    def current(self, realm: str) -> SigningKey:
        return self.keys[realm][-1]

    def rotate(self, realm: str, *, keep_old: bool = False) -> SigningKey:
        """A new key signs from now on; the old one stays published only with ``keep_old``."""
        key = make_key(REALM_ALG[realm])
        self.keys[realm] = (self.keys[realm] if keep_old else []) + [key]
        return key

    def _answer(self, req: ReceivedRequest) -> Response | None:
        if req.method != "GET":
            return None
        p = req.path
        if p == "/iap/public_key-jwk":
            return JSONResponse({"keys": [k.jwk() for k in self.keys["iap"]]})
        if p.startswith("/alb/"):
            kid = p[len("/alb/"):]
            for k in self.keys["alb"]:
                if k.kid == kid:
                    return Raw(200, {"content-type": "application/x-pem-file"}, k.pem())
            return Raw(404, {"content-type": "text/plain"}, b"Not Found")
        if p == "/cf/cdn-cgi/access/certs":
            ks = self.keys["cloudflare"]
            return JSONResponse({"keys": [k.jwk() for k in ks],
                                 "public_cert": {"kid": ks[-1].kid, "cert": "-----BEGIN CERTIFICATE-----\n..."},
                                 "public_certs": [{"kid": k.kid, "cert": "..."} for k in ks]})
        if p == "/oidc/.well-known/openid-configuration":
            return JSONResponse({"issuer": self.oidc_issuer, "jwks_uri": f"{self.oidc_issuer}/jwks",
                                 "id_token_signing_alg_values_supported": ["RS256"],
                                 "authorization_endpoint": f"{self.oidc_issuer}/auth"})
        if p == "/oidc/jwks":
            return JSONResponse({"keys": [k.jwk() for k in self.keys["oidc"]]})
        return None

    # ------------------------------------------------------------------ tokens

    def _claims(self, email: str | None, lifetime_s: float, extra: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iat": now, "exp": now + int(lifetime_s), "sub": "sub-" + (email or "none")}
        if email is not None:
            claims["email"] = email
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, realm: str, claims: dict[str, Any], *, key: SigningKey | None = None,
             headers: dict[str, Any] | None = None) -> str:
        key = key or self.current(realm)
        return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})})

    def iap_token(self, email: str | None, *, aud: str, lifetime_s: float = 600, **extra: Any) -> str:
        return self.sign("iap", self._claims(email, lifetime_s, {"aud": aud, "iss": IAP_ISSUER,
                                                                 "hd": "corp.example", **extra}))

    def cloudflare_token(self, email: str | None, *, aud: str, lifetime_s: float = 600, **extra: Any) -> str:
        return self.sign("cloudflare", self._claims(email, lifetime_s, {
            "aud": [aud], "iss": self.cloudflare_issuer, "type": "app", "identity_nonce": "n0nce", **extra}))

    def oidc_token(self, email: str | None, *, aud: str, lifetime_s: float = 600, **extra: Any) -> str:
        return self.sign("oidc", self._claims(email, lifetime_s, {"aud": aud, "iss": self.oidc_issuer,
                                                                  "email_verified": True, **extra}))

    def alb_token(self, email: str | None, *, signer: str, lifetime_s: float = 120, key: SigningKey | None = None,
                  kid: str | None = None, **extra: Any) -> str:
        """Shaped like the ALB's: ``signer``, ``client``, ``iss`` and ``exp`` in the header, base64url
        *with* padding in every segment, ES256 over the segments exactly as written."""
        key = key or self.current("alb")
        claims = self._claims(email, lifetime_s, {"iss": "https://idp.corp.example", **extra})
        header = {"alg": "ES256", "kid": kid or key.kid, "signer": signer, "iss": "https://idp.corp.example",
                  "client": "alb-client", "exp": claims.get("exp"), "typ": "JWT"}
        signing_input = f"{_b64(_json(header), padded=True)}.{_b64(_json(claims), padded=True)}"
        der = key.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'), padded=True)}"

    # ------------------------------------------------------------------ forgeries

    @staticmethod
    def unsigned_token(claims: dict[str, Any], kid: str = "any") -> str:
        """``alg: none`` with an empty signature."""
        return f"{_b64(_json({'alg': 'none', 'typ': 'JWT', 'kid': kid}))}.{_b64(_json(claims))}."

    def hs256_with_public_key(self, realm: str, claims: dict[str, Any]) -> str:
        """HS256 whose HMAC secret is the realm's published public key (PEM): algorithm confusion."""
        key = self.current(realm)
        signing_input = f"{_b64(_json({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid}))}.{_b64(_json(claims))}"
        mac = hmac.new(key.pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def token_with_unknown_kid(self, realm: str, claims: dict[str, Any]) -> str:
        """Properly signed, by a key the IdP never published."""
        return self.sign(realm, claims, key=make_key(REALM_ALG[realm], kid="never-published"))

    def claims_for(self, realm: str, email: str, aud: str, lifetime_s: float = 600) -> dict[str, Any]:
        iss = {"iap": IAP_ISSUER, "cloudflare": self.cloudflare_issuer, "oidc": self.oidc_issuer,
               "alb": "https://idp.corp.example"}[realm]
        return self._claims(email, lifetime_s, {"aud": aud, "iss": iss})
