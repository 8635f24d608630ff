"""Backends: the configured list with each one's key and circuit-breaker health, the active
selection (the switch), the models each offers, Test and Fetch models. The Backends page's part;
the toolbar and the tray switch through it too."""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Signal, Slot

from app.bridge.convert import sentence
from app.bridge.data import BackendView, TestOutcome
from app.bridge.engine import EngineApi
from app.bridge.jobs import Jobs
from app.bridge.notices import Notices
from app.catalog.output_limits import output_limit
from app.config import BACKEND_KINDS, ActiveSelection, BackendConfig, Config, ConfigError
from app.events import BackendHealth
from app.proxy.backends.probe import TestResult, is_ollama_url


class Backends(QObject):
    backendsChanged = Signal()
    activeChanged = Signal(str, object)  # backend id, model or None
    modelsListed = Signal(str, list, str)  # backend id, models, error ("" when fine)
    testFinished = Signal(object)  # TestOutcome
    healthChanged = Signal()  # a breaker changed: the tray's colour may follow

    def __init__(self, jobs: Jobs, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._notices = notices
        self._engine: EngineApi | None = None
        self._breakers: dict[str, BackendHealth] = {}  # the gateway's circuit breakers, as last published
        self._models_cache: dict[str, list[str]] = {}

    def attach(self, engine: EngineApi | None) -> None:
        self._engine = engine

    def _config(self) -> Config | None:
        return self._engine.config if self._engine is not None else None

    # ------------------------------------------------------------------ health: the breakers only

    @Slot(object)
    def on_backend_health(self, ev: BackendHealth) -> None:
        """The gateway's breaker for one backend changed; it alone decides what "failing" means.

        The banner (and a tray notification) speaks up when the active backend starts failing:
        the one the user's requests go to. Any other backend shows it on the Backends page and
        with a ⚠ in the switch, as a fallback skipping it does."""
        before = self._breakers.get(ev.backend)
        was_bad = before is not None and before.state != "ok"
        self._breakers[ev.backend] = ev
        if ev.state != "ok" and not was_bad and ev.backend == self.active()[0]:
            text = ev.last_error or "it did not answer"
            self._notices.say("error", f"The backend “{ev.backend}” is failing",
                              f"{text}\nCheck its address and key on the Backends page (Test shows the exact "
                              "answer), or switch to another backend.",
                              action="backends", key=f"health:{ev.backend}", notify=True)
        elif ev.state == "ok" and was_bad:
            self._notices.clear(f"health:{ev.backend}")
        self.backendsChanged.emit()
        self.healthChanged.emit()

    def active_failing(self) -> bool:
        brk = self._breakers.get(self.active()[0])
        return brk is not None and brk.state != "ok"

    # ------------------------------------------------------------------ reads (cheap, GUI thread)

    def backends(self) -> list[BackendView]:
        cfg, eng = self._config(), self._engine
        if cfg is None or eng is None:
            return []
        out = []
        for b in cfg.backends:
            has_key: bool | None = None
            if b.auth == "keyring":
                try:
                    has_key = eng.has_api_key(b.id)
                except Exception:
                    has_key = False
            elif b.env_var:
                has_key = bool(os.environ.get(b.env_var))
            health, err, open_until, failures = "unknown", None, None, 0
            brk = self._breakers.get(b.id)
            if brk is not None:
                health, err, failures = brk.state, brk.last_error, brk.failures
                open_until = brk.open_until if brk.state == "open" else None
            out.append(BackendView(b.id, b.kind, b.base_url, b.auth, tuple(b.models), b.max_output_tokens,
                                   tuple(b.headers), b.local, b.is_local, has_key, health, err, open_until, failures))
        return out

    def backend_config(self, backend_id: str) -> BackendConfig | None:
        cfg = self._config()
        return cfg.backend(backend_id) if cfg else None

    def forget_key_error(self) -> None:
        self._notices.clear("apikey")

    def key_store_label(self) -> str:
        """Where a stored API key goes, in words: the OS keychain, or the private file where none exists."""
        from app.host.secrets import store_label

        return store_label()

    def keychain_available(self) -> bool:
        """Whether the OS has a keychain Patchbay can store keys in (a bare Linux desktop may not)."""
        from app.host.secrets import keychain_available

        return keychain_available()

    def backend_kinds(self) -> tuple[str, ...]:
        return tuple(BACKEND_KINDS)

    def active(self) -> tuple[str, str | None]:
        cfg = self._config()
        if cfg is None:
            return "", None
        return cfg.active.backend, cfg.active.model

    def active_is_local(self) -> bool:
        b = self.backend_config(self.active()[0])
        return b is not None and b.is_local

    def without_output_limit(self, models: list[str]) -> list[str]:
        """Models whose output limit Patchbay does not know (their max_tokens goes out unclamped)."""
        return [m for m in models if output_limit(m) is None]

    def models_for(self, backend_id: str) -> list[str]:
        """Models to offer for a backend: the last list fetched from it, else the configured ones."""
        cached = self._models_cache.get(backend_id)
        b = self.backend_config(backend_id)
        configured = list(b.models) if b else []
        if cached:
            return list(dict.fromkeys(configured + cached)) if not self._is_ollama(b) else cached
        return configured

    def _is_ollama(self, b: BackendConfig | None) -> bool:
        cfg = self._config()
        return b is not None and cfg is not None and is_ollama_url(b.base_url, cfg.ollama.url)

    def route_choices(self) -> list[str]:
        """Targets a [routes] rule can name: each backend alone, then each of its models."""
        cfg = self._config()
        out: list[str] = []
        for b in (cfg.backends if cfg else ()):
            out.append(b.id)
            out += [f"{b.id},{m}" for m in (tuple(b.models) or tuple(self.models_for(b.id)))]
        return list(dict.fromkeys(out))

    @Slot(list)
    def on_ollama_models(self, names: list[str]) -> None:
        """What the local Ollama has installed now: the Ollama backends offer exactly that."""
        cfg = self._config()
        if cfg is None:
            return
        for b in cfg.backends:
            if is_ollama_url(b.base_url, cfg.ollama.url) and self._models_cache.get(b.id) != names:
                self._models_cache[b.id] = names
                self.modelsListed.emit(b.id, names, "")

    # ------------------------------------------------------------------ actions

    def switch(self, backend: str, model: str | None = None) -> bool:
        """Send the next requests to ``backend`` (and ``model``); saved to the config file."""
        if self._engine is None:
            return False
        if (backend, model) == self.active():
            return True
        try:
            self._engine.switch(backend, model)
        except Exception as exc:
            self._notices.say("error", f"Could not switch to “{backend}”", sentence(exc), key="switch")
            self.activeChanged.emit(*self.active())  # put the controls back
            return False
        self._notices.clear("switch")
        self.activeChanged.emit(*self.active())
        return True

    def save_backends(self, backends: list[BackendConfig], active: ActiveSelection | None = None) -> bool:
        if self._engine is None:
            return False
        try:
            self._engine.save_backends(list(backends), active)
        except Exception as exc:
            text = str(exc) if isinstance(exc, ConfigError) else sentence(exc)
            self._notices.say("error", "The backends were not saved", text, key="backends")
            return False
        self._notices.clear("backends")
        keep = {b.id for b in backends}
        self._breakers = {k: v for k, v in self._breakers.items() if k in keep}
        self.backendsChanged.emit()
        self.activeChanged.emit(*self.active())
        return True

    def set_api_key(self, backend_id: str, key: str) -> bool:
        if self._engine is None:
            return False
        try:
            self._engine.set_api_key(backend_id, key)
        except Exception as exc:
            self._notices.say("error", "The API key was not stored", sentence(exc), key="apikey", action="backends")
            return False
        self._notices.clear("apikey")
        self.backendsChanged.emit()
        return True

    def test_backend(self, backend: BackendConfig, model: str | None = None) -> None:
        """Send a tiny real request; ``testFinished(TestOutcome)`` follows."""
        if self._engine is None:
            return

        def done(result: TestResult | None, error: BaseException | None) -> None:
            if error is not None or result is None:
                out = TestOutcome(backend.id, False, None, None, sentence(error) if error else "No answer.")
            else:
                out = TestOutcome(backend.id, result.ok, result.ttft_ms, result.status, result.message)
            self.testFinished.emit(out)

        self._jobs.spawn(self._engine.test_backend(backend, model), done)

    def list_models(self, backend: BackendConfig | str) -> None:
        """Fetch the backend's models; ``modelsListed(id, models, error)`` follows."""
        if self._engine is None:
            return
        b = self.backend_config(backend) if isinstance(backend, str) else backend
        if b is None:
            return

        def done(result: list[str] | None, error: BaseException | None) -> None:
            if error is not None:
                self.modelsListed.emit(b.id, [], sentence(error))
                return
            models = [str(m) for m in (result or [])]
            self._models_cache[b.id] = models
            self.modelsListed.emit(b.id, models, "")

        self._jobs.spawn(self._engine.list_models(b), done)
