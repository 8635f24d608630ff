"""Command line: ``patchbay`` (desktop app), ``patchbay serve``, ``patchbay env``, ``patchbay usage``, ..."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core import Engine


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="patchbay",
        description="A local Anthropic-compatible gateway: point Claude Code at it once, then choose where "
                    "its requests go. With no command, starts the desktop app.",
    )
    p.add_argument("--config", type=Path, help="config file (default: the one in your user config dir)")
    p.add_argument("--selftest", action="store_true",
                   help="check that this installation works (gateway, price table, GUI libraries) and exit")
    sub = p.add_subparsers(dest="command")
    from app.paths import default_paths

    s = sub.add_parser("serve", help="run the gateway headless (no window)")
    s.add_argument("--config", type=Path, dest="sub_config", help="config file")
    s.add_argument("--host", help="address to listen on (default from the config: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (0 picks a free one)")
    s.add_argument("--quiet", action="store_true", help="do not print a line per request")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run N gateway processes on the port, to use N cores (needs the PostgreSQL ledger)")
    s.set_defaults(run=cmd_serve)

    e = sub.add_parser("env", help="print the shell lines that point Claude Code at the gateway")
    e.add_argument("--config", type=Path, dest="sub_config")
    e.add_argument("--shell", choices=["posix", "fish", "powershell"], default="posix")
    e.add_argument("--credential", choices=["auto", "own", "token"], default="auto",
                   help="which credential Claude Code sends (default auto: your own login or key if Patchbay finds "
                        "one, else Patchbay's token)")
    e.set_defaults(run=cmd_env)

    u = sub.add_parser("usage", help="what requests cost, from the usage ledger")
    from app.cli import usage as usage_cli

    usage_cli.add_arguments(u)
    u.set_defaults(run=lambda a: usage_cli.run(a, default_paths(), config_path=_config_path(a)))

    k = sub.add_parser("key", help="store or remove a backend's API key (the OS keychain, else a private file)")
    k.add_argument("action", choices=["set", "delete", "status"])
    k.add_argument("backend", help="the backend id from the config")
    k.add_argument("--config", type=Path, dest="sub_config")
    k.set_defaults(run=cmd_key)

    c = sub.add_parser("check", help="check the config file and say what is wrong with it")
    c.add_argument("--config", type=Path, dest="sub_config")
    c.set_defaults(run=cmd_check)

    from app.cli import claude as claude_cli

    cn = sub.add_parser("connect", help="point Claude Code at the gateway in ~/.claude/settings.json (keeps everything "
                                        "else)")
    claude_cli.add_connect_arguments(cn)
    cn.set_defaults(run=lambda a: claude_cli.run_connect(a, _config_path(a)))
    d = sub.add_parser("disconnect", help="put ~/.claude/settings.json back as it was before `patchbay connect`")
    d.add_argument("--config", type=Path, dest="sub_config")
    d.add_argument("--remove-model", action="store_true",
                   help='also remove a "model": "backend,model" that Claude Code\'s /model saved (Anthropic would '
                        "refuse that name)")
    d.set_defaults(run=lambda a: claude_cli.run_disconnect(a, _config_path(a)))
    claude_cli.add_claude_arguments(sub.add_parser(
        "claude", help="start Claude Code through the gateway for this session only: "
                       "patchbay claude [--backend B [--model M]] [claude args…]"))
    from app.cli import ledger as ledger_cli

    lg = sub.add_parser("ledger", help="the usage ledger: check it, or migrate it to PostgreSQL")
    ledger_cli.add_arguments(lg)
    lg.set_defaults(run=lambda a: ledger_cli.run(a, default_paths(), _config_path(a)))
    sl = sub.add_parser("statusline", help="one line for Claude Code's statusLine setting (reads its JSON on stdin)")
    sl.add_argument("--config", type=Path, dest="sub_config")
    sl.set_defaults(run=lambda a: claude_cli.run_statusline(a, _config_path(a)))
    from app.cli.team_keys import add_team_commands

    add_team_commands(sub)

    # the global options work after every command too: `patchbay usage --json --config F`
    for name, sp in sub.choices.items():
        if not any("--config" in a.option_strings for a in sp._actions):
            sp.add_argument("--config", type=Path, dest="sub_config", help="config file")
        if name != "claude" and not any("--selftest" in a.option_strings for a in sp._actions):
            sp.add_argument("--selftest", action="store_true", dest="sub_selftest", help=argparse.SUPPRESS)
    return p


def split_global_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """The global options written before the command (``--config F``, ``--config=F``,
    ``--selftest``), and the rest from the command on."""
    ours: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config" and i + 1 < len(argv):
            ours += argv[i:i + 2]
            i += 2
        elif a.startswith("--config=") or a == "--selftest":
            ours.append(a)
            i += 1
        else:
            break
    return ours, argv[i:]


def _config_path(args: argparse.Namespace) -> Path | None:
    return getattr(args, "sub_config", None) or args.config


def _setup_logging(log_dir: Path, verbose: bool) -> None:
    from app.logs.file import PrivateLogHandler, stderr_handler

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        fh = PrivateLogHandler(log_dir / "patchbay.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError:
        pass
    root.addHandler(stderr_handler(verbose))


def cmd_serve(args: argparse.Namespace) -> int:
    from app.core import Engine, StartError, finished_line
    from app.events import RequestFinished

    if args.workers != 1:  # a supervisor of N worker processes (app/cli/serve_workers.py)
        from app.cli.serve_workers import run

        return run(args, _config_path(args), _drain_s())
    try:
        engine = Engine(_config_path(args), host=args.host, port=args.port)
    except StartError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    _setup_logging(engine.paths.log_dir, verbose=False)
    engine.runtime.drain_s = _drain_s()
    if not args.quiet:
        def show(ev: object) -> None:
            if type(ev) is RequestFinished:
                print(finished_line(ev), file=sys.stderr, flush=True)

        engine.hub.add(show)
    try:
        engine.start()
    except StartError as exc:
        engine.ledger.close()
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    from app.cli.serve_workers import announce_ready

    if announce_ready():  # a worker of `serve --workers N`: its supervisor prints the listening line
        print(f"patchbay: worker {os.getpid()} listening ({engine.instance})", file=sys.stderr, flush=True)
    else:
        _banner(engine)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, f: _reload(engine))
    while not stop.wait(2.0):
        if not engine.running:
            print("patchbay: the gateway stopped unexpectedly; see the log in " f"{engine.paths.log_dir}",
                  file=sys.stderr)
            engine.ledger.close()
            return 1
    print("patchbay: stopping (finishing requests in flight)...", file=sys.stderr, flush=True)
    engine.stop()
    return 0


def _banner(engine: Engine) -> None:
    active = engine.config.active
    if engine.runtime.exposed:
        print(f"Patchbay gateway listening on http://{engine.runtime.listen_address} (reachable from other "
              f"machines; on this one: {engine.url})", file=sys.stderr, flush=True)
        print("  warning: not on loopback, so every request (also to `client` backends), /v1/models and /health "
              "need the gateway token; host names clients use must be listed in allowed_hosts ([gateway])",
              file=sys.stderr, flush=True)
    else:
        print(f"Patchbay gateway listening on {engine.url}", file=sys.stderr, flush=True)
    print(f"  config: {engine.config_path}\n  active: {active.backend}"
          f"{' / ' + active.model if active.model else ''}\n  run `patchbay env` for the lines that point "
          "Claude Code here", file=sys.stderr, flush=True)
    if engine.token_source == "file":
        print(f"  note: no OS keychain here, so the gateway token is kept in {engine.paths.token_file} "
              "(readable only by you). Set PATCHBAY_TOKEN to choose it yourself.", file=sys.stderr, flush=True)


def _drain_s() -> float:
    """Seconds requests in flight may go on after SIGTERM: PATCHBAY_DRAIN_S, else 8 (Cloud Run kills
    10 s after SIGTERM by default, Kubernetes 30 s: set it a little below your platform's grace)."""
    try:
        return max(0.0, float(os.environ.get("PATCHBAY_DRAIN_S", "8")))
    except ValueError:
        return 8.0


def _reload(engine: Engine) -> None:
    from app.core import StartError

    try:
        engine.reload()
        print("patchbay: config reloaded", file=sys.stderr, flush=True)
    except StartError as exc:
        print(f"patchbay: config not reloaded: {exc}", file=sys.stderr, flush=True)


def cmd_env(args: argparse.Namespace) -> int:
    from app.config import ConfigError
    from app.config.disk import load_or_create
    from app.host import secrets
    from app.paths import default_paths

    paths = default_paths()
    try:
        paths.ensure()
        config = load_or_create(_config_path(args) or paths.config_file)
    except (ConfigError, OSError) as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    from app.claude.connect import client_url
    from app.cli.claude import print_env

    token, _ = secrets.gateway_token(paths.token_file)
    return print_env(client_url(paths, config), token, args.shell, args.credential)


def cmd_key(args: argparse.Namespace) -> int:
    import getpass

    from app.config import ConfigError
    from app.config.disk import load_or_create
    from app.host import secrets
    from app.paths import default_paths

    paths = default_paths()
    try:
        config = load_or_create(_config_path(args) or paths.config_file)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    b = config.backend(args.backend)
    if b is None:
        print(f'patchbay: there is no backend "{args.backend}" in {config.path}. Configured: '
              f"{', '.join(x.id for x in config.backends)}.", file=sys.stderr)
        return 2
    try:
        if args.action == "set":
            if b.auth != "keyring":
                print(f'patchbay: note: the backend "{b.id}" has auth = "{b.auth}", so it will not use the '
                      'keychain until you set auth = "keyring".', file=sys.stderr)
            key = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass(f"API key for {b.id}: ")
            secrets.set_api_key(b.id, key)
            print(f"Stored the API key for {b.id} in {secrets.store_label()}.")
        elif args.action == "delete":
            secrets.delete_api_key(b.id)
            print(f"Removed the stored API key for {b.id}.")
        else:
            print(f"{b.id}: {'a key is stored' if secrets.get_api_key(b.id) else 'no key stored'}")
    except (secrets.NoKeychainError, secrets.SecretError) as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from app.config import ConfigError
    from app.config.disk import load_config
    from app.paths import default_paths
    from app.units import plural

    path = _config_path(args) or default_paths().config_file
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: OK ({plural(len(config.backends), 'backend')}, active: {config.active.backend})")
    from app.catalog.output_limits import unknown_models

    unknown = unknown_models(config.backends)
    if unknown:
        print("No known output limit for " + ", ".join(f"{b},{m}" for b, m in unknown) + ": their max_tokens goes "
              "out as the client asks (Claude Code asks for up to 128000). Where a server refuses that, set "
              "max_output_tokens for its backend.")
    from app.catalog.unknown_prices import fallback_lines

    for line in fallback_lines(config):
        print(line)
    return 0


def _fast_config(args: list[str]) -> Path | None:
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            return Path(args[i + 1])
        if a.startswith("--config="):
            return Path(a.partition("=")[2])
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    head, rest = split_global_options(argv)
    if rest[:1] == ["claude"] and "--selftest" not in head:
        # everything after our own options belongs to claude, unparsed; a --config written before
        # the command goes with ours
        from app.cli import claude as claude_cli

        config = [a for a in head if a != "--selftest"]
        return claude_cli.run_claude(config + rest[1:])
    if rest[:1] == ["statusline"] and "-h" not in rest and "--help" not in rest and "--selftest" not in argv:
        # run after every Claude Code message: skip building the whole parser (it imports the ledger)
        from app.cli import claude as claude_cli

        return claude_cli.run_statusline(argparse.Namespace(), _fast_config(rest[1:]) or _fast_config(head))
    args = _parser().parse_args(argv)
    if args.selftest or getattr(args, "sub_selftest", False):
        from app.cli.selftest import run

        return run()
    if getattr(args, "run", None) is not None:  # every command sets the function that runs it
        return int(args.run(args))
    if args.command is not None:  # a command group without its subcommand: never the desktop app
        _parser().parse_args([*argv, "--help"])
        return 2
    from app.desktop.extra import missing_gui_modules, no_gui_message

    if missing_gui_modules():
        print(f"patchbay: {no_gui_message(missing_gui_modules())}", file=sys.stderr)
        return 2
    os.environ.setdefault("QT_API", "pyside6")
    from app.desktop.startup import ensure_window_possible

    if not ensure_window_possible():  # no display, or Qt's X11 libraries missing: say so before Qt aborts
        return 2
    from app.gui import run_gui
    from app.paths import default_paths

    _setup_logging(default_paths().log_dir, verbose=False)  # the app's errors and warnings go to patchbay.log too
    return run_gui(args.config)


if __name__ == "__main__":
    sys.exit(main())
