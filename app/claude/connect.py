"""Claude Code and Patchbay: connecting its settings, and starting it through the gateway.

- :func:`connect` / :func:`disconnect` / :func:`status` tie :mod:`app.claude.settings`
  (the careful editor of ``~/.claude/settings.json``) to Patchbay's own files: the record of what
  was there before, and the backups, live in Patchbay's data dir.
- :func:`launch` starts the user's ``claude`` in this terminal pointed at the gateway for that one
  process, optionally pinned to a backend/model with the ``x-patchbay-pin`` header.

Claude Code applies the ``env`` of its settings files *over* the process environment, so a
variable set only in the environment loses to a user's settings.json (verified with 2.1.332).
``launch`` therefore also passes ``--settings FILE`` (command-line settings rank above the user's),
with FILE a private (0600) file in Patchbay's data dir, not the token on the command line where
other users could read it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.claude import auth as ca
from app.claude import settings as cs

if TYPE_CHECKING:
    from app.config import Config
    from app.paths import Paths

PIN_HEADER = "x-patchbay-pin"
CUSTOM_HEADERS = "ANTHROPIC_CUSTOM_HEADERS"
ALIASES = tuple(cs.ALIAS_KEYS)  # haiku, sonnet, opus


class LaunchError(Exception):
    """``patchbay claude`` cannot start Claude Code. ``str()`` is a sentence for the user."""


def gateway_url(config: Config) -> str:
    """The address clients use: a wildcard listen address is reached over loopback."""
    host = config.gateway.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.gateway.port}"


def runtime_file(paths: Paths) -> Path:
    """Where a running gateway writes its address (its port may differ from the config's: ``--port 0``)."""
    return paths.data_dir / "gateway.json"


def write_runtime_file(paths: Paths, url: str, config_path: Path | None = None) -> None:
    from app.config.disk import atomic_write

    info = {"url": url, "pid": os.getpid(), "config": str(config_path) if config_path else None}
    try:
        atomic_write(runtime_file(paths), json.dumps(info) + "\n")
    except Exception:  # noqa: BLE001 - only a convenience for `patchbay claude`
        pass


def remove_runtime_file(paths: Paths) -> None:
    try:
        if json.loads(runtime_file(paths).read_text(encoding="utf-8")).get("pid") == os.getpid():
            runtime_file(paths).unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _runtime(paths: Paths) -> dict[str, Any]:
    try:
        info = json.loads(runtime_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def client_url(paths: Paths, config: Config) -> str:
    """Where clients reach the gateway: the one running now, whose port may differ from the
    config's (``serve --port N``, or ``port = 0``), else the address the config gives."""
    info = _runtime(paths)
    url, pid = info.get("url"), info.get("pid")
    if isinstance(url, str) and url.startswith("http") and isinstance(pid, int):
        import psutil  # os.kill(pid, 0) would end the process on Windows

        if psutil.pid_exists(pid):
            return url
    return gateway_url(config)


def running_config(paths: Paths) -> Path | None:
    """The config file the last gateway started with (``patchbay serve --config F``), if it still exists."""
    config = _runtime(paths).get("config")
    return Path(config) if isinstance(config, str) and Path(config).is_file() else None


# --------------------------------------------------------------------------- settings.json


def state_file(paths: Paths) -> Path:
    return paths.data_dir / "claude-code-connection.json"


def backup_dir(paths: Paths) -> Path:
    return paths.data_dir / "claude-settings-backups"


def statusline_command(paths: Paths, config_path: Path | None = None) -> str:
    """The ``statusLine`` command: this interpreter imports the stdlib-only status line module
    alone, isolated (``-I``: no user site, no PYTHON* variables, not the project's folder on
    sys.path) and without site set-up (``-S``), which keeps each run to a few tens of milliseconds.
    Importing it (rather than running the file) lets Python keep its compiled bytecode."""
    from app.claude import statusline

    config = config_path or paths.config_file
    if getattr(sys, "frozen", False):  # a packaged build: the app binary has the subcommand
        return shlex.join([sys.executable, "statusline", "--config", str(config)])
    folder = str(Path(statusline.__file__).resolve().parent)
    code = f"import sys; sys.path.append({folder!r}); import statusline; sys.exit(statusline.main())"
    ledger = paths.ledger_file
    if _team_ledger(config):  # the gateway keeps a local copy of what the line needs (status_cache.py)
        ledger = paths.data_dir / "statusline-cache.sqlite3"
    return shlex.join([sys.executable, "-I", "-S", "-c", code, "--ledger", str(ledger),
                       "--config", str(config)])


def _team_ledger(config: Path) -> bool:
    """Whether the config's [ledger] names a PostgreSQL ledger."""
    from app.config import ConfigError
    from app.config.disk import load_config

    try:
        return config.exists() and load_config(config).ledger.team.url is not None
    except (ConfigError, OSError):
        return False


def connection_values(url: str, token: str, *, nonessential: bool = False,
                      aliases: dict[str, str] | None = None, token_as_credential: bool = False,
                      existing_headers: str | None = None) -> dict[str, str]:
    """The env keys Connect writes: the address, the token in its own header (the user's other
    custom headers kept), ANTHROPIC_AUTH_TOKEN only for a user without an Anthropic credential
    (app/claude/auth.py), and what the user ticked."""
    # HINT_HEADERS: Claude Code (2.1.273+) then says what each request is for, which [routes] reads
    values = ca.env_values(url, token, token_as_credential=token_as_credential, existing_headers=existing_headers)
    values[cs.HINT_HEADERS] = "1"
    values[cs.TOOL_SEARCH] = "true"
    if nonessential:
        values[cs.NONESSENTIAL] = "1"
    for name, target in (aliases or {}).items():
        if name not in cs.ALIAS_KEYS:
            raise ValueError(f"unknown model alias {name!r}: use {', '.join(cs.ALIAS_KEYS)}")
        if target:
            values[cs.ALIAS_KEYS[name]] = target
    return values


def credential(token: str, settings: Path | None = None) -> ca.Credential:
    """The user's own Anthropic credential as Claude Code would find it (never its value)."""
    return ca.detect(settings=ca.read_settings(settings or cs.settings_path()), own_token=token)


def connect(paths: Paths, url: str, token: str, *, nonessential: bool = False,
            aliases: dict[str, str] | None = None, statusline: bool = False,
            config_path: Path | None = None, settings: Path | None = None,
            choice: str = "auto") -> cs.ConnectResult:
    """Point Claude Code at Patchbay in settings.json. ``choice``: which credential it sends
    (``auto`` / ``own`` / ``token``, app/claude/auth.py)."""
    path = settings or cs.settings_path()
    current = ca.read_settings(path)
    headers = ca.settings_env(current).get(CUSTOM_HEADERS)
    headers = headers if isinstance(headers, str) else None
    as_token = ca.uses_token(choice, ca.detect(settings=current, own_token=token))
    if not as_token:
        cs.drop_stale_token(path, state_file(paths), backup_dir(paths), token)
    top: dict[str, Any] = {}
    if statusline:
        top[cs.STATUS_LINE] = {"type": "command", "command": statusline_command(paths, config_path), "padding": 0}
    values = connection_values(url, token, nonessential=nonessential, aliases=aliases,
                               token_as_credential=as_token, existing_headers=headers)
    _keep_users_tool_search(values, ca.settings_env(current))
    return cs.connect(path, state_file(paths), backup_dir(paths), values, top)


def _keep_users_tool_search(values: dict[str, str], *envs: Mapping[str, Any]) -> None:
    """A user who set ENABLE_TOOL_SEARCH (false, auto:N…) keeps their choice."""
    for env in envs:
        own = env.get(cs.TOOL_SEARCH)
        if isinstance(own, str) and own != values.get(cs.TOOL_SEARCH):
            values.pop(cs.TOOL_SEARCH, None)


def disconnect(paths: Paths, url: str | None, settings: Path | None = None, *,
               remove_model: bool = False) -> cs.DisconnectResult:
    return cs.disconnect(settings or cs.settings_path(), state_file(paths), backup_dir(paths), gateway_url=url,
                         remove_model=remove_model)


def remove_gateway_model(paths: Paths, settings: Path | None = None) -> str | None:
    """Remove a ``"model": "backend,model"`` that ``/model`` saved (after Disconnect)."""
    return cs.remove_gateway_model(settings or cs.settings_path(), backup_dir(paths))


def status(paths: Paths, url: str, token: str, settings: Path | None = None) -> cs.Status:
    return cs.status(settings or cs.settings_path(), state_file(paths), url, token)


def alias_values(settings: Path | None = None) -> dict[str, str]:
    """The model aliases settings.json sets now (to show them in the app)."""
    path = settings or cs.settings_path()
    try:
        env = json.loads(path.read_text(encoding="utf-8")).get("env") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {name: env[key] for name, key in cs.ALIAS_KEYS.items() if isinstance(env.get(key), str)}


# --------------------------------------------------------------------------- patchbay claude


def find_claude() -> str:
    import shutil

    configured = os.environ.get("PATCHBAY_CLAUDE_BIN")
    if configured:
        if not Path(configured).exists():
            raise LaunchError(f"PATCHBAY_CLAUDE_BIN is {configured}, but there is no file there. Point it at the "
                              "claude program, or unset it to use the one on your PATH.")
        return configured
    found = shutil.which("claude")
    if not found:
        raise LaunchError("Claude Code is not installed (there is no `claude` on your PATH). Install it with "
                          "`npm install -g @anthropic-ai/claude-code`, or set PATCHBAY_CLAUDE_BIN to where it is.")
    return found


def check_gateway(url: str, timeout: float = 2.0) -> None:
    """Raise :class:`LaunchError` unless a Patchbay gateway answers ``GET /health`` at ``url``."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/health"), timeout=timeout) as resp:
            data = json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LaunchError(f"The Patchbay gateway is not running at {url} ({reason}). Start the app, or run "
                          "`patchbay serve` in another terminal, then try again.") from None
    if not isinstance(data, dict) or "status" not in data:
        raise LaunchError(f"Something else answers at {url}, not a Patchbay gateway. Check the port in the config "
                          "(`patchbay check`).")
    if data.get("status") == "paused":
        raise LaunchError("The Patchbay gateway is paused, so it refuses requests. Resume it from the tray menu "
                          "or the window, then try again.")


def pin_value(backend: str | None, model: str | None) -> str | None:
    if not backend:
        if model:
            raise LaunchError("--model needs --backend too (the backend to send that model to).")
        return None
    if "," in backend or "\n" in backend or (model and "\n" in model):
        raise LaunchError(f"--backend {backend!r} is not a backend id; pass the model with --model.")
    return f"{backend},{model}" if model else backend


def merged_headers(existing: str | None, pin: str | None, token: str | None = None) -> str | None:
    """``ANTHROPIC_CUSTOM_HEADERS`` (one ``Name: value`` per line) with our pin and token, keeping the user's others."""
    return ca.merge_header(ca.merge_header(existing, PIN_HEADER, pin), ca.TOKEN_HEADER, token)


def _private_settings(paths: Paths, overrides: dict[str, str]) -> Path:
    """A 0600 settings file for ``claude --settings``, named by its content (runs with the same
    pin share it; a run never changes another's)."""
    import hashlib

    text = json.dumps({"env": overrides}, indent=2) + "\n"
    folder = paths.data_dir / "claude-run"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.sha256(text.encode()).hexdigest()[:16]
    dest = folder / f"settings-{name}.json"
    if not dest.exists():
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, dest)
    week_ago = time.time() - 7 * 86400
    for old in folder.glob("settings-*.json"):
        try:
            if old != dest and old.stat().st_mtime < week_ago:
                old.unlink()
        except OSError:
            pass
    os.utime(dest)
    return dest


def claude_command(paths: Paths, url: str, token: str, args: list[str], *, backend: str | None = None,
                   model: str | None = None, environ: dict[str, str] | None = None,
                   choice: str = "auto") -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start Claude Code through the gateway (and pinned). The
    token rides in its own header; ANTHROPIC_AUTH_TOKEN carries it only for a user without an
    Anthropic credential of their own (``choice``, app/claude/auth.py)."""
    claude = find_claude()
    env = dict(os.environ if environ is None else environ)
    pin = pin_value(backend, model)
    user_settings = ca.read_settings(cs.settings_path())
    settings_env = ca.settings_env(user_settings)
    # the headers Claude Code would use: settings.json's win over the environment's
    existing = settings_env.get(CUSTOM_HEADERS) if isinstance(settings_env.get(CUSTOM_HEADERS), str) \
        else env.get(CUSTOM_HEADERS)
    cred = ca.detect(env, settings=user_settings, own_token=token)
    overrides = {cs.BASE_URL: url, cs.HINT_HEADERS: "1", cs.TOOL_SEARCH: "true"}
    _keep_users_tool_search(overrides, settings_env, env)
    if ca.uses_token(choice, cred):
        overrides[cs.AUTH_TOKEN] = token
    else:
        if env.get(cs.AUTH_TOKEN) == token:
            env.pop(cs.AUTH_TOKEN)  # left by an older `eval "$(patchbay env)"`: it would hide the user's login
        if settings_env.get(cs.AUTH_TOKEN) == token:
            # left in settings.json by an older Connect: an empty value in --settings outranks it and
            # lets the login through (measured, docs/protocol.md §1)
            overrides[cs.AUTH_TOKEN] = ""
    headers = merged_headers(existing, pin, token)
    assert headers is not None
    overrides[CUSTOM_HEADERS] = headers
    env.update(overrides)
    argv = [claude, "--settings", str(_private_settings(paths, overrides)), *args]
    return argv, env


def launch(argv: list[str], env: dict[str, str]) -> int:
    """Run Claude Code in this terminal: on POSIX it replaces this process (signals, job control
    and the exit code are Claude Code's own); elsewhere we wait and pass its exit code on."""
    if os.name == "posix":
        try:
            os.execve(argv[0], argv, env)
        except OSError as exc:
            raise LaunchError(f"Claude Code could not be started from {argv[0]}: {exc.strerror}.") from None
    import signal
    import subprocess

    proc = subprocess.Popen(argv, env=env)
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # Ctrl+C reaches the child through the console
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
