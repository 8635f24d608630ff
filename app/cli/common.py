"""What the command-line front ends share."""

from __future__ import annotations

import argparse
from pathlib import Path


def named_config(args: argparse.Namespace) -> Path | None:
    """The config file the command was given (``--config`` after the subcommand, or the global one
    before it), or None: this machine's default config."""
    given = getattr(args, "key_config", None) or getattr(args, "sub_config", None) or getattr(args, "config", None)
    return Path(given).expanduser() if given else None
