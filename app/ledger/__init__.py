"""The usage ledger: one row per request, in the SQLite file or the team's PostgreSQL.

``writer.py`` (the ``Ledger`` the gateway writes through, on its own thread), ``reader.py`` (the queries),
``rows.py`` (one row both ways), ``store.py`` (what a store must do), ``sqlite.py`` / ``schema.py`` (the embedded
file), ``pg.py`` / ``pg_revive.py`` (the shared PostgreSQL), ``spool.py`` (rows the shared ledger could not take yet),
``opener.py`` (which ledger this Patchbay uses).
"""
