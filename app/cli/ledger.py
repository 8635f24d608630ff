"""``patchbay ledger check`` and ``patchbay ledger migrate --to postgresql://…``.

``check`` says which ledger this Patchbay uses, whether it answers, at which schema version, and
how many rows wait in the local spool. ``migrate`` copies the local SQLite history into a
PostgreSQL ledger in batches through the same store the gateway writes with: rows are idempotent
on ``request_id``, so running it again (after an interruption, or twice) copies only what is not
there yet, and the rollups count each row once. It shows progress on stderr.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from app.ledger.schema import SCHEMA_VERSION, LedgerError
from app.ledger.store import COUNT_COLUMNS, ROW_COLUMNS, Prepared
from app.paths import Paths

BATCH = 5000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, dest="sub_config", help="config file")
    sub = p.add_subparsers(dest="ledger_command", required=True)
    sub.add_parser("check", help="which ledger is in use, whether it answers, and its schema version")
    m = sub.add_parser("migrate", help="copy the local SQLite history into a PostgreSQL ledger (resumable)")
    m.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host:5432/db (no password in it)")
    m.add_argument("--from", dest="source", type=Path, help="the SQLite ledger (default: this Patchbay's)")


def run(args: argparse.Namespace, paths: Paths, config_path: Path | None, *, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> int:
    from app.config import ConfigError
    from app.config.disk import load_config

    cfg_file = config_path or paths.config_file
    try:
        cfg = load_config(cfg_file) if cfg_file.exists() else None
    except ConfigError as exc:
        print(f"patchbay: {exc}", file=err)
        return 2
    if args.ledger_command == "check":
        return check(cfg.ledger if cfg else None, paths, out, err)
    return migrate(args.source or paths.ledger_file, args.to, cfg.ledger.team if cfg else None, out, err)


def check(settings: object, paths: Paths, out: TextIO, err: TextIO) -> int:
    from app.config import LedgerSettings
    from app.ledger.opener import spool_path

    ls = settings if isinstance(settings, LedgerSettings) else LedgerSettings()
    url = ls.team.url
    if url is None:
        path = paths.ledger_file
        print(f"ledger: the SQLite file {path}", file=out)
        if not path.exists():
            print("  not created yet: it appears when the gateway first starts.", file=out)
            return 0
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            conn.close()
        except sqlite3.Error as exc:
            print(f"  cannot be read ({exc}). Move it away to start a new one.", file=err)
            return 1
        return _verdict(version, SCHEMA_VERSION, rows, out, err)
    from app.ledger.pg import PG_SCHEMA_VERSION, PgLedgerReader, describe

    print(f"ledger: PostgreSQL at {describe(url)} (on_unreachable = {ls.team.on_unreachable})", file=out)
    spool = spool_path(paths)
    waiting = 0
    if spool.exists():
        try:
            conn = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
            waiting = int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
            conn.close()
        except sqlite3.Error:
            pass
    if waiting:
        print(f"  {waiting:,} usage rows wait in the local spool {spool}; the gateway writes them once the "
              "database answers.", file=out)
    try:
        reader = PgLedgerReader(url, ls.team)
        try:
            version = reader.check()
            rows = reader.count() if version else 0
        finally:
            reader.close()
    except LedgerError as exc:
        msg = str(exc)
        if msg.startswith("No usage has been recorded yet"):
            print("  reachable, but empty: the first gateway to start sets the schema up.", file=out)
            return 0
        print(f"  {msg}", file=err)
        return 1
    return _verdict(version, PG_SCHEMA_VERSION, rows, out, err)


def _verdict(version: int, known: int, rows: int, out: TextIO, err: TextIO) -> int:
    if version > known:
        print(f"  schema {version}: written by a newer Patchbay (this one knows up to {known}). Update Patchbay.",
              file=err)
        return 1
    if version < known:
        print(f"  schema {version} (this Patchbay upgrades it to {known} when the gateway starts); {rows:,} requests.",
              file=out)
        return 0
    print(f"  reachable, schema {version} (current); {rows:,} requests.", file=out)
    return 0


def migrate(source: Path, url: str, team: object, out: TextIO, err: TextIO) -> int:
    from app.config.ledger import TeamLedger
    from app.ledger.pg import PgStore, describe

    if not url.startswith(("postgresql://", "postgres://")):
        print("patchbay: --to takes a PostgreSQL address, e.g. postgresql://patchbay@db.internal:5432/patchbay.",
              file=err)
        return 2
    if not source.exists():
        print(f"patchbay: there is no SQLite ledger at {source} to copy.", file=err)
        return 1
    store = PgStore(url, team if isinstance(team, TeamLedger) else TeamLedger())
    try:
        store.open()
    except LedgerError as exc:
        print(f"patchbay: {exc}", file=err)
        return 1
    except Exception as exc:
        print(f"patchbay: cannot reach PostgreSQL at {describe(url)} ({str(exc).strip().splitlines()[0]}). Check "
              "the address, and [ledger] password.", file=err)
        return 1
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        have = {r[1] for r in src.execute("PRAGMA table_info(requests)")}
        # a column an older file lacks: NULL, or "not interrupted" for the flag (NOT NULL in PostgreSQL)
        cols = ", ".join(f"r.{c}" if c in have else ("0" if c == "interrupted" else "NULL") for c in ROW_COLUMNS)
        has_bodies = bool(src.execute("SELECT 1 FROM sqlite_master WHERE name = 'bodies'").fetchone())
        total = int(src.execute("SELECT count(*) FROM requests").fetchone()[0])
        body_cols = ", b.encoding, b.request, b.response" if has_bodies else ", NULL, NULL, NULL"
        join = " LEFT JOIN bodies b ON b.request_id = r.request_id" if has_bodies else ""
        copied = seen = 0
        last_id = 0
        t0 = time.monotonic()
        while True:
            rows = src.execute(f"SELECT r.id, {cols}{body_cols} FROM requests r{join} WHERE r.id > ? ORDER BY r.id "
                               "LIMIT ?", (last_id, BATCH)).fetchall()
            if not rows:
                break
            last_id = rows[-1][0]
            batch = []
            for r in rows:
                row = tuple(r[1:1 + len(ROW_COLUMNS)])
                enc, req, resp = r[1 + len(ROW_COLUMNS):]
                body = (req, resp) if enc == "zlib" else None
                batch.append(Prepared(row, body))
            copied += len(store.write(batch))
            seen += len(rows)
            rate = seen / max(1e-6, time.monotonic() - t0)
            print(f"\r  {seen:,} / {total:,} rows ({seen * 100 // max(1, total)}%), {copied:,} new, "
                  f"{rate:,.0f} rows/s", end="", file=err, flush=True)
        print(file=err)
        counts = 0
        if src.execute("SELECT 1 FROM sqlite_master WHERE name = 'token_counts'").fetchone():
            last_rowid = 0
            while True:  # count_tokens calls: their own table on both sides, never spending
                rows = src.execute(f"SELECT rowid, {', '.join(COUNT_COLUMNS)} FROM token_counts WHERE rowid > ? "
                                   "ORDER BY rowid LIMIT ?", (last_rowid, BATCH)).fetchall()
                if not rows:
                    break
                last_rowid = rows[-1][0]
                counts += len(store.write([Prepared(tuple(r[1:]), count=True) for r in rows]))
    finally:
        src.close()
        store.close()
    print(f"Copied {copied:,} of {total:,} requests from {source} to {describe(url)}"
          + (f" ({total - copied:,} were there already)." if copied < total else ".")
          + (f" {counts:,} count_tokens calls copied too." if counts else ""), file=out)
    print(f'Now set url = "{url}" in the [ledger] section of the config of every gateway.', file=out)
    return 0
