"""``patchbay connect`` / ``disconnect`` / ``claude`` / ``statusline``: Claude Code from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# claude_code and claude_settings are imported where used: `patchbay statusline` runs after every
# Claude Code message and needs neither.


def add_connect_arguments(p: argparse.ArgumentParser) -> None:
    from app.claude import connect as claude_code
    from app.claude import settings as cs

    p.add_argument("--config", type=Path, dest="sub_config", help="config file")
    p.add_argument("--disable-nonessential-traffic", action="store_true",
                   help="also set CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 (no telemetry, error reports or "
                        "update checks from Claude Code)")
    p.add_argument("--allow-nonessential-traffic", action="store_true",
                   help="remove CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC again (without either flag, what is set "
                        "now, e.g. by the app, is kept)")
    for name in claude_code.ALIASES:
        p.add_argument(f"--{name}", metavar="BACKEND,MODEL",
                       help=f"send Claude Code's {name} model there (sets {cs.ALIAS_KEYS[name]}), so its requests "
                            "are easy to tell apart")
    p.add_argument("--credential", choices=("auto", "own", "token"), default="auto", help=_credential_help())
    p.add_argument("--statusline", action="store_true",
                   help="show backend, model and spend under Claude Code's prompt (only if you have no statusLine "
                        "of your own)")


def _credential_help() -> str:
    from app.claude.auth import CHOICE_HELP

    return CHOICE_HELP


def add_claude_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", help="pin this Claude Code session to a backend")
    p.add_argument("--model", help="and to this model of it")
    p.add_argument("--credential", choices=("auto", "own", "token"), default="auto", help=_credential_help())
    p.add_argument("--config", type=Path, dest="sub_config", help="config file")
    p.add_argument("claude_args", nargs=argparse.REMAINDER, help="passed to claude unchanged")


def _setup(config_path: Path | None) -> tuple[Any, Any, str, str]:
    from app.claude import connect as claude_code
    from app.config.disk import load_or_create
    from app.host import secrets
    from app.paths import default_paths

    paths = default_paths()
    paths.ensure()
    # without --config: the config of the gateway running now (it may have been started with one)
    config = load_or_create(config_path or claude_code.running_config(paths) or paths.config_file)
    token, _ = secrets.gateway_token(paths.token_file)
    return paths, config, claude_code.client_url(paths, config), token


def _fail(text: str) -> int:
    print(f"patchbay: {text}", file=sys.stderr)
    return 2


def run_connect(args: argparse.Namespace, config_path: Path | None) -> int:
    from app.claude import auth as ca
    from app.claude import connect as claude_code
    from app.claude import settings as cs
    from app.config import ConfigError
    from app.host.secrets import SecretError

    try:
        paths, config, url, token = _setup(config_path)
    except (ConfigError, SecretError) as exc:
        return _fail(str(exc))
    aliases = {}
    for name in claude_code.ALIASES:
        target = getattr(args, name, None)
        if target:
            backend = target.partition(",")[0].strip()
            if config.backend(backend) is None:
                return _fail(f'--{name} {target}: there is no backend "{backend}" in {config.path}. Configured: '
                             f"{', '.join(b.id for b in config.backends)}.")
            if "," not in target:
                return _fail(f"--{name} {target}: write BACKEND,MODEL (for example {backend},"
                             f"{(config.backend(backend).models or ('model-name',))[0]}).")
            aliases[name] = target
    nonessential, statusline, kept = _kept_choices(args, paths, config.path, aliases)
    try:
        result = claude_code.connect(paths, url, token, nonessential=nonessential,
                                     aliases=aliases, statusline=statusline,
                                     config_path=config.path, choice=args.credential)
    except cs.SettingsFileError as exc:
        return _fail(str(exc))
    if result.changed:
        print(f"Connected: {result.path} now points Claude Code at Patchbay ({url}).")
        if result.backup:
            print(f"  the previous file is saved as {result.backup}")
        print("  New Claude Code sessions use it; restart the ones already open. `patchbay disconnect` undoes it.")
    else:
        print(f"Already connected: {result.path} points Claude Code at Patchbay ({url}).")
    print("  " + ca.describe(args.credential, claude_code.credential(token)))
    if result.skipped:
        print(f"  left your own {', '.join(result.skipped)} as it is (Patchbay never replaces it).")
    if kept:
        print(f"  kept what was chosen before (in the app or an earlier connect): {', '.join(kept)}.")
    return 0


def _kept_choices(args: argparse.Namespace, paths: Any, config_path: Path | None,
                  aliases: dict[str, str]) -> tuple[bool, bool, list[str]]:
    """settings.json is the one source of truth for Claude Code's options: a connect from a terminal keeps
    what is set there now (the app's "turn off non-essential traffic", model aliases, the statusline)
    unless a flag says otherwise. Fills ``aliases`` in place; returns (nonessential, statusline, kept)."""
    import json

    from app.claude import connect as claude_code
    from app.claude import settings as cs

    try:
        now = json.loads(cs.settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        now = {}
    raw_env = now.get("env") if isinstance(now, dict) else None
    env: dict[str, Any] = raw_env if isinstance(raw_env, dict) else {}
    kept: list[str] = []
    nonessential = bool(args.disable_nonessential_traffic)
    if not nonessential and not args.allow_nonessential_traffic and env.get(cs.NONESSENTIAL) == "1":
        nonessential = True
        kept.append(f"{cs.NONESSENTIAL}=1 (--allow-nonessential-traffic removes it)")
    for name, target in claude_code.alias_values(cs.settings_path()).items():
        if name not in aliases:
            aliases[name] = target
            kept.append(f"{cs.ALIAS_KEYS[name]}={target}")
    statusline = bool(args.statusline)
    ours = claude_code.statusline_command(paths, config_path)
    line = now.get(cs.STATUS_LINE) if isinstance(now, dict) else None
    if not statusline and isinstance(line, dict) and line.get("command") == ours:
        statusline = True
        kept.append("the Patchbay statusline")
    return nonessential, statusline, kept


def _shell_line(shell: str, name: str, value: str | None) -> str:
    """Set (or, for None, unset) one variable in ``shell``'s syntax; a value may span lines."""
    import shlex

    if shell == "fish":
        return f"set -e {name}" if value is None else f"set -gx {name} {shlex.quote(value)}"
    if shell == "powershell":
        if value is None:
            return f"Remove-Item Env:{name} -ErrorAction SilentlyContinue"
        return f"$env:{name} = '" + value.replace("'", "''") + "'"
    return f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}"


def print_env(url: str, token: str, shell: str, choice: str) -> int:
    """`patchbay env`: the lines that point Claude Code at the gateway in this shell. The token goes
    in ANTHROPIC_CUSTOM_HEADERS (merged with the shell's own headers); ANTHROPIC_AUTH_TOKEN only for
    a user without an Anthropic login or key (app/claude/auth.py). Which credential
    Claude Code will send is said on stderr, so `eval "$(patchbay env)"` stays clean."""
    import os

    from app.claude import auth as ca
    from app.claude import connect as claude_code
    from app.claude import settings as cs

    settings = ca.read_settings(cs.settings_path())
    cred = ca.detect(os.environ, settings=settings, own_token=token)
    as_token = ca.uses_token(choice, cred)
    values = ca.env_values(url, token, token_as_credential=as_token,
                           existing_headers=os.environ.get(ca.CUSTOM_HEADERS))
    for name, value in values.items():
        print(_shell_line(shell, name, value))
    if not as_token and os.environ.get(ca.AUTH_TOKEN) == token:  # left by an older `patchbay env`
        print(_shell_line(shell, ca.AUTH_TOKEN, None))
    print(f"patchbay: {ca.describe(choice, cred)}", file=sys.stderr)
    if isinstance(ca.settings_env(settings).get(claude_code.CUSTOM_HEADERS), str):
        print(f"patchbay: note: {cs.settings_path()} sets {ca.CUSTOM_HEADERS} itself, which Claude Code prefers "
              "over this shell's; `patchbay connect` merges the token line into it.", file=sys.stderr)
    return 0


def run_disconnect(args: argparse.Namespace, config_path: Path | None) -> int:
    from app.claude import connect as claude_code
    from app.claude import settings as cs
    from app.config import ConfigError
    from app.host.secrets import SecretError

    try:
        paths, _config, url, _token = _setup(config_path)
    except (ConfigError, SecretError) as exc:
        return _fail(str(exc))
    try:
        result = claude_code.disconnect(paths, url, remove_model=bool(getattr(args, "remove_model", False)))
    except cs.SettingsFileError as exc:
        return _fail(str(exc))
    print(("Disconnected: " if result.changed or result.removed_file else "") + result.summary())
    if result.backup:
        print(f"  the connected version is saved as {result.backup}")
    if result.gateway_model and sys.stdin.isatty() and sys.stdout.isatty():
        answer = input(f'Remove "model": "{result.gateway_model}" from {result.path} now? [y/N] ')
        if answer.strip().lower() in ("y", "yes"):
            try:
                removed = claude_code.remove_gateway_model(paths)
            except cs.SettingsFileError as exc:
                return _fail(str(exc))
            print(f'Removed "model": "{removed}".' if removed else "It is no longer there; nothing to remove.")
    return 0


def parse_claude(argv: list[str]) -> argparse.Namespace:
    """Our own options come first; everything from the first other argument (or after ``--``)
    goes to claude unchanged, so ``patchbay claude --backend x -p "hi" --model y`` keeps claude's ``--model``."""
    ours: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a in ("--backend", "--model", "--config", "--credential") and i + 1 < len(argv):
            ours += [a, argv[i + 1]]
            i += 2
            continue
        if a.startswith(("--backend=", "--model=", "--config=", "--credential=")) or a in ("-h", "--help"):
            ours.append(a)
            i += 1
            continue
        break
    p = argparse.ArgumentParser(prog="patchbay claude", description="Start Claude Code in this terminal through the "
                                "Patchbay gateway (for this session only), optionally pinned to a backend and model.")
    add_claude_arguments(p)
    ns = p.parse_args(ours)
    ns.claude_args = argv[i:]
    return ns


def run_claude(argv: list[str]) -> int:
    from app.claude import connect as claude_code
    from app.config import ConfigError
    from app.host.secrets import SecretError

    args = parse_claude(argv)
    try:
        paths, config, url, token = _setup(args.sub_config)
    except (ConfigError, SecretError) as exc:
        return _fail(str(exc))
    if args.backend and config.backend(args.backend) is None:
        return _fail(f'there is no backend "{args.backend}" in {config.path}. Configured: '
                     f"{', '.join(b.id for b in config.backends)}.")
    try:
        cmd, env = claude_code.claude_command(paths, url, token, list(args.claude_args), backend=args.backend,
                                              model=args.model, choice=args.credential)
        claude_code.check_gateway(url)
        return claude_code.launch(cmd, env)
    except claude_code.LaunchError as exc:
        return _fail(str(exc))


def run_statusline(args: argparse.Namespace, config_path: Path | None) -> int:
    from app.claude import statusline
    from app.paths import default_paths

    paths = default_paths()
    if config_path is None:
        from app.claude.connect import running_config

        config_path = running_config(paths)
    return statusline.run(paths.ledger_file, config_path or paths.config_file)
