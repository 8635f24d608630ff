"""``patchbay team join URL`` / ``leave`` / ``credential``: a developer's laptop on a team gateway.

``join`` merges into Claude Code's ``settings.json`` (through :mod:`app.claude.settings`,
so every other byte stays and ``leave`` gives back exactly what was there) two things:

- ``env.ANTHROPIC_BASE_URL`` = the team gateway's address;
- ``apiKeyHelper`` = a command that prints the person's credential, which Claude Code sends as
  both ``x-api-key`` and ``Authorization: Bearer`` and runs again after a 401. Either
  ``patchbay team credential`` (their team key, kept in the OS keychain, or where none exists in
  the private api-keys.json file), or the
  identity command they give with ``--key-command`` (e.g. ``gcloud auth print-identity-token
  --audiences=patchbay``).

The join is recorded in its own state file, apart from ``patchbay connect``'s: a laptop is either
pointed at its own local Patchbay (``connect``) or at the team gateway (``join``), and ``join``
refuses while ``connect`` is in force. ``leave`` also removes the key ``join`` stored.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.claude import settings as cs
from app.claude import settings_file as sf

if TYPE_CHECKING:
    from app.paths import Paths

HELPER = "apiKeyHelper"
KEY_ACCOUNT = "team-key"
KEY_PREFIX = "pbk_"


class JoinError(Exception):
    """The join cannot be done. ``str()`` is a sentence for the user; nothing was changed."""


@dataclass(frozen=True)
class Joined:
    result: cs.ConnectResult
    helper: str


def state_file(paths: Paths) -> Path:
    return paths.data_dir / "claude-code-team.json"


def backup_dir(paths: Paths) -> Path:
    return paths.data_dir / "claude-settings-backups"


def credential_command() -> str:
    """The ``apiKeyHelper`` that prints the stored team key: this interpreter, this package."""
    if getattr(sys, "frozen", False):  # a packaged build: the app binary has the subcommand
        return shlex.join([sys.executable, "team", "credential"])
    root = str(Path(__file__).resolve().parents[2])
    code = f"import sys; sys.path.insert(0, {root!r}); from app.__main__ import main; sys.exit(main())"
    return shlex.join([sys.executable, "-c", code, "team", "credential"])


def normalise_url(url: str) -> str:
    u = url.strip().rstrip("/")
    if not (u.startswith("https://") or u.startswith("http://")):
        raise JoinError(f"{url!r} is not a web address. Write the team gateway's address, e.g. "
                        "https://patchbay.corp.example.")
    from app.config import is_loopback_url

    if u.startswith("http://") and not is_loopback_url(u):
        raise JoinError(f"{u} is plain http to another machine: your key or identity token would cross the network "
                        "unencrypted. Use the gateway's https:// address.")
    return u


def check_key_shape(key: str) -> str:
    key = key.strip()
    if not key.startswith(KEY_PREFIX) or len(key) < 20:
        raise JoinError("That is not a Patchbay team key (they start with pbk_). Paste the key your admin gave you "
                        "(`patchbay team key create` prints it), or use --key-command for an identity token.")
    return key


def store_key(key: str) -> None:
    from app.host import secrets

    key = check_key_shape(key)
    kr = secrets._store()
    try:
        kr.set_password(secrets.SERVICE, KEY_ACCOUNT, key)
    except Exception as exc:
        raise JoinError(f"The OS keychain refused to store the key ({type(exc).__name__}). Unlock it and try "
                        "again.") from None


def stored_key() -> str | None:
    from app.host import secrets

    try:
        value = secrets._lookup(KEY_ACCOUNT)
    except Exception as exc:
        raise secrets.NoKeychainError(f"The OS keychain did not answer ({type(exc).__name__}). Unlock it and "
                                      "try again.") from None
    return value if isinstance(value, str) and value else None


def forget_key() -> bool:
    from app.host import secrets

    stores: list[Any] = [secrets.FileStore(secrets.key_file())]
    if secrets.keychain_available():
        stores.append(secrets._keyring())
    found = False
    for kr in stores:
        try:
            if kr.get_password(secrets.SERVICE, KEY_ACCOUNT) is not None:
                kr.delete_password(secrets.SERVICE, KEY_ACCOUNT)
                found = True
        except Exception:
            pass
    return found


def join(paths: Paths, url: str, *, key_command: str | None = None, settings: Path | None = None) -> Joined:
    """Point Claude Code at the team gateway ``url`` (the key, if any, is already stored)."""
    from app.claude import connect as claude_code

    path = settings or cs.settings_path()
    local = cs.load_state(claude_code.state_file(paths))
    if local is not None and local.settings_path == str(sf.real_path(path)):
        raise JoinError(f"{path} points Claude Code at your local Patchbay (`patchbay connect`). Run `patchbay "
                        "disconnect` first, or keep the local Patchbay and relay it to the team gateway instead "
                        "(README, Team: a backend with auth = \"command:...\").")
    data, text = sf.read_text(sf.real_path(path))
    if text and text.strip():
        root = sf.parse(path, text)
        env = sf.env_object(path, root)
        for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"):
            if sf.raw_value(text, env, name) is not None:
                raise JoinError(f'{path} sets env.{name}, which Claude Code would send instead of the team '
                                f"credential. Remove it from the file first, then run `patchbay team join` again.")
        mine = cs.load_state(state_file(paths))
        ours = mine is not None and any(e.where == "top" and e.key == HELPER for e in mine.entries)
        if sf.raw_value(text, root, HELPER) is not None and not ours:
            raise JoinError(f"{path} already has an apiKeyHelper of your own. Remove it first (Patchbay never "
                            "replaces it), then run `patchbay team join` again.")
    helper = key_command.strip() if key_command else credential_command()
    if not helper:
        raise JoinError("--key-command is empty. Give the command that prints your identity token, e.g. "
                        "--key-command 'gcloud auth print-identity-token --audiences=patchbay'.")
    # the helper is written over an earlier join's (a key command changed); join's own state file
    # keeps what was there before the first join
    result = _connect(path, paths, {cs.BASE_URL: url}, {HELPER: helper})
    return Joined(result, helper)


def _connect(path: Path, paths: Paths, env: dict[str, str], top: dict[str, str]) -> cs.ConnectResult:
    state = state_file(paths)
    old = cs.load_state(state)
    if old is not None:
        # a second join (another URL or command): undo the first, then join afresh
        cs.disconnect(path, state, backup_dir(paths))
    return cs.connect(path, state, backup_dir(paths), env, top)


def leave(paths: Paths, settings: Path | None = None) -> tuple[cs.DisconnectResult, bool]:
    """Undo :func:`join` exactly; also forget the stored team key. (result, key forgotten)"""
    path = settings or cs.settings_path()
    result = cs.disconnect(path, state_file(paths), backup_dir(paths))
    return result, forget_key()


def run_key_command(command: str, timeout_s: float = 60.0) -> str:
    """What the identity command prints (its last non-empty line), as Claude Code would get it."""
    import subprocess

    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise JoinError(f"--key-command did not finish within {timeout_s:g} s. Check that it runs on its own "
                        "(it may be waiting for a sign-in).") from None
    lines = [ln.strip() for ln in done.stdout.splitlines() if ln.strip()]
    if done.returncode != 0 or not lines:
        raise JoinError(f"--key-command failed (exit status {done.returncode}) and printed no credential. Run it "
                        "by hand to see why (often: sign in first, e.g. `gcloud auth login`).")
    return lines[-1]


def check(url: str, credential: str, timeout_s: float = 15.0) -> str:
    """Ask the team gateway who it thinks we are (GET /v1/models with the credential). Returns a
    short description of what it offers; raises JoinError with the gateway's own words on a refusal."""
    import httpx

    try:
        with httpx.Client(timeout=timeout_s) as http:
            # the bearer alone: a refused key then gets the plain 401 (sent in both headers, as Claude
            # Code's apiKeyHelper does, it gets a 429 that stops Claude Code's retries: docs/team.md)
            r = http.get(f"{url}/v1/models", headers={"authorization": f"Bearer {credential}"})
    except httpx.HTTPError as exc:
        raise JoinError(f"Patchbay could not reach {url} ({type(exc).__name__}). Check the address and your "
                        "network (VPN?), or pass --no-check to join anyway.") from None
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except Exception:
            message = f"HTTP {r.status_code}"
        from app.logs.scrub import scrub_text

        message = scrub_text(message, (credential,)) or ""
        raise JoinError(f"{url} refused the credential ({r.status_code}): {message}")
    try:
        n = len(r.json().get("data") or [])
    except Exception:
        n = 0
    return f"{n} model{'s' if n != 1 else ''} open to you"
