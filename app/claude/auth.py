"""Which credential Claude Code sends through Patchbay, and the environment that keeps it.

Claude Code sends one credential to ``ANTHROPIC_BASE_URL``: ``ANTHROPIC_AUTH_TOKEN`` or
``ANTHROPIC_API_KEY`` when set, else its subscription login (an OAuth bearer). Patchbay's gateway
token must therefore not sit in ``ANTHROPIC_AUTH_TOKEN`` for a user with an Anthropic account of
their own: it travels in Patchbay's header ``x-patchbay-token``, added through
``ANTHROPIC_CUSTOM_HEADERS`` (docs/protocol.md §1, "Subscription logins"). A user with no
Anthropic credential at all still needs ``ANTHROPIC_AUTH_TOKEN``: without any credential Claude
Code 2.1.332 refuses to start a turn ("Not logged in · Please run /login") and sends nothing.

:func:`detect` looks for the user's own credential (what can and cannot be seen is in
docs/protocol.md); :func:`uses_token` decides, from that and the user's choice
(``auto`` / ``own`` / ``token``), whether ``ANTHROPIC_AUTH_TOKEN`` is set too; :func:`env_values`
builds the variables; :func:`merge_header` / :func:`drop_header` edit the header lines, keeping
the user's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_HEADER = "x-patchbay-token"  # the name app/proxy/access.py reads
CUSTOM_HEADERS = "ANTHROPIC_CUSTOM_HEADERS"
AUTH_TOKEN = "ANTHROPIC_AUTH_TOKEN"
API_KEY = "ANTHROPIC_API_KEY"
OAUTH_ENV = "CLAUDE_CODE_OAUTH_TOKEN"  # a long-lived subscription token (`claude setup-token`)
KEYCHAIN_SERVICE = "Claude Code-credentials"  # where Claude Code keeps its login on macOS
CHOICES = ("auto", "own", "token")
CHOICE_HELP = ('which credential Claude Code sends: "own" (your Claude subscription login or ANTHROPIC_API_KEY; '
               'Patchbay\'s token goes in the x-patchbay-token header), "token" (Patchbay\'s token as '
               'ANTHROPIC_AUTH_TOKEN, for use without an Anthropic account), "auto" (default: "own" when Patchbay '
               'finds a login or key, else "token")')

_LABELS = {
    "subscription": "your Claude subscription login",
    "api_key": "your ANTHROPIC_API_KEY",
    "helper": "your apiKeyHelper's key",
    "auth_token": "your own ANTHROPIC_AUTH_TOKEN",
    "none": "Patchbay's token (no Anthropic account)",
}


@dataclass(frozen=True)
class Credential:
    """The user's own Anthropic credential as far as Patchbay can see it (never its value)."""

    kind: str  # subscription | api_key | helper | auth_token | none
    where: str  # where it was found, for the user ("" for none)

    @property
    def label(self) -> str:
        return _LABELS[self.kind]


def settings_env(settings: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``env`` object of a settings.json ({} when it has none)."""
    env = (settings or {}).get("env")
    return env if isinstance(env, dict) else {}


def read_settings(path: Path) -> dict[str, Any]:
    """settings.json as an object ({} when absent or unreadable)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _credentials_file(environ: Mapping[str, str], home: Path) -> Path:
    folder = environ.get("CLAUDE_CONFIG_DIR")
    return (Path(folder) if folder else home / ".claude") / ".credentials.json"


def _file_login(path: Path) -> bool:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    oauth = obj.get("claudeAiOauth") if isinstance(obj, dict) else None
    return isinstance(oauth, dict) and bool(oauth.get("accessToken") or oauth.get("refreshToken"))


def _keychain_login() -> bool:
    """macOS: whether the keychain holds Claude Code's login (its attributes only: no password is
    read, so no keychain prompt)."""
    if sys.platform != "darwin" or shutil.which("security") is None:
        return False
    try:
        return subprocess.run(["security", "find-generic-password", "-s", KEYCHAIN_SERVICE],
                              capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detect(environ: Mapping[str, str] | None = None, home: Path | None = None,
           settings: Mapping[str, Any] | None = None, *, own_token: str | None = None) -> Credential:
    """The credential Claude Code would send on its own, in Claude Code's order: an API key or auth
    token in settings.json's env or the environment, an ``apiKeyHelper``, then a subscription login
    (``CLAUDE_CODE_OAUTH_TOKEN``; the credentials file; on macOS the keychain). ``own_token``:
    Patchbay's gateway token, which an earlier connect may have left as ANTHROPIC_AUTH_TOKEN."""
    env = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    senv = settings_env(settings)
    for name, kind in ((API_KEY, "api_key"), (AUTH_TOKEN, "auth_token")):
        for value, where in ((senv.get(name), "settings.json"), (env.get(name), "the environment")):
            if isinstance(value, str) and value and value != own_token:
                return Credential(kind, f"{name} in {where}")
    if isinstance((settings or {}).get("apiKeyHelper"), str):
        return Credential("helper", "apiKeyHelper in settings.json")
    if env.get(OAUTH_ENV) or senv.get(OAUTH_ENV):
        return Credential("subscription", OAUTH_ENV)
    creds = _credentials_file(env, home)
    if _file_login(creds):
        return Credential("subscription", str(creds))
    if _keychain_login():
        return Credential("subscription", f'the macOS keychain ("{KEYCHAIN_SERVICE}")')
    return Credential("none", "")


def uses_token(choice: str, cred: Credential) -> bool:
    """Whether ANTHROPIC_AUTH_TOKEN carries Patchbay's token (so Claude Code has a credential at all)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown credential choice {choice!r}: use {', '.join(CHOICES)}")
    return choice == "token" or (choice == "auto" and cred.kind == "none")


def describe(choice: str, cred: Credential) -> str:
    """One sentence: which credential Claude Code will send through Patchbay."""
    if uses_token(choice, cred):
        return ("Claude Code will use Patchbay's token (no Anthropic account): backends with a stored key work; "
                "an Anthropic backend that forwards your own key gets none.")
    if cred.kind == "none":
        return ("Claude Code will use your own Anthropic login or key, but Patchbay found none: log in with "
                "`claude` (/login) or set ANTHROPIC_API_KEY, or choose Patchbay's token instead.")
    return (f"Claude Code will use {cred.label} ({cred.where}); Patchbay's token travels beside it in the "
            f"{TOKEN_HEADER} header.")


def _name(line: str) -> str:
    return line.split(":", 1)[0].strip().lower()


def merge_header(existing: str | None, name: str, value: str | None) -> str | None:
    """``ANTHROPIC_CUSTOM_HEADERS`` (one ``Name: value`` per line) with ``name`` set to ``value``
    (or removed for None), every other line of the user's kept as it was."""
    lines = [ln for ln in (existing or "").splitlines() if ln.strip() and _name(ln) != name.lower()]
    if value:
        lines.append(f"{name}: {value}")
    return "\n".join(lines) if lines else None


def drop_header(existing: str | None, name: str = TOKEN_HEADER) -> str | None:
    return merge_header(existing, name, None)


def has_header(existing: str | None, name: str, value: str) -> bool:
    return any(_name(ln) == name.lower() and ln.split(":", 1)[1].strip() == value
               for ln in (existing or "").splitlines() if ":" in ln)


def env_values(url: str, token: str, *, token_as_credential: bool, existing_headers: str | None) -> dict[str, str]:
    """The variables that point Claude Code at Patchbay: the address, the token in its header
    (merged into the user's own custom headers), and ANTHROPIC_AUTH_TOKEN only when Claude Code
    must use Patchbay's token as its credential."""
    values = {"ANTHROPIC_BASE_URL": url}
    if token_as_credential:
        values[AUTH_TOKEN] = token
    headers = merge_header(existing_headers, TOKEN_HEADER, token)
    assert headers is not None
    values[CUSTOM_HEADERS] = headers
    return values
