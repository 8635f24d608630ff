"""Pick a backend and model for one request.

A ``RoutingTable`` is immutable: switching backend builds a new one and swaps one reference,
so requests in flight finish where they started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Union

from app.config import BackendConfig, Config


@dataclass(frozen=True, slots=True)
class Route:
    backend: str
    model: str  # what the upstream is asked for
    rule: str  # "active" | "explicit" | "pin" | "budget:<label>"
    requested_model: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer instead of a route (a budget block, an unknown backend)."""

    status: int
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class Pin:
    backend: str
    model: str | None = None


@dataclass(frozen=True)
class RoutingTable:
    backends: Mapping[str, BackendConfig]
    active_backend: str
    active_model: str | None
    pins: Mapping[str, Pin] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_config(cls, config: Config, pins: Mapping[str, Pin] | None = None) -> "RoutingTable":
        return cls(
            MappingProxyType({b.id: b for b in config.backends}),
            config.active.backend,
            config.active.model,
            MappingProxyType(dict(pins or {})),
        )

    def with_active(self, backend: str, model: str | None) -> "RoutingTable":
        return RoutingTable(self.backends, backend, model, self.pins)

    def with_pin(self, session_id: str, pin: Pin | None) -> "RoutingTable":
        pins = dict(self.pins)
        if pin is None:
            pins.pop(session_id, None)
        else:
            pins[session_id] = pin
        return RoutingTable(self.backends, self.active_backend, self.active_model, MappingProxyType(pins))

    def model_for(self, backend: BackendConfig, wanted: str | None, requested: str) -> str:
        """The upstream model name: the one chosen, else the request's own for Anthropic-format
        backends (they understand Claude names), else the backend's first listed model."""
        if wanted:
            return wanted
        if backend.kind == "anthropic" or not backend.models:
            return requested
        if requested in backend.models:
            return requested
        return backend.models[0]

    def _named(self, spec: str, requested_model: str, rule: str, source: str) -> Route | Refusal:
        """A route to the ``backend[,model]`` that ``spec`` names, or a refusal naming ``source``."""
        bid, _, model = spec.partition(",")
        bid, model = bid.strip(), model.strip()
        backend = self.backends.get(bid)
        if backend is None:
            return Refusal(
                400,
                "invalid_request_error",
                f"Patchbay has no backend named {bid!r} (from {source}). "
                f"Configured backends: {', '.join(self.backends) or 'none'}.",
            )
        return Route(bid, self.model_for(backend, model or None, requested_model), rule, requested_model)

    def resolve(self, requested_model: str, session_id: str | None, pin_header: str | None = None) -> Route | Refusal:
        # "backend,model" routes explicitly (Claude Code's `/model deepseek,deepseek-chat`).
        if "," in requested_model:
            return self._named(requested_model, requested_model, "explicit", f"the model {requested_model!r}")
        # `x-patchbay-pin: backend[,model]` pins one client (`patchbay claude --backend X` sends it through
        # ANTHROPIC_CUSTOM_HEADERS), so the pin lives exactly as long as that Claude Code process.
        if pin_header:
            return self._named(pin_header, requested_model, "pin",
                               f"the x-patchbay-pin header {pin_header!r}")
        if session_id is not None:
            pin = self.pins.get(session_id)
            if pin is not None and pin.backend in self.backends:
                backend = self.backends[pin.backend]
                return Route(pin.backend, self.model_for(backend, pin.model, requested_model), "pin", requested_model)
        backend = self.backends[self.active_backend]
        return Route(backend.id, self.model_for(backend, self.active_model, requested_model), "active",
                     requested_model)


# Decides whether a routed request may go ahead (budgets). Runs on the gateway's loop: must be quick.
Admission = Callable[[Route], Union[Route, Refusal]]
