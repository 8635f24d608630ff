"""Claude Code on this machine: its settings, its credential, its status line, and a team's sign-up.

``settings.py`` (``~/.claude/settings.json`` edited safely, with ``jsonspans.py``), ``connect.py`` (connect and
launch), ``auth.py`` (which credential it sends), ``statusline.py`` + ``status_cache.py``, ``team_join.py``,
and a Claude subscription's usage windows (``subscription_state.py``, ``subscription_usage.py``,
``subscription_windows.py``).
"""
