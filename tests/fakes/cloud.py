"""Fakes of the cloud peers: AWS Bedrock (SigV4 checked, event-stream answers), Google's OAuth
token endpoint (a real JWT-bearer exchange, the assertion's RS256 signature checked) and Vertex
AI (bearer tokens checked against those the token endpoint issued). All on loopback, built on
:class:`tests.fakes.upstreams.FakeUpstream`.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes import chunks as _chunks
from tests.fakes.eventstream import bedrock_chunk, bedrock_exception
from tests.fakes.upstreams import (
    AnthropicJSON,
    FakeUpstream,
    JSONResponse,
    ReceivedRequest,
    Response,
    Split,
    _compile,
)

EVENTSTREAM = "application/vnd.amazon.eventstream"

# --------------------------------------------------------------------------- Bedrock


class BedrockStream(Response):
    """An InvokeModelWithResponseStream answer: each Anthropic event in a ``chunk`` frame, then
    optionally an exception frame (``exception=("throttlingException", "…")``) after
    ``exception_after`` events (default: after all of them). ``split``/``delay_s`` as for the
    other streams: "awkward" cuts frames mid-prelude and mid-payload."""

    def __init__(
        self,
        events: Iterable[tuple[str, dict[str, Any]]],
        *,
        exception: tuple[str, str] | None = None,
        exception_after: int | None = None,
        split: Split = None,
        delay_s: float = 0.0,
        ttfb_s: float = 0.0,
        cut_after: int | None = None,
    ) -> None:
        frames = [bedrock_chunk(e) for e in events]
        if exception is not None:
            at = len(frames) if exception_after is None else exception_after
            frames = frames[:at] + [bedrock_exception(*exception)]
        if cut_after is not None:
            frames = frames[:cut_after]
        headers = {"content-type": EVENTSTREAM, "x-amzn-requestid": "fake-bedrock-request",
                   "x-amzn-bedrock-content-type": "application/json"}
        self.plan = _compile(200, headers, frames, split=split, delay_s=delay_s, ttfb_s=ttfb_s,
                             cut=cut_after is not None)


def bedrock_error(status: int, exception_type: str, message: str) -> Response:
    """An HTTP error the way Bedrock sends one (``x-amzn-ErrorType`` and ``{"message"}``)."""
    return JSONResponse({"message": message}, status,
                        headers={"x-amzn-ErrorType": f"{exception_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"})


_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                      r"SignedHeaders=([a-z0-9;\-]+), Signature=([0-9a-f]{64})$")


def check_sigv4(req: ReceivedRequest, keys: Mapping[str, tuple[str, str | None]], region: str,
                service: str = "bedrock") -> str | None:
    """None when ``req`` carries a valid SigV4 signature by one of ``keys`` (access key →
    (secret, session token)), else why not. The signature is recomputed with botocore's own
    signer over what arrived on the wire: the headers listed as signed, the raw path, the body."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    m = _AUTH_RE.match(req.headers.get("authorization", ""))
    if m is None:
        return "MissingAuthenticationToken: no SigV4 Authorization header"
    access, date, reg, svc, signed, signature = m.groups()
    if access not in keys:
        return f"UnrecognizedClientException: the access key {access} is not known"
    if (reg, svc) != (region, service):
        return f"InvalidSignatureException: signed for {reg}/{svc}, expected {region}/{service}"
    amz_date = req.headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return "InvalidSignatureException: X-Amz-Date does not match the credential scope"
    secret, token = keys[access]
    if token is not None and req.headers.get("x-amz-security-token") != token:
        return "UnrecognizedClientException: the security token is missing or wrong"
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return "InvalidSignatureException: host and x-amz-date must be signed"
    try:
        headers = {n: req.headers[n] for n in names}
    except KeyError as exc:
        return f"InvalidSignatureException: the signed header {exc} is missing"
    url = f"http://{headers['host']}{req.path}" + (f"?{req.query}" if req.query else "")
    areq = AWSRequest(method=req.method, url=url, data=req.body, headers=headers)
    areq.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access, secret, token), svc, reg)
    expected = signer.signature(signer.string_to_sign(areq, signer.canonical_request(areq)), areq)
    if not hmac.compare_digest(expected, signature):
        return "InvalidSignatureException: The request signature we calculated does not match the signature you provided."
    return None


class FakeBedrock(FakeUpstream):
    """Bedrock runtime and control plane on loopback. Requests are checked first: SigV4 with
    one of ``keys`` for ``region``, or ``Authorization: Bearer <api_key>``. Then queued answers
    (``enqueue(BedrockStream(...))``), then stock ones: a text stream, an ``/invoke`` message,
    ``count-tokens`` (``count`` input tokens), and the model lists. ``betas``: the
    ``anthropic_beta`` values the model takes (None: any); others get Bedrock's 400
    "invalid beta flag", as real Bedrock answers."""

    def __init__(self, *, region: str = "us-east-1", keys: Mapping[str, tuple[str, str | None]] | None = None,
                 api_key: str | None = None, count: int = 42,
                 foundation_models: Sequence[dict[str, Any]] = (), inference_profiles: Sequence[dict[str, Any]] = (),
                 betas: Iterable[str] | None = None):
        self.region = region
        self.keys = dict(keys or {})
        self.api_key = api_key
        self.count = count
        self.foundation_models = list(foundation_models)
        self.inference_profiles = list(inference_profiles)
        self.betas = None if betas is None else set(betas)
        self.signed_by: list[str] = []  # access keys of the requests let through, in order
        super().__init__(self._respond, wire="anthropic", guard=self._guard)

    def _guard(self, req: ReceivedRequest) -> Response | None:
        auth = req.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if self.api_key is not None and hmac.compare_digest(auth[7:], self.api_key):
                return self._check_betas(req)
            return bedrock_error(403, "AccessDeniedException", "Invalid API Key format or the key has expired.")
        why = check_sigv4(req, self.keys, self.region)
        if why is not None:
            name, _, text = why.partition(": ")
            return bedrock_error(403, name, text)
        self.signed_by.append(_AUTH_RE.match(auth).group(1))  # type: ignore[union-attr]
        return self._check_betas(req)

    def _check_betas(self, req: ReceivedRequest) -> Response | None:
        body = req.json
        if self.betas is None or not isinstance(body, dict):
            return None
        if set(body.get("anthropic_beta") or ()) - self.betas:
            return bedrock_error(400, "ValidationException", "invalid beta flag")
        return None

    def _respond(self, req: ReceivedRequest) -> Response | None:
        path = req.path
        if req.method == "GET" and path == "/foundation-models":
            models = self.foundation_models
            provider = req.params.get("byProvider")
            if provider:
                models = [m for m in models if m.get("providerName", "").lower() == provider.lower()]
            return JSONResponse({"modelSummaries": models})
        if req.method == "GET" and path == "/inference-profiles":
            return JSONResponse({"inferenceProfileSummaries": self.inference_profiles})
        if req.method != "POST" or not path.startswith("/model/"):
            return bedrock_error(404, "UnknownOperationException", f"No such operation: {req.method} {path}")
        if path.endswith("/count-tokens"):
            body = req.json or {}
            inner = json.loads(base64.b64decode(body["input"]["invokeModel"]["body"]))
            assert "messages" in inner and inner["anthropic_version"] == "bedrock-2023-05-31"
            return JSONResponse({"inputTokens": self.count})
        if path.endswith("/invoke-with-response-stream"):
            return BedrockStream(_chunks.anthropic_text_events("Hello from the fake Bedrock.", 3))
        if path.endswith("/invoke"):
            return AnthropicJSON(_chunks.anthropic_message("Hello from the fake Bedrock."))
        return bedrock_error(404, "UnknownOperationException", f"No such operation: POST {path}")


# --------------------------------------------------------------------------- Google


class FakeGoogleAuth(FakeUpstream):
    """Google's OAuth token endpoint for service accounts (``POST /token``, grant type
    ``urn:ietf:params:oauth:grant-type:jwt-bearer``). It makes an RSA key and writes a
    service-account key file naming itself as ``token_uri``; point GOOGLE_APPLICATION_CREDENTIALS
    at ``key_file`` and google-auth does a real exchange here. Each exchange checks the
    assertion's RS256 signature, issuer, audience and scope, then issues ``ya29.fake-<n>`` with
    the next ``expires_in`` from ``lifetimes`` (the last one repeats)."""

    EMAIL = "patchbay-test@fake-project.iam.gserviceaccount.com"

    def __init__(self, directory: Path, lifetimes: Sequence[int] = (3600,)) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
        self.directory = directory
        self.lifetimes = list(lifetimes)
        self.issued: list[str] = []  # tokens Vertex accepts (a test may revoke one by removing it)
        self.exchanges = 0
        self.refused: list[str] = []
        self._lock = threading.Lock()
        super().__init__(self._respond, wire="anthropic")

    def start(self) -> FakeGoogleAuth:
        super().start()
        self.key_file = self.directory / "service-account.json"
        self.key_file.write_text(json.dumps({
            "type": "service_account", "project_id": "fake-project", "private_key_id": "fake-key-1",
            "private_key": self._pem, "client_email": self.EMAIL, "client_id": "1234567890",
            "token_uri": f"{self.url}/token", "auth_uri": f"{self.url}/auth",
        }), encoding="utf-8")
        return self

    def valid(self, token: str) -> bool:
        with self._lock:
            return token in self.issued

    def _respond(self, req: ReceivedRequest) -> Response | None:
        if req.method != "POST" or req.path != "/token":
            return JSONResponse({"error": "not_found"}, 404)
        form = dict(parse_qsl(req.body.decode()))
        why = self._check_assertion(form)
        if why is not None:
            self.refused.append(why)
            return JSONResponse({"error": "invalid_grant", "error_description": why}, 400)
        with self._lock:
            n = self.exchanges
            self.exchanges += 1
            token = f"ya29.fake-{n + 1}"
            self.issued.append(token)
            life = self.lifetimes[min(n, len(self.lifetimes) - 1)]
        return JSONResponse({"access_token": token, "expires_in": life, "token_type": "Bearer"})

    def _check_assertion(self, form: dict[str, str]) -> str | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return f"unsupported grant_type {form.get('grant_type')!r}"
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            return "the assertion is not a JWT"
        header, claims = (json.loads(_b64url(p)) for p in parts[:2])
        try:
            self._key.public_key().verify(_b64url(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                                          padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "the assertion's signature does not verify"
        if header.get("alg") != "RS256":
            return f"alg {header.get('alg')!r}"
        # google-auth always names Google's own token endpoint as the audience, whatever token_uri says
        if claims.get("iss") != self.EMAIL or claims.get("aud") != "https://oauth2.googleapis.com/token":
            return "wrong issuer or audience"
        if "https://www.googleapis.com/auth/cloud-platform" not in str(claims.get("scope", "")).split():
            return f"scope {claims.get('scope')!r} lacks cloud-platform"
        return None


def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def google_bearer_guard(auth: FakeGoogleAuth) -> Any:
    """A FakeUpstream guard accepting only tokens ``auth`` issued (Vertex's own check)."""

    def guard(req: ReceivedRequest) -> Response | None:
        value = req.headers.get("authorization", "")
        if value.startswith("Bearer ") and auth.valid(value[7:]):
            return None
        return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED",
                                       "message": "Request had invalid authentication credentials."}}, 401)

    return guard


def bearer_guard(accepted: Any) -> Any:
    """A guard for a company gateway: ``accepted()`` → the set of tokens it takes right now."""

    def guard(req: ReceivedRequest) -> Response | None:
        value = req.headers.get("authorization", "")
        if value.startswith("Bearer ") and value[7:] in accepted():
            return None
        return AnthropicJSON({"type": "error", "error": {"type": "authentication_error",
                                                         "message": "invalid or expired identity token"}}, 401)

    return guard


__all__ = ["BedrockStream", "FakeBedrock", "FakeGoogleAuth", "bearer_guard", "bedrock_error", "check_sigv4",
           "google_bearer_guard", "EVENTSTREAM"]
