"""What the command-line front ends share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence


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
