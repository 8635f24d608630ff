"""Text that leaves the process: the log file (``file.py``), one line per record (``oneline.py``), and credentials
removed from anything bound for a client, a log or the ledger (``scrub.py``)."""
