"""``open_key_store``: the team key store that goes with the ledger (the one place that knows both stores).

The stores import what they share from ``keystore.py``; this opener imports the stores, so no store imports its
opener: the same pattern as ``app/ledger/opener.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.team.keystore import TeamStore

if TYPE_CHECKING:
    from app.config import Config
    from app.paths import Paths


def open_key_store(config: Config, paths: Paths) -> TeamStore:
    """The key store of ``config``'s ledger: PostgreSQL when ``[ledger] url`` is set, else the
    SQLite ledger file. Raises ``KeyStoreError`` (or ``LedgerError``) with a sentence."""
    team = config.ledger.team
    if team.url:
        from app.team.keystore_pg import PgKeyStore

        return PgKeyStore(team.url, team)
    from app.team.keystore_sqlite import SqliteKeyStore

    return SqliteKeyStore(paths.ledger_file)
