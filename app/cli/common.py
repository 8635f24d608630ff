"""What the command-line front ends share."""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def named_config(args: argparse.Namespace) -> Path | None:
    """The config file the command was given (``--config`` after the subcommand, or the global one
    before it), or None: this machine's default config."""
    given = getattr(args, "key_config", None) or getattr(args, "sub_config", None) or getattr(args, "config", None)
    return Path(given).expanduser() if given else None


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool],
                 footer: Sequence[str] | None = None) -> str:
    """Columns aligned to their widest cell; numbers right-aligned; a rule above the footer."""
    allrows = [list(headers), *[list(r) for r in rows]] + ([list(footer)] if footer else [])
    widths = [max(len(r[i]) for r in allrows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(headers)]
    out += [line(r) for r in rows]
    if footer:
        out.append("  ".join("-" * w for w in widths))
        out.append(line(footer))
    return "\n".join(out)


def fail(text: str) -> int:
    """Say what went wrong on stderr, as ``patchbay: …``; the exit status of a refused command."""
    print(f"patchbay: {text}", file=sys.stderr)
    return 2


def admin_name() -> str:
    """Who runs this admin command, for the audit trail: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def open_store(args: argparse.Namespace) -> tuple[Any, str]:
    """The key store these commands use, and how to name it: ``--ledger PATH`` (a SQLite ledger
    file), else the ledger of the config (``--config FILE``, or the default one when it exists):
    PostgreSQL when its ``[ledger] url`` is set. Raises ``KeyStoreError`` with a sentence."""
    from app.cli.common import named_config
    from app.config import ConfigError
    from app.config.disk import load_config
    from app.ledger.schema import LedgerError
    from app.paths import default_paths
    from app.team.keystore import KeyStoreError
    from app.team.keystore_open import open_key_store
    from app.team.keystore_sqlite import SqliteKeyStore

    paths = default_paths()
    try:
        if args.ledger:
            return SqliteKeyStore(args.ledger), str(args.ledger)
        given = named_config(args)
        config_path = given or paths.config_file
        if not config_path.exists():
            if given:
                raise KeyStoreError(f"there is no config file {config_path}. Name the gateways' config with "
                                    "--config FILE, or a SQLite ledger file with --ledger PATH.")
            return SqliteKeyStore(paths.ledger_file), str(paths.ledger_file)
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise KeyStoreError(f"{exc} (the keys live in the ledger this config names, so fix it first)") from None
        store = open_key_store(config, paths)
        return store, str(getattr(store, "where", None) or paths.ledger_file)
    except LedgerError as exc:
        raise KeyStoreError(str(exc)) from None


def config_path(args: argparse.Namespace) -> Path | None:
    """The config file the command names (after it, or the global ``--config`` before it), or None."""
    return getattr(args, "sub_config", None) or args.config


def setup_logging(log_dir: Path, verbose: bool) -> None:
    """The log file (owner-only, scrubbed) and stderr for this process."""
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
