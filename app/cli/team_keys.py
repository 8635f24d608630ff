"""``patchbay team key create|list|revoke``: per-user keys for a team gateway with ``identity = [... "keys"]``.

    patchbay team key create EMAIL [--group G]... [--expires 90d]   # prints the key once, on stdout
    patchbay team key list [--active] [--json]
    patchbay team key revoke ID
    patchbay team audit [--since WHEN] [--json|--csv]
    patchbay team budgets [--json]                                  # app/cli/team_budgets.py

Keys live (as hashes) in the ledger database, so every instance using it refuses a revoked key
within a second. That database is the config's: the shared PostgreSQL ledger when its ``[ledger]
url`` names one (run these with the gateways' config, ``--config FILE``), else this machine's
SQLite usage ledger; ``--ledger PATH`` names a SQLite ledger file instead.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from app.cli.common import admin_name, fail, open_store, render_table
from app.team.wording import audit_summary, parse_expiry, parse_since, when

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-:@]*$")


def add_team_commands(subparsers: Any) -> None:
    """Adds ``patchbay team …`` to the top-level subparsers; ``args.run(args)`` runs it."""
    t = subparsers.add_parser("team", help="team gateway: join one, or issue, list and revoke per-user keys")
    tsub = t.add_subparsers(dest="team_command", required=True, metavar="{join,leave,credential,key,login,audit,budgets}")
    j = tsub.add_parser("join", help="point Claude Code at a team gateway (~/.claude/settings.json; `leave` undoes)")
    j.add_argument("url", help="the team gateway's address, e.g. https://patchbay.corp.example")
    j.add_argument("--key-command", metavar="CMD",
                   help="a command that prints your identity token (e.g. gcloud auth print-identity-token "
                        "--audiences=patchbay); without it, your team key is asked for and kept in the OS keychain (else a private file)")
    j.add_argument("--no-check", action="store_true", help="do not ask the gateway first whether it accepts you")
    j.add_argument("--settings", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    j.set_defaults(run=run_join)
    lv = tsub.add_parser("leave", help="undo `patchbay team join` exactly, and forget the stored team key")
    lv.add_argument("--settings", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    lv.set_defaults(run=run_leave)
    cr = tsub.add_parser("credential", help="print the stored team key (Claude Code's apiKeyHelper runs this)")
    cr.set_defaults(run=run_credential)
    au = tsub.add_parser("audit", help="the admin actions: keys created and revoked, policies loaded")
    au.add_argument("--since", metavar="WHEN", help="7d, 24h, 12w or a date YYYY-MM-DD (UTC); default: all")
    fmt = au.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    au.add_argument("--ledger", type=Path, metavar="PATH",
                    help="a SQLite ledger file holding the audit trail (default: the config's ledger)")
    au.add_argument("--config", type=Path, dest="key_config", metavar="FILE",
                    help="the gateways' config: its [ledger] says where the audit trail is")
    au.set_defaults(run=run_audit)
    from app.cli.team_budgets import add_budgets_command

    add_budgets_command(tsub)
    from app.cli.team_login import add_login_command

    add_login_command(tsub)
    k = tsub.add_parser("key", help="per-user keys (only their hash is stored, in the ledger database)")
    ksub = k.add_subparsers(dest="key_command", required=True, metavar="{create,list,revoke}")
    c = ksub.add_parser("create", help="issue a key for a person and print it once")
    c.add_argument("email", help="the person's e-mail: the name budgets, policy and the ledger use")
    c.add_argument("--group", action="append", default=[], metavar="G",
                   help="a [[team.groups]] name this key's holder belongs to (repeat for several)")
    c.add_argument("--expires", metavar="WHEN", default="never",
                   help="90d, 12w, 24h, a date YYYY-MM-DD (UTC), or never (default)")
    ls = ksub.add_parser("list", help="the keys issued, newest last")
    ls.add_argument("--active", action="store_true", help="only keys that still work")
    ls.add_argument("--json", action="store_true", help="print JSON")
    r = ksub.add_parser("revoke", help="stop a key from working, on every instance within a second")
    r.add_argument("id", help="the key's id, as `patchbay team key list` shows it (key_…)")
    for p in (c, ls, r):
        p.add_argument("--ledger", type=Path, metavar="PATH",
                       help="a SQLite ledger file holding the keys (default: the config's ledger)")
        p.add_argument("--config", type=Path, dest="key_config", metavar="FILE",
                       help="the gateways' config: its [ledger] says where the keys are (PostgreSQL or this "
                            "machine's ledger file)")
    k.set_defaults(run=run)


def _read_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Your team key (pbk_…, from your Patchbay admin): ")
    return sys.stdin.readline()


def run_join(args: argparse.Namespace) -> int:
    from app.claude import settings as cs
    from app.claude import team_join as tj
    from app.host.secrets import NoKeychainError, store_label
    from app.paths import PathError, default_paths

    try:
        url = tj.normalise_url(args.url)
        paths = default_paths()
        paths.ensure()
        if args.key_command:
            credential = tj.run_key_command(args.key_command) if not args.no_check else ""
        else:
            credential = tj.check_key_shape(_read_key())
        offered = tj.check(url, credential) if not args.no_check else None
        if not args.key_command:
            tj.store_key(credential)
        joined = tj.join(paths, url, key_command=args.key_command, settings=args.settings)
    except (tj.JoinError, cs.SettingsFileError, NoKeychainError, PathError) as exc:
        return fail(str(exc))
    res = joined.result
    print(f"Joined: {res.path} now points Claude Code at the team gateway {url}"
          + (f" ({offered})." if offered else "."))
    if res.backup:
        print(f"  the previous file is saved as {res.backup}")
    print("  your credential comes from " + ("your command, run by Claude Code when it needs one."
                                             if args.key_command else f"{store_label()} (`patchbay team credential`)."))
    print("  New Claude Code sessions use it; restart the ones already open. `patchbay team leave` undoes it.")
    return 0


def run_leave(args: argparse.Namespace) -> int:
    from app.claude import settings as cs
    from app.claude import team_join as tj
    from app.paths import PathError, default_paths

    try:
        paths = default_paths()
        result, forgot = tj.leave(paths, settings=args.settings)
    except (cs.SettingsFileError, PathError) as exc:
        return fail(str(exc))
    print(("Left the team gateway: " if result.changed or result.removed_file else "") + result.summary())
    if forgot:
        print("  the stored team key is removed.")
    return 0


def run_credential(args: argparse.Namespace) -> int:
    from app.claude import team_join as tj
    from app.host.secrets import NoKeychainError

    try:
        key = tj.stored_key()
    except NoKeychainError as exc:
        return fail(str(exc))
    if key is None:
        return fail("no team key is stored on this machine. Run `patchbay team join URL` and paste the key your "
                    "Patchbay admin gave you.")
    print(key)
    return 0


def run(args: argparse.Namespace) -> int:
    from app.team.keystore import KeyStoreError

    now = time.time()
    if args.key_command == "create":
        email = args.email.strip()
        if not _EMAIL_RE.match(email):
            print(f"patchbay: {email!r} is not an e-mail address. Write the person's e-mail, "
                  "e.g. patchbay team key create alice@corp.example.", file=sys.stderr)
            return 2
        bad = [g for g in args.group if not _GROUP_RE.match(g)]
        if bad:
            print(f"patchbay: {bad[0]!r} is not a group name. Use the name of a [[team.groups]] section.",
                  file=sys.stderr)
            return 2
        try:
            expires = parse_expiry(args.expires, now)
        except ValueError as exc:
            print(f"patchbay: {exc}", file=sys.stderr)
            return 2
    try:
        store, path = open_store(args)
    except KeyStoreError as exc:
        print(f"patchbay: {exc}", file=sys.stderr)
        return 2
    try:
        if args.key_command == "create":
            record, secret = store.create(email, tuple(dict.fromkeys(args.group)), expires_at=expires,
                                          created_by=admin_name())
            print(secret, flush=True)
            groups = ", ".join(record.groups) or "none (the [[team.groups]] members patterns decide)"
            print(f"Created the team key {record.id} for {record.user} (groups: {groups}; expires: "
                  f"{when(record.expires_at)}).\nThe key above is shown this once and is not stored: hand it to "
                  f"{record.user} now (e.g. for `patchbay team join URL`). Revoke it with "
                  f"`patchbay team key revoke {record.id}`.", file=sys.stderr)
            return 0
        if args.key_command == "list":
            records = [r for r in store.list_keys() if not args.active or r.status(now) == "active"]
            if args.json:
                print(json.dumps([{"id": r.id, "user": r.user, "groups": list(r.groups), "status": r.status(now),
                                   "created_at": r.created_at, "expires_at": r.expires_at,
                                   "revoked_at": r.revoked_at, "created_by": r.created_by,
                                   "revoked_by": r.revoked_by} for r in records], indent=2))
                return 0
            if not records:
                print("No team keys yet. Issue one with `patchbay team key create EMAIL`.")
                return 0
            rows = [("ID", "USER", "GROUPS", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS")] + [
                (r.id, r.user, ",".join(r.groups) or "-", when(r.created_at), when(r.expires_at), r.status(now))
                for r in records]
            print(render_table(rows[0], rows[1:], [False] * len(rows[0])))
            return 0
        if args.key_command == "revoke":
            before = {r.id: r for r in store.list_keys()}.get(args.id)
            revoked = store.revoke(args.id, revoked_by=admin_name())
            if revoked is None:
                print(f"patchbay: there is no team key {args.id!r} in {path}. `patchbay team key list` shows "
                      "the ids.", file=sys.stderr)
                return 2
            if before is not None and before.revoked_at is not None:
                print(f"The team key {revoked.id} ({revoked.user}) was already revoked on "
                      f"{when(revoked.revoked_at)}.")
            else:
                print(f"Revoked the team key {revoked.id} ({revoked.user}). Every gateway using {path} refuses it "
                      "within a second.")
            return 0
    except KeyStoreError as exc:
        return fail(str(exc))
    finally:
        store.close()
    return 2


def run_audit(args: argparse.Namespace) -> int:
    import csv

    from app.team.keystore import KeyStoreError

    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        return fail(str(exc))
    try:
        store, _where = open_store(args)
    except KeyStoreError as exc:
        return fail(str(exc))
    try:
        entries = store.audit(since=since)
    except KeyStoreError as exc:
        return fail(str(exc))
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
                           "detail": e.detail} for e in entries], indent=2))
        return 0
    if args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["seq", "at_utc", "actor", "action", "subject", "detail"])
        for e in entries:
            w.writerow([e.seq, when(e.at), e.actor, e.action, e.subject, json.dumps(e.detail, sort_keys=True)])
        return 0
    if not entries:
        print("No admin actions recorded" + (" in that period." if since else " yet."))
        return 0
    for e in entries:
        print(f"{when(e.at)}  {e.actor}  {e.action}  {e.subject}  {audit_summary(e.action, e.detail)}")
    return 0
