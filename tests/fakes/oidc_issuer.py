"""A small OIDC issuer on loopback for the sign-in tests: what ``[team] oidc_issuer`` points at when
``[team.login]`` signs developers in through it.

- ``GET /.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 §3): ``issuer``,
  ``authorization_endpoint``, ``token_endpoint``, ``jwks_uri``;
- ``GET /jwks``: its RS256 key;
- ``GET /authorize``: the authorization-code request (RFC 6749 §4.1.1 + PKCE, RFC 7636 §4.3). It checks
  ``client_id``, ``redirect_uri`` (registered exactly), ``response_type=code``, ``state``, ``nonce``
  and ``code_challenge_method=S256``, and auto-approves the configured ``user`` (with ``groups``): 302
  to ``redirect_uri?code=…&state=…&iss=…``. ``deny_next = True`` answers ``error=access_denied``.
- ``POST /token``: ``grant_type=authorization_code`` with ``client_secret_post``; the code is
  single-use, bound to its client and ``redirect_uri``, and its PKCE verifier must hash to the
  challenge; errors in RFC 6749 §5.2's shape and words (``invalid_grant``, ``invalid_client``).
  Answers ``id_token`` (RS256, ``aud`` = client_id, ``nonce``, ``email_verified``, ``groups``).
  ``grant_type=refresh_token``: rotating (each use gives a new one, the old one dies); a person in
  ``removed`` gets ``invalid_grant``; the fresh ID token carries ``groups`` as they are now.
- ``down = True``: every endpoint answers 503, as an IdP in an outage does.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt

from tests.fakes.idp import make_key
from tests.fakes.upstreams import FakeUpstream, JSONResponse, Raw, ReceivedRequest, Response


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    user: str
    groups: list[str]
    used: bool = False


@dataclass
class FakeIssuer:
    client_id: str = "gw-client"
    client_secret: str = "s3cret-of-the-client"
    redirect_uri: str = ""  # registered with the "IdP"; set before the first /authorize
    user: str = "alice@corp.example"
    groups: list[str] = field(default_factory=lambda: ["eng"])
    down: bool = False
    deny_next: bool = False
    codes: dict[str, _Code] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)  # people the IdP no longer signs in (refresh: invalid_grant)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # live refresh token -> person

    def __post_init__(self) -> None:
        self.key = make_key("RS256")
        self.server = FakeUpstream(self._answer, wire="anthropic")

    def __enter__(self) -> FakeIssuer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def requests(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.server.requests if r.path == path]

    # ------------------------------------------------------------------ endpoints

    def _answer(self, req: ReceivedRequest) -> Response:
        if self.down:
            return Raw(503, {"content-type": "text/html"}, b"<h1>503 Service Unavailable</h1>")
        if req.method == "GET" and req.path == "/.well-known/openid-configuration":
            return JSONResponse({"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                                 "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                                 "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
                                 "id_token_signing_alg_values_supported": ["RS256"],
                                 "token_endpoint_auth_methods_supported": ["client_secret_post"]})
        if req.method == "GET" and req.path == "/jwks":
            return JSONResponse({"keys": [self.key.jwk()]})
        if req.method == "GET" and req.path == "/authorize":
            return self._authorize(req.params)
        if req.method == "POST" and req.path == "/token":
            return self._token(dict(parse_qsl(req.body.decode(), keep_blank_values=True)))
        return Raw(404, {"content-type": "text/plain"}, b"Not Found")

    def _authorize(self, q: dict[str, str]) -> Response:
        if q.get("client_id") != self.client_id or q.get("redirect_uri") != self.redirect_uri:
            # RFC 6749 §4.1.2.1: never redirect to an unverified redirect_uri
            return Raw(400, {"content-type": "text/plain"}, b"invalid_request: unknown client or redirect_uri")
        back = {"state": q.get("state", ""), "iss": self.url}
        if self.deny_next:
            self.deny_next = False
            return Raw(302, {"location": f"{self.redirect_uri}?{urlencode({'error': 'access_denied', **back})}"})
        problems = [k for k, ok in (("response_type", q.get("response_type") == "code"), ("state", bool(q.get("state"))),
                                    ("nonce", bool(q.get("nonce"))),
                                    ("code_challenge_method", q.get("code_challenge_method") == "S256"),
                                    ("code_challenge", bool(q.get("code_challenge"))),
                                    ("scope", "openid" in q.get("scope", "").split())) if not ok]
        if problems:
            err = {"error": "invalid_request", "error_description": f"bad {', '.join(problems)}", **back}
            return Raw(302, {"location": f"{self.redirect_uri}?{urlencode(err)}"})
        code = secrets.token_urlsafe(24)
        self.codes[code] = _Code(self.client_id, q["redirect_uri"], q["code_challenge"], q["nonce"], self.user,
                                 list(self.groups))
        return Raw(302, {"location": f"{self.redirect_uri}?{urlencode({'code': code, **back})}"})

    def _token(self, form: dict[str, str]) -> Response:
        def error(code: str, text: str, status: int = 400) -> Response:
            return JSONResponse({"error": code, "error_description": text}, status=status)

        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return error("invalid_client", "Client authentication failed.", 401)
        if form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if user is None or user in self.removed:
                return error("invalid_grant", "The refresh token is invalid, expired or revoked.")
            return self._tokens(user, None)
        if form.get("grant_type") != "authorization_code":
            return error("unsupported_grant_type", "The authorization grant type is not supported.")
        grant = self.codes.get(form.get("code", ""))
        if grant is None or grant.used or grant.redirect_uri != form.get("redirect_uri"):
            return error("invalid_grant", "The provided authorization grant is invalid, expired, revoked, does not "
                                          "match the redirection URI, or was issued to another client.")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if digest != grant.challenge:
            return error("invalid_grant", "PKCE verification failed.")
        grant.used = True
        return self._tokens(grant.user, grant.nonce, grant.groups)

    def _tokens(self, user: str, nonce: str | None, groups: list[str] | None = None) -> Response:
        """A token answer: an ID token (the person's groups as they are now) and a new, rotating refresh token."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.url, "aud": self.client_id, "sub": "sub-" + user, "email": user,
                                  "email_verified": True, "groups": list(self.groups if groups is None else groups),
                                  "iat": now, "exp": now + 600}
        if nonce is not None:
            claims["nonce"] = nonce
        id_token = jwt.encode(claims, self.key.private, algorithm="RS256", headers={"kid": self.key.kid})
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = user
        return JSONResponse({"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 600,
                             "id_token": id_token, "refresh_token": refresh})
