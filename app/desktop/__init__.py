"""The desktop app's parts that are not pages: starting (``startup.py``: is there a display; ``extra.py``: is the
GUI installed), one instance per user (``single_instance.py``, the only Qt here), what survives a restart
(``state.py``, ``pins.py``), start at login (``autostart.py``) and serving on after Quit (``background.py``)."""
