"""Team mode's Admin API, wired into an engine: the spend-limit store of its ledger, the watcher
that gives admission the current limits, and the ASGI app the gateway's server mounts at
``/v1/organizations/`` (``ProxyRuntime.admin``)."""

from __future__ import annotations

import logging
from typing import Any

from app.admin.api import AdminApi
from app.team.spend_limits_store import LimitWatcher, SpendLimitStore

log = logging.getLogger("patchbay.admin")


def open_limit_store(config: Any, paths: Any) -> SpendLimitStore:
    """The spend limits of ``config``'s ledger: its PostgreSQL when ``[ledger] url`` is set, else its file."""
    team = config.ledger.team
    return SpendLimitStore(url=team.url, team=team) if team.url else SpendLimitStore(path=paths.ledger_file)


def attach(engine: Any) -> LimitWatcher | None:
    """Start reading the spend limits for ``engine``'s admission and serve its Admin API. Returns
    the watcher (stop it with the engine), or None when the store cannot be opened (logged)."""
    try:
        store = open_limit_store(engine.config, engine.paths)
    except Exception as exc:  # e.g. the ledger password's variable is missing: the ledger says so too
        log.warning("The Admin API and its spend limits are off: %s", exc)
        return None
    watcher = LimitWatcher(store)
    try:
        watcher.refresh()  # the caps in force before the first request, when the database answers
    except Exception:
        pass  # the watcher's thread says so and tries again
    watcher.start()
    if engine.admission is not None:
        engine.admission.spend_limits = watcher
    engine.runtime.admin = AdminApi(store, watcher, lambda: engine.config,
                                    lambda: engine.runtime.gateway.snap.team)
    return watcher
