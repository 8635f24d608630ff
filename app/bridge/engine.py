"""What the bridge needs from the engine (:class:`app.core.Engine`), as a typed interface.

The bridge parts hold an ``EngineApi`` while the gateway runs and ``None`` otherwise; they never
guess at attributes. ``Bridge`` builds the engine through an ``EngineFactory`` (tests and tools
may give another), and mypy checks that :class:`app.core.Engine` satisfies this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from app.budgets.limits import BudgetGuard
from app.budgets.session_caps import SessionCaps
from app.catalog.prices import PriceBook
from app.claude.settings import ConnectResult, DisconnectResult, Status
from app.config import ActiveSelection, BackendConfig, BudgetConfig, Config, PriceConfig, RoutesConfig
from app.events import EventQueue
from app.ledger.opener import LedgerHealth
from app.ledger.reader import LedgerReader
from app.ledger.writer import Ledger
from app.paths import Paths
from app.proxy.backends.probe import TestResult
from app.proxy.routing import Pin
from app.team.keystore import TeamStore


class EngineApi(Protocol):
    config: Config
    config_path: Path
    paths: Paths
    events: EventQueue  # what the gateway publishes, drained by the live part
    prices: PriceBook
    ledger: Ledger
    reader: LedgerReader
    budgets: BudgetGuard
    session_caps: SessionCaps  # per-session cost caps (app/budgets/session_caps.py)

    @property
    def team_store(self) -> TeamStore | None:
        """The issued keys and the audit trail (the ledger database): in team mode, and on an admin's app
        whose [ledger] url is the team's PostgreSQL; None otherwise."""
        ...

    # life cycle
    @property
    def url(self) -> str: ...
    @property
    def running(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...

    # the ledger (a team's PostgreSQL can be away: rows wait in the spool)
    def ledger_health(self) -> LedgerHealth: ...
    # a Claude subscription's last known usage windows per backend (SubscriptionLimits fields)
    def subscription_windows(self) -> Mapping[str, Mapping[str, object]]: ...

    # routing
    def switch(self, backend: str, model: str | None) -> None: ...
    def pin_session(self, session_id: str, backend: str, model: str | None) -> None: ...
    def unpin_session(self, session_id: str) -> None: ...
    @property
    def pins(self) -> dict[str, Pin]: ...

    # editing the config
    def save_backends(self, backends: list[BackendConfig], active: ActiveSelection | None = None) -> None: ...
    def save_settings(self, *, port: int | None = None, budgets: list[BudgetConfig] | None = None,
                      capture: str | None = None, routes: RoutesConfig | None = None,
                      ollama_url: str | None = None, prices: list[PriceConfig] | None = None) -> None: ...
    def reload(self) -> bool: ...

    # secrets
    def set_api_key(self, backend_id: str, key: str) -> None: ...
    def has_api_key(self, backend_id: str) -> bool: ...
    def gateway_token(self) -> str: ...
    def regenerate_token(self) -> str: ...

    # Claude Code
    def claude_code_env(self, credential: str = "auto") -> dict[str, str]: ...
    def claude_code_credential(self, credential: str = "auto") -> str: ...
    def claude_code_status(self) -> Status: ...
    def connect_claude_code(self, *, nonessential: bool = False, aliases: dict[str, str] | None = None,
                            statusline: bool = False, credential: str = "auto") -> ConnectResult: ...
    def disconnect_claude_code(self) -> DisconnectResult: ...

    # probing backends
    async def test_backend(self, backend: BackendConfig, model: str | None = None) -> TestResult: ...
    async def list_models(self, backend: BackendConfig) -> list[str]: ...


class EngineFactory(Protocol):
    def __call__(self, config_path: Path | None, *, paths: Paths | None, gui: bool) -> EngineApi: ...
