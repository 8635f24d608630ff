"""``patchbay team login list|revoke``: the sign-ins Claude Code's ``/login`` made, and cutting them off.

    patchbay team login list [--user EMAIL] [--json] [--config team.toml]
    patchbay team login revoke SESSION_ID [--config team.toml]     # one sign-in (sgn_…)
    patchbay team login revoke --user EMAIL [--config team.toml]   # every sign-in of a person

A revocation is written to the ledger's database (the shared PostgreSQL with the gateways' config)
and to the audit trail; every instance refuses the sign-in's access tokens within a second and its
refresh token at once. The person can sign in again unless the company's IdP refuses them.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_login_command(tsub: Any) -> None:
    lg = tsub.add_parser("login", help="sign-ins from Claude Code's /login ([team.login]): list, revoke")
    lsub = lg.add_subparsers(dest="login_command", required=True, metavar="{list,revoke}")
    ls = lsub.add_parser("list", help="sign-ins, newest last")
    ls.add_argument("--user", metavar="EMAIL", help="only this person's")
    ls.add_argument("--json", action="store_true", help="print JSON")
    rv = lsub.add_parser("revoke", help="end one sign-in, or all of a person's, on every instance within a second")
    rv.add_argument("id", nargs="?", help="the sign-in's id (sgn_…), as `patchbay team login list` shows it")
    rv.add_argument("--user", metavar="EMAIL", help="revoke every sign-in of this person")
    for p in (ls, rv):
        p.add_argument("--ledger", type=Path, metavar="PATH", help="a SQLite ledger file (default: the config's)")
        p.add_argument("--config", type=Path, dest="key_config", metavar="FILE",
                       help="the gateways' config: its [ledger] says where the sign-ins are")
    lg.set_defaults(run=run_login)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _open(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(sign-in store, team key store for the audit trail, where)."""
    from app.cli.common import open_store
    from app.team.keystore_sqlite import SqliteKeyStore
    from app.team.login.store import SqliteLoginStore

    keys, where = open_store(args)  # the same database the keys and the audit trail live in
    url = getattr(keys, "url", None)
    if url:
        from app.team.login.store_pg import PgLoginStore

        return PgLoginStore(url, _ledger_settings(args)), keys, where
    path = keys.path if isinstance(keys, SqliteKeyStore) else None
    assert path is not None
    return SqliteLoginStore(path), keys, where


def _ledger_settings(args: argparse.Namespace) -> Any:
    from app.cli.common import named_config
    from app.config.disk import load_config
    from app.paths import default_paths

    path = named_config(args) or default_paths().config_file
    return load_config(path).ledger.team


def run_login(args: argparse.Namespace) -> int:
    from app.cli.common import admin_name, fail
    from app.team.keystore import KeyStoreError
    from app.team.login.store import LoginStoreError

    if args.login_command == "revoke" and bool(args.id) == bool(args.user):
        return fail("name one sign-in (its id, sgn_…) or --user EMAIL, not both and not neither.")
    try:
        store, keys, where = _open(args)
    except (KeyStoreError, LoginStoreError) as exc:
        return fail(str(exc))
    try:
        if args.login_command == "list":
            rows = store.sessions(args.user.strip().lower() if args.user else None)
            if args.json:
                print(json.dumps([{"id": s.id, "user": s.user, "groups": list(s.groups), "created_at": s.created_at,
                                   "refreshed_at": s.refreshed_at, "revoked_at": s.revoked_at,
                                   "revoked_by": s.revoked_by, "revoked_why": s.revoked_why} for s in rows], indent=2))
            for s in [] if args.json else rows:
                state = f"revoked {_when(s.revoked_at)} ({s.revoked_why})" if s.revoked_at else "active"
                print(f"{s.id}  {s.user}  groups {','.join(s.groups) or '-'}  since {_when(s.created_at)}  {state}")
            return 0
        actor = admin_name()
        revoked = store.revoke(session_id=args.id, user=args.user.strip().lower() if args.user else None, by=actor,
                               why=f"revoked by {actor}")
        for s in revoked:
            keys.record(actor, "login.revoked", s.id, {"user": s.user})
        if not revoked:
            return fail(f"no active sign-in {'of ' + args.user if args.user else args.id} in {where}.")
        print(f"Revoked {len(revoked)} sign-in(s) in {where}: "
              f"{', '.join(s.id + ' (' + s.user + ')' for s in revoked)}. Every gateway refuses them within a second.")
        return 0
    except (KeyStoreError, LoginStoreError) as exc:
        return fail(str(exc))
    finally:
        store.close()
        keys.close()
