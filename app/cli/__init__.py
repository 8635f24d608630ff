"""The command-line front ends (``app/__main__.py`` dispatches to them): ``claude.py`` (connect, disconnect,
claude, statusline), ``usage.py``, ``ledger.py``, ``team_keys.py`` and ``team_budgets.py`` (``patchbay team …``),
``selftest.py``; ``common.py`` holds what they share."""
