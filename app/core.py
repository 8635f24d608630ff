"""The engine: config, secrets, ledger, budgets and the gateway runtime, assembled once.

``patchbay serve`` and the desktop app both run an Engine; the GUI reaches it only through
``app/bridge/`` (see docs/architecture.md). Nothing here imports Qt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.claude import auth as claude_auth
from app.claude import connect as claude_code
from app.claude import settings as claude_settings
from app.config import ActiveSelection, BackendConfig, BudgetConfig, Config, ConfigError, PriceConfig, RoutesConfig
from app.config import disk as cfgmod
from app.events import EventHub, EventQueue, RequestFinished
from app.host import secrets
from app.logs.oneline import one_line
from app.paths import PathError, Paths, default_paths
from app.proxy.backends import probe
from app.proxy.backends.probe import TestResult
from app.proxy.routing import Pin
from app.proxy.server import GatewayStartError, ProxyRuntime

if TYPE_CHECKING:
    from app.ledger.opener import LedgerHealth
    from app.team.keystore import TeamStore

log = logging.getLogger("patchbay")


class StartError(Exception):
    """Patchbay could not start. ``str()`` is a sentence for the user."""


class Engine:
    def __init__(self, config_path: Path | None = None, *, paths: Paths | None = None, gui: bool = False,
                 host: str | None = None, port: int | None = None) -> None:
        from app.budgets.limits import BudgetGuard
        from app.catalog.prices import PriceBook
        from app.ledger.opener import open_reader, open_writer
        from app.ledger.store import (
            default_instance,
            worker_instance,  # a worker of `serve --workers N`: an instance of its own
        )

        self.paths = paths or default_paths()
        try:
            self.paths.ensure()
        except PathError as exc:
            raise StartError(str(exc)) from None
        self.config_path = Path(config_path).expanduser() if config_path else self.paths.config_file
        try:
            config = cfgmod.load_or_create(self.config_path)
        except ConfigError as exc:
            raise StartError(str(exc)) from None
        self._host_override = host
        self._port_override = port
        self.config = self._with_overrides(config)
        self.gui = gui
        self.events = EventQueue()
        self.hub = EventHub()
        self.prices = PriceBook.load(self.config)
        from app.ledger.schema import LedgerError

        self.instance = worker_instance(self.config.ledger.team.instance or default_instance(self.config.gateway.port))
        self.ledger = open_writer(self.config.ledger, self.paths, self.prices, self.instance)
        try:
            self.ledger.start()
            self.reader = open_reader(self.config.ledger, self.paths)
        except LedgerError as exc:
            raise StartError(str(exc)) from None
        self.admission: Any = None  # app.budgets.admission.Admission, made with the first budget
        self._heartbeat: Any = None  # app.budgets.hold_reaper.Heartbeat, with a PostgreSQL ledger
        self.budgets = BudgetGuard(self.config.budgets, self.prices, publish=self.hub.publish, reader=self.reader)
        self.hub.add(self.ledger.sink)
        self.hub.add(self.budgets.sink)
        self._listen_for_usage()
        if gui:
            self.hub.add(self.events.put, deltas=True)
        try:
            self.token, self.token_source = secrets.gateway_token(self.paths.token_file)
        except secrets.SecretError as exc:
            raise StartError(str(exc)) from None
        self._key_store: Any = None
        self._login: Any = None  # [team.login]: Claude Code's /login (app/team/login/)
        self._login_store: Any = None
        from app.proxy.reasoning_store import STORE

        STORE.attach(self.paths.data_dir)  # reasoning that providers need back survives a restart
        self.runtime = ProxyRuntime(self.config, token=self.token, hub=self.hub, admission=self._admission(),
                                    keys=secrets.resolve_backend_key, identity=self._identity_chain(self.config))
        self.runtime.set_routes(self._login.routes() if self._login is not None else {})
        self.runtime.gateway.not_ready = self.not_ready
        self._limits: Any = None  # team mode: the Admin API's spend limits, read again every 0.25 s
        if self.config.team is not None:
            from app.admin.setup import attach

            self._limits = attach(self)
        self.runtime.gateway.session_caps = self.session_caps
        if self.config.team is None and self.config.ledger.team.url:
            self._look_at_team()
        self._setup_metrics()
        self._telemetry: Any = None  # app.team.telemetry.TelemetryIntake, in team mode
        self._setup_telemetry()
        self.status_cache: Any = None
        if self.config.ledger.team.url:
            from app.claude.status_cache import CACHE_NAME, StatusCache

            self.status_cache = StatusCache(self.reader, self.paths.data_dir / CACHE_NAME)
        self.ledger.on_commit = self._committed

    def _listen_for_usage(self) -> None:
        """What follows each finished request besides the ledger and the budgets: a Claude subscription's
        usage windows (for `patchbay usage` and the status line) and the per-session cost caps."""
        from app.budgets.session_caps import SessionCaps
        from app.claude.subscription_state import SubscriptionState, limits_file

        self.subscription = SubscriptionState(limits_file(self.paths.ledger_file.parent))
        self.hub.add(self.subscription.sink)
        self.session_caps = SessionCaps(self.config.budgets, self.prices)  # scope = "session", and the app's
        self.session_caps.seed(self.reader)
        self.hub.add(self.session_caps.sink)

    # ------------------------------------------------------------------ lifecycle

    def _with_overrides(self, config: Config) -> Config:
        gw = config.gateway
        if self._host_override is not None:
            gw = replace(gw, host=self._host_override)
        if self._port_override is not None:
            gw = replace(gw, port=self._port_override)
        return replace(config, gateway=gw)

    def _identity_chain(self, config: Config) -> Any:
        """Team mode: the chain of verifiers ``[team] identity`` lists (issued keys live in the
        ledger database), or None in single-user mode."""
        if config.team is None:
            return None
        from app.team.audit import record_policy
        from app.team.chain import build_chain

        if self._key_store is None:  # issued keys and the audit trail live in the ledger database
            from app.team.keystore import KeyStoreError
            from app.team.keystore_open import open_key_store

            try:
                self._key_store = open_key_store(config, self.paths)
            except KeyStoreError as exc:
                raise StartError(str(exc)) from None
        record_policy(self._key_store, config)
        from app.team.keys import OUTAGE_GRACE_S

        # "open": a key verified before an outage keeps working through it (bounded); "closed": it does not
        grace = OUTAGE_GRACE_S if config.ledger.team.on_unreachable == "open" else 0.0
        from app.team.login.assemble import SignInError, open_sign_in

        try:
            self._login, self._login_store = open_sign_in(config, self.paths, self._login_store, self._key_store)
        except SignInError as exc:
            raise StartError(str(exc)) from None
        return build_chain(config.team, keys=self._key_store if "keys" in config.team.identity else None,
                           keys_outage_grace_s=grace, login=self._login.verifier if self._login else None)

    def _look_at_team(self) -> None:
        """An admin's app: ``[ledger] url`` names the team's PostgreSQL, but this gateway stays
        single-user (no ``[team]``). The Team page reads the keys and the audit trail from there
        (a read-only role is enough); this config is no team policy, so none is recorded."""
        from app.team.keystore import KeyStoreError
        from app.team.keystore_open import open_key_store

        try:
            self._key_store = open_key_store(self.config, self.paths)
        except KeyStoreError as exc:
            log.warning("The Team page cannot read the team ledger: %s", exc)

    @property
    def team_store(self) -> TeamStore | None:
        """The issued keys and the audit trail (in the ledger database): in team mode, and on an
        admin's app whose ledger is the team's PostgreSQL; None otherwise."""
        return self._key_store if self.config.team is not None or self.config.ledger.team.url else None

    def _admission(self) -> Any:
        """Budget admission with reservations in the ledger's database (app/budgets/admission.py)."""
        if not any(b.scope != "session" for b in self.config.budgets) and self.config.team is None:
            return None  # session caps: app/budgets/session_caps.py; a team's caps may come from the Admin API
        team = self.config.ledger.team
        if self.admission is None:
            from app.budgets.admission import Admission
            from app.budgets.store import BudgetStore, PgBudgets, SqliteBudgets

            store: BudgetStore = PgBudgets(team.url, team) if team.url else SqliteBudgets(self.paths.ledger_file)
            self.admission = Admission(self.config.budgets, self.prices, store, instance=self.instance,
                                       on_unreachable=team.on_unreachable,
                                       reserve_output_tokens=team.reserve_output_tokens)
            started = time.time()

            def forget() -> None:  # holds a previous run of this instance left behind (off the start-up path;
                try:  # a hold made since this start expires later than any of those)
                    store.forget_instance(self.instance, started + self.admission.hold_ttl_s - 1.0)
                except Exception:
                    pass

            if isinstance(store, PgBudgets):  # heartbeats: a dead instance's requests are charged within a minute
                from app.budgets.hold_reaper import Heartbeat

                self._heartbeat = Heartbeat(store.connect, self.instance, self.admission.hold_ttl_s)
                self._heartbeat.start()  # its first beat charges what this instance's previous run held
                store.on_revived = self.admission.revived  # PostgreSQL answers again: budgets are checked at once
            else:
                threading.Thread(target=forget, name="patchbay-forget-holds", daemon=True).start()
            self.hub.add(self.admission.sink)  # a finished request's hold counts at its real cost from then on
        else:
            self.admission.reconfigure(self.config.budgets, self.prices, reserve_output_tokens=team.reserve_output_tokens,
                                       on_unreachable=team.on_unreachable)
        return self.admission

    def _setup_metrics(self) -> None:
        from app.catalog.prices import FREE_LOCAL
        from app.proxy.metrics import GatewayMetrics, configured_models

        def cost(ev: RequestFinished) -> float | None:
            return self.prices.cost_of(ev)

        def budgets() -> list[tuple[str, float]]:
            return [(st.budget.label, st.fraction) for st in self.budgets.status()]

        def known(backend: str, model: str) -> bool:  # a model name worth its own label
            if model in configured_models(self.config):
                return True
            price = self.prices.price_for(backend, model)
            return price is not None and price is not FREE_LOCAL  # a local backend "prices" any name

        self.metrics = GatewayMetrics(cost, queue=lambda: self.ledger.queued, spool=lambda: self.ledger.spooled,
                                      budgets=budgets, known=known)
        self.hub.add(self.metrics.sink)
        self.runtime.gateway.metrics = self.metrics.render
        self.runtime.gateway.metrics_public = self.config.metrics.public

    def _setup_telemetry(self) -> None:
        """Team mode: where Claude Code's OTLP export goes (app/team/telemetry.py)."""
        from app.team.telemetry import intake_for

        self._telemetry = intake_for(self.config, self.paths.ledger_file, self._telemetry)
        self.runtime.gateway.telemetry = self._telemetry

    def _committed(self, ids: Sequence[str]) -> None:
        """The ledger's on_commit (its writer thread): these rows are in the ledger now."""
        if self.admission is not None:
            self.admission.settled(ids)
        if self.status_cache is not None:
            self.status_cache.poke(ids)

    def not_ready(self) -> str | None:
        """Why this instance should not get traffic (GET /ready answers 503 with it); None: ready."""
        if self.ledger.degraded:
            return f"{self.ledger.degraded} {self.ledger.spooled} usage rows wait in the local spool."
        adm = self.admission
        if adm is not None and adm.degraded:
            return f"{adm.degraded} Budgets are {'not enforced' if adm.on_unreachable == 'open' else 'refusing requests'} " \
                   f"([ledger] on_unreachable = \"{adm.on_unreachable}\")."
        return None

    def ledger_health(self) -> LedgerHealth:
        """The ledger's state now: where it is, why rows
        wait in the spool and how many, and what budgets do meanwhile. Reads attributes only."""
        from app.ledger.opener import LedgerHealth, describe

        adm = self.admission
        unchecked = adm is not None and adm.degraded is not None
        return LedgerHealth(describe(self.config.ledger, self.paths), self.ledger.degraded, self.ledger.spooled,
                            adm.on_unreachable if unchecked else None, adm.degraded if unchecked else None,
                            bool(getattr(self.ledger.store, "read_only", False)))

    def subscription_windows(self) -> Mapping[str, Mapping[str, object]]:
        """Each backend's last known Claude subscription windows (app/claude/subscription_state.py)."""
        return self.subscription.snapshot()

    def start(self) -> None:
        try:
            self.runtime.start()
        except GatewayStartError as exc:
            raise StartError(str(exc)) from None
        claude_code.write_runtime_file(self.paths, self.url, self.config_path)
        if self.status_cache is not None:
            self.status_cache.start()
        self._restore_pins()

    def stop(self) -> None:
        self.runtime.stop()
        claude_code.remove_runtime_file(self.paths)
        if self._key_store is not None:
            self._key_store.close()
        if self._login_store is not None:
            self._login_store.close()
        if self._telemetry is not None and self._telemetry.store is not None:
            self._telemetry.store.close()
        if self.status_cache is not None:
            self.status_cache.stop()
        self.ledger.close()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._limits is not None:
            self._limits.stop()
        if self.admission is not None:
            self.admission.close()
        from app.proxy.reasoning_store import STORE

        STORE.detach()  # the file closed (a self-test's throwaway home can then go)

    @property
    def url(self) -> str:
        return self.runtime.url

    @property
    def running(self) -> bool:
        return self.runtime.running

    @property
    def paused(self) -> bool:
        return self.runtime.paused

    def pause(self) -> None:
        self.runtime.pause()

    def resume(self) -> None:
        self.runtime.resume()

    # ------------------------------------------------------------------ switching

    def switch(self, backend: str, model: str | None) -> None:
        """Route the next request to ``backend``/``model`` and remember it in the config file."""
        self.runtime.set_active(backend, model)
        try:
            saved = cfgmod.save_active(self.config_path, backend, model)
            self.config = self._with_overrides(saved)
        except (ConfigError, OSError) as exc:
            self.config = self.config.with_active(backend, model)
            raise ConfigError(f"Switched to {backend}, but the choice could not be saved: {exc}") from None

    def pin_session(self, session_id: str, backend: str, model: str | None) -> None:
        self.runtime.pin_session(session_id, backend, model)
        self._save_pins()

    def unpin_session(self, session_id: str) -> None:
        self.runtime.unpin_session(session_id)
        self._save_pins()

    def _save_pins(self) -> None:
        from app.desktop import pins as session_pins

        session_pins.save(self.paths.data_dir / session_pins.FILE_NAME,
                          {sid: (p.backend, p.model) for sid, p in self.runtime.pins.items()})

    def _restore_pins(self) -> None:
        """The pins of the last run (session-pins.json), for backends still configured."""
        from app.desktop import pins as session_pins

        saved = session_pins.load(self.paths.data_dir / session_pins.FILE_NAME, (b.id for b in self.config.backends))
        for sid, (backend, model) in saved.items():
            self.runtime.pin_session(sid, backend, model)

    @property
    def pins(self) -> dict[str, Pin]:
        return self.runtime.pins

    # ------------------------------------------------------------------ editing

    def reload(self) -> bool:
        """Re-read the config file (after an edit by hand) and apply it. False when it holds what
        runs already (e.g. the file as the app itself just saved it)."""
        try:
            config = cfgmod.load_config(self.config_path)
        except ConfigError as exc:
            raise StartError(str(exc)) from None
        if self._with_overrides(config) == self.config:
            return False
        self._apply(config)
        return True

    def _apply(self, config: Config) -> None:
        from app.catalog.prices import PriceBook

        self.config = self._with_overrides(config)
        self.prices = PriceBook.load(self.config)
        self.ledger.reconfigure(self.prices, self.config.ledger)
        self.budgets.reconfigure(self.config.budgets, self.prices)
        self.session_caps.reconfigure(self.config.budgets, self.prices)
        self.runtime.set_admission(self._admission())
        team_changed = (self.config.team != self.runtime.config.team  # on_unreachable: the keys' outage grace
                        or self.config.ledger.team.on_unreachable != self.runtime.config.ledger.team.on_unreachable)
        chain = self._identity_chain(self.config) if team_changed else None
        if not team_changed and self.config.team is not None and self._key_store is not None:
            from app.team.audit import record_policy

            record_policy(self._key_store, self.config)  # new budgets are new policy too
        self.runtime.gateway.metrics_public = self.config.metrics.public
        self.runtime.apply(self.config, identity=chain)
        if chain is not None:
            self.runtime.set_routes(self._login.routes() if self._login is not None else {})
        self._setup_telemetry()

    def save_backends(self, backends: list[BackendConfig], active: ActiveSelection | None = None) -> None:
        ids = [b.id for b in backends]
        if active is None and self.config.active.backend not in ids and backends:
            active = ActiveSelection(backends[0].id, None)
        config = cfgmod.save_backends(self.config_path, backends, active)
        self._apply(config)

    def save_settings(self, *, port: int | None = None, budgets: list[BudgetConfig] | None = None,
                      capture: str | None = None, routes: RoutesConfig | None = None,
                      ollama_url: str | None = None, prices: list[PriceConfig] | None = None) -> None:
        config: Config | None = None
        if ollama_url is not None:
            config = cfgmod.save_section(self.config_path, "ollama", {"url": ollama_url})
        if routes is not None:
            config = cfgmod.save_section(self.config_path, "routes", routes.to_table())
        if port is not None:
            config = cfgmod.save_section(self.config_path, "gateway", {"port": port})
            self._port_override = None
        if budgets is not None:
            config = cfgmod.save_section(self.config_path, "budgets", [
                {"scope": b.scope, "period": b.period, "limit_usd": b.limit_usd, "warn_at": b.warn_at,
                 "action": b.action, **({"blocked_message": b.blocked_message} if b.blocked_message else {})}
                for b in budgets])
        if capture is not None:
            config = cfgmod.save_section(self.config_path, "ledger", {"capture": capture})
        if prices is not None:  # [[prices]]: $ per million tokens (the Prices dialog in Settings)
            config = cfgmod.save_section(self.config_path, "prices", [
                {k: v for k, v in (("model", p.model), ("backend", p.backend), ("input", p.input),
                                   ("output", p.output), ("cache_write", p.cache_write),
                                   ("cache_read", p.cache_read)) if v is not None} for p in prices])
        if config is not None:
            self._apply(config)

    # ------------------------------------------------------------------ secrets

    def set_api_key(self, backend_id: str, key: str) -> None:
        secrets.set_api_key(backend_id, key)
        self.runtime.refresh_keys()

    def has_api_key(self, backend_id: str) -> bool:
        try:
            return bool(secrets.get_api_key(backend_id))
        except secrets.NoKeychainError:
            return False

    def gateway_token(self) -> str:
        return self.token

    def regenerate_token(self) -> str:
        if self.token_source == "env":
            raise secrets.SecretError("The gateway token comes from PATCHBAY_TOKEN; change that variable instead.")
        self.token, self.token_source = secrets.regenerate_token(self.paths.token_file)
        self.runtime.set_token(self.token)
        return self.token

    # ------------------------------------------------------------------ Claude Code

    def claude_code_env(self, credential: str = "auto") -> dict[str, str]:
        """What points Claude Code here: the token in its own header, ANTHROPIC_AUTH_TOKEN only for a
        user without an Anthropic login or key (app/claude/auth.py)."""
        cred = claude_code.credential(self.token)
        return claude_auth.env_values(self.url, self.token, token_as_credential=claude_auth.uses_token(credential, cred),
                                      existing_headers=None)

    def claude_code_credential(self, credential: str = "auto") -> str:
        """One sentence: which credential Claude Code will send through Patchbay after Connect."""
        return claude_auth.describe(credential, claude_code.credential(self.token))

    def claude_code_status(self) -> claude_settings.Status:
        return claude_code.status(self.paths, self.url, self.token)

    def claude_code_connected(self) -> bool:
        return self.claude_code_status().connected

    def connect_claude_code(self, *, nonessential: bool = False, aliases: dict[str, str] | None = None,
                            statusline: bool = False, credential: str = "auto") -> claude_settings.ConnectResult:
        """Put our keys into ~/.claude/settings.json, changing nothing else in it (see claude_settings)."""
        return claude_code.connect(self.paths, self.url, self.token, nonessential=nonessential, aliases=aliases,
                                   statusline=statusline, config_path=self.config_path, choice=credential)

    def disconnect_claude_code(self) -> claude_settings.DisconnectResult:
        return claude_code.disconnect(self.paths, self.url)

    # ------------------------------------------------------------------ probing backends

    async def test_backend(self, backend: BackendConfig, model: str | None = None) -> TestResult:
        """Send a tiny real request through the same adapter the gateway uses."""
        return await probe.test_backend(backend, self.config.gateway, secrets.resolve_backend_key, model)

    async def list_models(self, backend: BackendConfig) -> list[str]:
        """Ask the backend which models it has (see app/proxy/backends/probe.py)."""
        return await probe.list_models(backend, self.config.gateway, secrets.resolve_backend_key,
                                       self.config.ollama.url)


def finished_line(ev: RequestFinished) -> str:
    u = ev.usage
    status = "ok" if ev.error_type is None else f"{ev.status} {ev.error_type}"
    ttft = f"{ev.ttft_ms:.0f}ms" if ev.ttft_ms is not None else "-"
    return one_line(f"{ev.backend}/{ev.model} {status} in={u.input_tokens} out={u.output_tokens} "
            f"cache_r={u.cache_read_input_tokens} cache_w={u.cache_creation_input_tokens} ttft={ttft} "
            f"total={ev.duration_ms:.0f}ms session={(ev.session_id or '-')[:8]}")  # the model is the client's
