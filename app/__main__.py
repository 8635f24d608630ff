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

    s = sub.add_parser("serve", help="run the gateway headless (no window)")
    s.add_argument("--config", type=Path, dest="sub_config", help="config file")
    s.add_argument("--host", help="address to listen on (default from the config: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (0 picks a free one)")
    s.add_argument("--quiet", action="store_true", help="do not print a line per request")

    e = sub.add_parser("env", help="print the shell lines that point Claude Code at the gateway")
    e.add_argument("--config", type=Path, dest="sub_config")
    e.add_argument("--shell", choices=["posix", "fish", "powershell"], default="posix")

    u = sub.add_parser("usage", help="what requests cost, from the usage ledger")
    from app.services import usage_cli

    usage_cli.add_arguments(u)

    k = sub.add_parser("key", help="store or remove a backend's API key in the OS keychain")
    k.add_argument("action", choices=["set", "delete", "status"])
    k.add_argument("backend", help="the backend id from the config")
    k.add_argument("--config", type=Path, dest="sub_config")

    c = sub.add_parser("check", help="check the config file and say what is wrong with it")
    c.add_argument("--config", type=Path, dest="sub_config")

    from app.services import claude_cli

    claude_cli.add_connect_arguments(sub.add_parser(
        "connect", help="point Claude Code at the gateway in ~/.claude/settings.json (keeps everything else)"))
    d = sub.add_parser("disconnect", help="put ~/.claude/settings.json back as it was before `patchbay connect`")
    d.add_argument("--config", type=Path, dest="sub_config")
    claude_cli.add_claude_arguments(sub.add_parser(
        "claude", help="start Claude Code through the gateway for this session only: "
                       "patchbay claude [--backend B [--model M]] [claude args…]"))
    from app.services import ledger_cli

    ledger_cli.add_arguments(sub.add_parser("ledger", help="the usage ledger: check it, or migrate it to PostgreSQL"))
    sl = sub.add_parser("statusline", help="one line for Claude Code's statusLine setting (reads its JSON on stdin)")
    sl.add_argument("--config", type=Path, dest="sub_config")
    return p


def _config_path(args: argparse.Namespace) -> Path | None:
    return getattr(args, "sub_config", None) or args.config


def _setup_logging(log_dir: Path, verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(log_dir / "patchbay.log", maxBytes=5_000_000, backupCount=3,
                                                  encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError:
        pass
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(logging.WARNING if not verbose else logging.INFO)
    sh.setFormatter(logging.Formatter("patchbay: %(message)s"))
    root.addHandler(sh)


def cmd_serve(args: argparse.Namespace) -> int:
    from app.core import Engine, StartError, finished_line
    from app.events import RequestFinished

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
                print(finished_line(ev), file=sys.stderr, flush=True)  # type: ignore[arg-type]

        engine.hub.add(show)
    try:
        engine.start()
    except StartError as exc:
        engine.ledger.close()
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    active = engine.config.active
    print(f"Patchbay gateway listening on {engine.url}", file=sys.stderr, flush=True)
    print(f"  config: {engine.config_path}\n  active: {active.backend}"
          f"{' / ' + active.model if active.model else ''}\n  run `patchbay env` for the lines that point "
          "Claude Code here", file=sys.stderr, flush=True)
    if engine.token_source == "file":
        print(f"  note: no OS keychain here, so the gateway token is kept in {engine.paths.token_file} "
              "(readable only by you). Set PATCHBAY_TOKEN to choose it yourself.", file=sys.stderr, flush=True)
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


def _drain_s() -> float:
    """Seconds requests in flight may go on after SIGTERM: PATCHBAY_DRAIN_S, else 8 (Cloud Run kills
    10 s after SIGTERM by default, Kubernetes 30 s: set it a little below your platform's grace)."""
    try:
        return max(0.0, float(os.environ.get("PATCHBAY_DRAIN_S", "8")))
    except ValueError:
        return 8.0


def _reload(engine: object) -> None:
    from app.core import StartError

    try:
        engine.reload()  # type: ignore[attr-defined]
        print("patchbay: config reloaded", file=sys.stderr, flush=True)
    except StartError as exc:
        print(f"patchbay: config not reloaded: {exc}", file=sys.stderr, flush=True)


def cmd_env(args: argparse.Namespace) -> int:
    from app.config import ConfigError, load_or_create
    from app.paths import default_paths
    from app.services import secrets

    paths = default_paths()
    paths.ensure()
    try:
        config = load_or_create(_config_path(args) or paths.config_file)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    from app.services.claude_code import client_url

    token, _ = secrets.gateway_token(paths.token_file)
    url = client_url(paths, config)
    pairs = [("ANTHROPIC_BASE_URL", url), ("ANTHROPIC_AUTH_TOKEN", token)]
    for name, value in pairs:
        if args.shell == "fish":
            print(f"set -gx {name} {value}")
        elif args.shell == "powershell":
            print(f'$env:{name} = "{value}"')
        else:
            print(f"export {name}={value}")
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    import getpass

    from app.config import ConfigError, load_or_create
    from app.paths import default_paths
    from app.services import secrets

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
            print(f"Stored the API key for {b.id} in the OS keychain.")
        elif args.action == "delete":
            secrets.delete_api_key(b.id)
            print(f"Removed the API key for {b.id} from the OS keychain.")
        else:
            print(f"{b.id}: {'a key is stored' if secrets.get_api_key(b.id) else 'no key stored'}")
    except (secrets.NoKeychainError, secrets.SecretError) as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from app.config import ConfigError, load_config
    from app.paths import default_paths

    path = _config_path(args) or default_paths().config_file
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: OK ({len(config.backends)} backends, active: {config.active.backend})")
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
    if argv[:1] == ["claude"]:  # everything after our own options belongs to claude, unparsed
        from app.services import claude_cli

        return claude_cli.run_claude(argv[1:])
    if argv[:1] == ["statusline"] and "-h" not in argv and "--help" not in argv:
        # run after every Claude Code message: skip building the whole parser (it imports the ledger)
        from app.services import claude_cli

        return claude_cli.run_statusline(argparse.Namespace(), _fast_config(argv[1:]))
    args = _parser().parse_args(argv)
    if args.selftest:
        from app.selftest import run

        return run()
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "env":
        return cmd_env(args)
    if args.command == "usage":
        from app.paths import default_paths
        from app.services import usage_cli

        return usage_cli.run(args, default_paths())
    if args.command == "ledger":
        from app.paths import default_paths
        from app.services import ledger_cli

        return ledger_cli.run(args, default_paths(), _config_path(args))
    if args.command == "key":
        return cmd_key(args)
    if args.command == "check":
        return cmd_check(args)
    if args.command in ("connect", "disconnect", "statusline"):
        from app.services import claude_cli

        run = {"connect": claude_cli.run_connect, "disconnect": claude_cli.run_disconnect,
               "statusline": claude_cli.run_statusline}[args.command]
        return run(args, _config_path(args))
    from app.gui_extra import missing_gui_modules, no_gui_message

    if missing_gui_modules():
        print(f"patchbay: {no_gui_message(missing_gui_modules())}", file=sys.stderr)
        return 2
    os.environ.setdefault("QT_API", "pyside6")
    from app.gui import run_gui

    return run_gui(args.config)


if __name__ == "__main__":
    sys.exit(main())
