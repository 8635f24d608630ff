"""Command line: ``patchbay`` (desktop app), ``patchbay serve``, ``patchbay env``, ``patchbay usage``, ..."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    from app.cli import serve, setup
    from app.cli.common import config_path

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
    s.set_defaults(run=serve.cmd_serve)

    e = sub.add_parser("env", help="print the shell lines that point Claude Code at the gateway")
    e.add_argument("--config", type=Path, dest="sub_config")
    e.add_argument("--shell", choices=["posix", "fish", "powershell"], default="posix")
    e.add_argument("--credential", choices=["auto", "own", "token"], default="auto",
                   help="which credential Claude Code sends (default auto: your own login or key if Patchbay finds "
                        "one, else Patchbay's token)")
    e.set_defaults(run=setup.cmd_env)

    u = sub.add_parser("usage", help="what requests cost, from the usage ledger")
    from app.cli import usage as usage_cli

    usage_cli.add_arguments(u)
    u.set_defaults(run=lambda a: usage_cli.run(a, default_paths(), config_path=config_path(a)))

    k = sub.add_parser("key", help="store or remove a backend's API key (the OS keychain, else a private file)")
    k.add_argument("action", choices=["set", "delete", "status"])
    k.add_argument("backend", help="the backend id from the config")
    k.add_argument("--config", type=Path, dest="sub_config")
    k.set_defaults(run=setup.cmd_key)

    c = sub.add_parser("check", help="check the config file and say what is wrong with it")
    c.add_argument("--config", type=Path, dest="sub_config")
    c.set_defaults(run=setup.cmd_check)

    from app.cli import claude as claude_cli

    cn = sub.add_parser("connect", help="point Claude Code at the gateway in ~/.claude/settings.json (keeps everything "
                                        "else)")
    claude_cli.add_connect_arguments(cn)
    cn.set_defaults(run=lambda a: claude_cli.run_connect(a, config_path(a)))
    d = sub.add_parser("disconnect", help="put ~/.claude/settings.json back as it was before `patchbay connect`")
    d.add_argument("--config", type=Path, dest="sub_config")
    d.add_argument("--remove-model", action="store_true",
                   help='also remove a "model": "backend,model" that Claude Code\'s /model saved (Anthropic would '
                        "refuse that name)")
    d.set_defaults(run=lambda a: claude_cli.run_disconnect(a, config_path(a)))
    claude_cli.add_claude_arguments(sub.add_parser(
        "claude", help="start Claude Code through the gateway for this session only: "
                       "patchbay claude [--backend B [--model M]] [claude args…]"))
    from app.cli import ledger as ledger_cli

    lg = sub.add_parser("ledger", help="the usage ledger: check it, or migrate it to PostgreSQL")
    ledger_cli.add_arguments(lg)
    lg.set_defaults(run=lambda a: ledger_cli.run(a, default_paths(), config_path(a)))
    sl = sub.add_parser("statusline", help="one line for Claude Code's statusLine setting (reads its JSON on stdin)")
    sl.add_argument("--config", type=Path, dest="sub_config")
    sl.set_defaults(run=lambda a: claude_cli.run_statusline(a, config_path(a)))
    from app.cli.team_keys import add_team_commands

    add_team_commands(sub)

    _global_options_after_each_command(sub)
    return p


def _global_options_after_each_command(sub: Any) -> None:
    """``--config`` and ``--selftest`` work after every command too: ``patchbay usage --json --config F``."""
    for name, sp in sub.choices.items():
        if not any("--config" in a.option_strings for a in sp._actions):
            sp.add_argument("--config", type=Path, dest="sub_config", help="config file")
        if name != "claude" and not any("--selftest" in a.option_strings for a in sp._actions):
            sp.add_argument("--selftest", action="store_true", dest="sub_selftest", help=argparse.SUPPRESS)


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
    from app.cli.common import setup_logging
    from app.gui import run_gui
    from app.paths import default_paths

    setup_logging(default_paths().log_dir, verbose=False)  # the app's errors and warnings go to patchbay.log too
    return run_gui(args.config)


if __name__ == "__main__":
    sys.exit(main())
