"""Errors no retry can cure, answered so that Claude Code stops at once and says what to fix.

Claude Code 2.1.332 retries a 401 and every 5xx for about three minutes (11 tries) before it shows
anything, and shows an error whose message mentions an ``x-api-key`` as "Not logged in · Please
run /login" (docs/protocol.md, "Errors that stop Claude Code"). Two failures get an answer it shows
after one try instead, with a sentence naming the backend and the fix:

- the credential Patchbay holds for a backend (every ``auth`` but ``client``) refused by its
  provider (401/403): **424** ``api_error`` with ``x-should-retry: false``. Not 401 or 403: with an
  ``apiKeyHelper`` (team mode) Claude Code retries those even when told not to; a 424 it never
  retries, with either credential source, and it adds no "server-side issue" advice;
- a backend that does not answer at all (connection refused, DNS, TLS): **502** ``api_error`` with
  ``x-should-retry: false``;
- a key Patchbay cannot find (not stored, a variable not set): 401 with ``x-should-retry: false``
  (nothing went upstream; :class:`CredentialMissing`).

A 403 may be about something else than the key (OpenRouter's moderation, a region): its sentence
says what the provider said and offers the key's fix only "if it is about the key".

A ``client`` backend's 401 is about the user's own credential (an expired subscription token that
Claude Code refreshes): it is passed through unchanged, and this module leaves it alone.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from app.config import BackendConfig
from app.errors import ApiError

DONT_RETRY = (b"x-should-retry", b"false")
CREDENTIAL_REFUSED = 424  # Failed Dependency: what Patchbay depends on (the backend's credential) failed

# the fix for a refused credential, by where the credential comes from ({id}, {var}: the backend's)
_CREDENTIAL_FIX: dict[str, str] = {
    "keyring": "set a new one with `patchbay key set {id}` or in Settings → Backends",
    "env": "put a valid key in the environment variable {var} and restart Patchbay",
    "command": "check the command in the backend's auth setting: the token it printed was refused",
    "aws": "check the AWS credentials Patchbay runs with (`aws sso login`, the profile) and their access to "
           "this model",
    "google": "check the Google credentials Patchbay runs with (`gcloud auth application-default login`) and "
              "the project's access to this model",
    "none": 'set auth = "keyring" for it and store a key with `patchbay key set {id}` (or in Settings → '
            "Backends)",
}
_CREDENTIAL_WHAT: dict[str, str] = {
    "keyring": "the key stored for backend {id} was",
    "env": "the key for backend {id} (from {var}) was",
    "command": "the token for backend {id} (from its auth command) was",
    "aws": "the AWS credentials for backend {id} were",
    "google": "the Google credentials for backend {id} were",
    "none": "backend {id}, which sends no key, was",
}

# local servers that are simply not started, found by the port they listen on by default or by
# the backend's id: (name, default port, ids that start with, how to start it)
_LOCAL_SERVERS: tuple[tuple[str, int, tuple[str, ...], str], ...] = (
    ("Ollama", 11434, ("ollama",), "start it with `ollama serve` (or open the Ollama app)"),
    ("LM Studio", 1234, ("lmstudio", "lm-studio", "lm_studio"),
     "start its server (`lms server start`, or the Developer tab in LM Studio)"),
    ("llama.cpp", 8080, ("llama.cpp", "llamacpp", "llama-cpp", "llama-server"), "start `llama-server`"),
    ("vLLM", 8000, ("vllm",), "start `vllm serve <model>`"),
)


# words Claude Code reads as "your own login is wrong" ("Not logged in · Please run /login"):
# an upstream's message quoted in ours is reworded so that the user sees what is really wrong
_LOGIN_WORDS = re.compile(r"(?i)\bx-api-key\b|\bapi[ _-]?key\b")


class CredentialMissing(ApiError):
    """Patchbay has no credential to send for a backend (a key not stored, a variable not set, a
    token command that fails): nothing went upstream, so this is not a refusal. Answered as raised,
    worded without "API key" and with ``x-should-retry: false``."""

    def __init__(self, status: int, error_type: str, message: str, *,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(status, error_type, defused(message), headers=[DONT_RETRY] if headers is None else headers)


def missing(text: str) -> CredentialMissing:
    """The answer for a backend whose credential Patchbay cannot find (``text`` says which)."""
    return CredentialMissing(401, "authentication_error", f"Patchbay: {text}")


def _auth_kind(auth: str) -> str:
    if auth.startswith("env:"):
        return "env"
    if auth.startswith("command:"):
        return "command"
    return auth if auth in _CREDENTIAL_FIX else "keyring"


def defused(text: str) -> str:
    """``text`` with the words that make Claude Code advise "/login" replaced by neutral ones."""
    return _LOGIN_WORDS.sub("key", text)


def credential_refused(config: BackendConfig, exc: ApiError) -> bool:
    """True when ``exc`` is ``config``'s provider refusing the credential Patchbay sent for it."""
    return config.auth != "client" and exc.status in (401, 403) and not isinstance(exc, CredentialMissing)


def refused_answer(config: BackendConfig, exc: ApiError) -> ApiError:
    """The answer for a refused credential: names the backend, quotes the provider, says the fix."""
    kind = _auth_kind(config.auth)
    fields = {"id": config.id, "var": config.env_var or ""}
    fix = _CREDENTIAL_FIX[kind].format(**fields)
    said = defused(" ".join(exc.message.split()))[:500] or "no reason given"
    if exc.status == 403:
        message = f"the provider of backend {config.id} refused this request (403: {said}); if it is about the key, {fix}."
    else:
        message = f"{_CREDENTIAL_WHAT[kind].format(**fields)} refused by its provider ({exc.status}: {said}); {fix}."
    return ApiError(CREDENTIAL_REFUSED, "api_error", message[0].upper() + message[1:], headers=[DONT_RETRY])


def _local_server(config: BackendConfig) -> tuple[str, str] | None:
    """(name, how to start it) of the well-known local server ``config`` points at, if any."""
    port = urlsplit(config.base_url).port
    bid = config.id.lower()
    for name, default_port, ids, start in _LOCAL_SERVERS:
        if port == default_port or bid.startswith(ids):
            return name, start
    return None


def not_answering(config: BackendConfig, reason: str) -> ApiError:
    """The answer for a backend that could not be reached at all (refused, DNS, TLS)."""
    url = config.base_url
    local = _local_server(config) if config.is_local else None
    if local is not None:
        name, start = local
        message = (f'{name} at {url} (backend "{config.id}") is not answering ({defused(reason)}): {start}, '
                   "or switch backend in Patchbay.")
    elif config.is_local:
        message = (f'The backend "{config.id}" at {url} is not answering ({defused(reason)}): start the server '
                   "there, or switch backend in Patchbay.")
    else:
        message = (f'The backend "{config.id}" at {url} could not be reached ({defused(reason)}): check the '
                   "address (base_url), this machine's network and the provider's status page, or switch "
                   "backend in Patchbay.")
    return ApiError(502, "api_error", message, headers=[DONT_RETRY])
