"""Money rules: spending limits, admission with reservations, and what a stream may still spend.

``limits.py`` (each budget's state and the single-user guard), ``admission.py`` + ``store.py`` (the one engine that
admits a request against every limit, on every instance), ``hold_meter.py`` (a stream's hold follows its cost),
``hold_reaper.py`` (holds of a dead instance), ``session_caps.py`` (per-session caps), ``team_usage.py`` (the Team
page's standing per person and group).
"""
