"""``patchbay ledger migrate --to URL`` (idempotent, resumable) and ``patchbay ledger check``,
against a real PostgreSQL; and a PostgreSQL schema newer than this Patchbay is refused."""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import psycopg
import pytest

from app.cli import ledger as ledger_cli
from app.config import LedgerSettings
from app.ledger.pg import PG_SCHEMA_VERSION, PgLedgerReader, PgStore
from app.ledger.reader import LedgerReader
from app.ledger.schema import SCHEMA_VERSION, LedgerError
from app.ledger.writer import Ledger
from app.paths import Paths
from tests.unit.test_ledger import KNOWN, PRICES, UTC, at, ev


def cli(paths: Paths, *argv: str) -> tuple[int, str, str]:
    p = argparse.ArgumentParser(prog="patchbay ledger")
    ledger_cli.add_arguments(p)
    args = p.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = ledger_cli.run(args, paths, None, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "config", tmp_path / "data", tmp_path / "logs")
    p.ensure()
    return p


def write(path: Path, events: list) -> None:  # type: ignore[type-arg]
    ledger = Ledger(path, prices=PRICES, settings=LedgerSettings(capture="all"))
    ledger.start()
    for e in events:
        ledger.record(e)
    ledger.close()


def test_migrate_copies_everything_once_and_resumes(paths: Paths, pg_server: object) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    events = [*KNOWN, ev("with-body", at(2026, 1, 7), request_body=b'{"model":"x"}', response_body=b"ok")]
    write(paths.ledger_file, events[:3])
    code, out, err = cli(paths, "migrate", "--to", url)
    assert code == 0, err
    assert "Copied 3 of 3 requests" in out and "3 / 3 rows (100%)" in err
    write(paths.ledger_file, events[3:])  # more history since (or the first run was interrupted)
    code, out, err = cli(paths, "migrate", "--to", url)
    assert code == 0 and "Copied 3 of 6 requests" in out and "3 were there already" in out
    code, out, _ = cli(paths, "migrate", "--to", url)
    assert code == 0 and "Copied 0 of 6" in out
    with LedgerReader(paths.ledger_file, tz=UTC) as a:
        b = PgLedgerReader(url, tz=UTC)
        try:
            for by in ("day", "backend", "model", "session"):
                assert a.totals(None, None, by) == b.totals(None, None, by)  # type: ignore[arg-type]
            assert a.top_sessions(0) == b.top_sessions(0)
            assert a.request_detail("with-body") == b.request_detail("with-body")
            assert b.count() == 6
        finally:
            b.close()


def test_migrate_keeps_interrupted_flags_and_count_tokens_calls_apart(paths: Paths, pg_server: object) -> None:
    url = pg_server.create_db()  # type: ignore[attr-defined]
    cut = dataclasses.replace(ev("cut", at(2026, 1, 5)), interrupted=True)
    count = dataclasses.replace(ev("count", at(2026, 1, 5, 1)), endpoint="count_tokens")
    write(paths.ledger_file, [KNOWN[0], cut, count])
    code, out, err = cli(paths, "migrate", "--to", url)
    assert code == 0, err
    assert "Copied 2 of 2 requests" in out and "1 count_tokens calls copied too" in out
    b = PgLedgerReader(url, tz=UTC)
    try:
        assert sorted((r.request_id, r.interrupted) for r in b.requests()) == [(KNOWN[0].request_id, False),
                                                                                ("cut", True)]
        assert b.token_counts() == 1
    finally:
        b.close()


def test_migrate_says_what_is_wrong(paths: Paths) -> None:
    code, _, err = cli(paths, "migrate", "--to", "mysql://x/y")
    assert code == 2 and "PostgreSQL address" in err
    code, _, err = cli(paths, "migrate", "--to", "postgresql://patchbay@127.0.0.1:1/nothing")
    assert code == 1 and "no SQLite ledger" in err
    write(paths.ledger_file, KNOWN[:1])
    code, _, err = cli(paths, "migrate", "--to", "postgresql://patchbay@127.0.0.1:1/nothing")
    assert code == 1 and "cannot reach PostgreSQL at 127.0.0.1:1/nothing" in err and "Traceback" not in err


def test_check_names_the_ledger_and_its_state(paths: Paths, pg_server: object) -> None:
    code, out, _ = cli(paths, "check")
    assert code == 0 and "SQLite file" in out and "not created yet" in out
    write(paths.ledger_file, KNOWN)
    code, out, _ = cli(paths, "check")
    assert code == 0 and f"schema {SCHEMA_VERSION} (current); 5 requests" in out
    url = pg_server.create_db()  # type: ignore[attr-defined]
    paths.config_file.write_text('[[backends]]\nid = "a"\nkind = "anthropic"\nbase_url = "https://api.anthropic.com"\n'
                                 f'auth = "client"\n[ledger]\nurl = "{url}"\non_unreachable = "closed"\n')
    code, out, _ = cli(paths, "check")
    assert code == 0 and "PostgreSQL at 127.0.0.1" in out and "on_unreachable = closed" in out and "empty" in out
    cli(paths, "migrate", "--to", url)
    code, out, _ = cli(paths, "check")
    assert code == 0 and f"schema {PG_SCHEMA_VERSION} (current); 5 requests" in out
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(PG_SCHEMA_VERSION + 1),))
    code, _, err = cli(paths, "check")
    assert code == 1 and "newer Patchbay" in err
    with pytest.raises(LedgerError, match="newer Patchbay.*Update this gateway"):
        PgStore(url).open()  # a gateway refuses to start on it, in a sentence
    paths.config_file.write_text(paths.config_file.read_text().replace(url, "postgresql://p@127.0.0.1:1/x"))
    code, _, err = cli(paths, "check")
    assert code == 1 and "cannot reach" in err and "[ledger] url" in err
