"""``patchbay team budgets``: each person's and group's standing against the team budgets, and the
org-wide ones (``all``, ``backend:ID``), for an admin without the desktop app (the Team page's
Budgets tab, as text).

    patchbay team budgets [--config FILE] [--json]

It reads the config's ``[[budgets]]`` (``each-user``, ``user:EMAIL``, ``group:NAME``, ``all``,
``backend:ID``) and the
ledger that config names (the shared PostgreSQL ledger, or this machine's file), through
``app.budgets.team_usage.budget_rows``: spent this period from the request rows, the limit, the
share used, the state (ok, warn past ``warn_at``, at the limit: blocked, downgraded or warned) and
when the period resets, most used first.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from app.cli.common import render_table
from app.units import fmt_money


def add_budgets_command(tsub: Any) -> None:
    b = tsub.add_parser("budgets", help="each person's and group's spend against the team budgets this period")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--config", type=Path, dest="key_config", metavar="FILE",
                   help="the gateways' config: its [[budgets]] and the ledger its [ledger] names")
    b.set_defaults(run=run_budgets)


def run_budgets(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from app.budgets.team_usage import budget_rows
    from app.cli.common import named_config
    from app.config import ConfigError
    from app.config.disk import load_config
    from app.ledger.opener import open_reader
    from app.ledger.schema import LedgerError
    from app.paths import default_paths

    out = out or sys.stdout
    err = err or sys.stderr
    paths = default_paths()
    config_path = named_config(args) or paths.config_file
    if not config_path.exists():
        print(f"patchbay: there is no config file {config_path}. Name the gateways' config with --config FILE.",
              file=err)
        return 2
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=err)
        return 2
    if not config.budgets:
        print(f"{config_path} has no budgets ([[budgets]] with scope = \"each-user\", \"user:EMAIL\", "
              "\"group:NAME\", \"all\" or \"backend:ID\").", file=out)
        return 0
    try:
        reader = open_reader(config.ledger, paths)
        try:
            rows = budget_rows(reader, config.budgets)
        finally:
            reader.close()
    except (LedgerError, OSError) as exc:
        print(f"patchbay: cannot read the ledger: {exc}", file=err)
        return 2
    except Exception as exc:  # the database's own errors (psycopg), said in a sentence
        print(f"patchbay: cannot read the ledger ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}).",
              file=err)
        return 2
    if args.json:
        json.dump([{"subject": r.subject, "kind": r.kind, "budget": r.budget.label, "period": r.budget.period,
                    "spent_usd": round(r.spent_usd, 6), "limit_usd": r.budget.limit_usd,
                    "used": round(r.fraction, 4), "state": r.word, "requests": r.requests,
                    "period_start": r.period_start, "resets_at": r.resets_at} for r in rows], out, indent=2)
        out.write("\n")
        return 0
    table = [("WHO", "BUDGET", "SPENT", "LIMIT", "USED", "STATE", "RESETS")] + [
        (r.subject, r.budget.label, fmt_money(r.spent_usd), fmt_money(r.budget.limit_usd), f"{r.fraction:.0%}",
         r.word, datetime.fromtimestamp(r.resets_at).strftime("%a %d %b %H:%M")) for r in rows]
    if len(table) == 1:
        print("Nobody has spent anything under the team budgets this period.", file=out)
        return 0
    print(render_table(table[0], table[1:], [i in (2, 3, 4) for i in range(len(table[0]))]), file=out)
    return 0
