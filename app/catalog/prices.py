"""Prices, and the cost of one request.

The shipped table lives in ``app/resources/prices.toml`` (list prices, each with its source and the
date it was taken); a user's ``[[prices]]`` in the config override or extend it. A local backend
costs nothing unless the user gives it a price. A model with no price at all is *unpriced*:
``price_for`` and ``cost`` answer ``None``, never a silent ``0``.

Where budgets are enforced (``fallback``: a ``[team]`` or any ``[[budgets]]``) no model name is free:
one the table does not know (a made-up name, a new alias) is priced at a stated fallback, a
``[[prices]]`` entry with ``model = "*"`` (for its backend, else for any), else the dearest price
known on its backend (its provider's table and the user's prices; for a backend of no known
provider, Anthropic's list prices where it serves Claude (an Anthropic-format, Bedrock or Vertex
backend), else every list-price provider's). Its ``source`` starts with ``FALLBACK_SOURCE`` and
``priced_by`` names it, for the ledger row, ``patchbay check`` and the Team page.

Everything here is plain data and pure functions; lookups are memoised, so the gateway thread
can price a finished request in a few microseconds.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from app.config import BackendConfig, Config, PriceConfig
from app.config.model_ids import DIGIT_DOT as _DIGIT_DOT  # noqa: F401 - canonical_model is part of this module's interface
from app.config.model_ids import canonical_model
from app.config.model_ids import light_model as _light
from app.events import RequestFinished, Usage
from app.paths import RESOURCES

PRICE_TABLE = RESOURCES / "prices.toml"
CACHE_WRITE_FACTOR = 1.25  # × input, where a price gives no cache-write figure
CACHE_READ_FACTOR = 0.1  # × input, where a price gives no cache-read figure
CACHE_WRITE_1H_FACTOR = 2.0  # × input: a 1-hour cache write (Anthropic's price; 5 minutes is 1.25×)
LOCAL_SOURCE = "local backend: free unless you set a price"
CONFIG_SOURCE = "your config.toml [[prices]]"
FALLBACK_SOURCE = "fallback: "  # the start of a fallback price's source
_CLAUDE_KINDS = frozenset({"anthropic", "bedrock", "vertex"})  # backends that serve Claude models
ANY_MODEL = "*"  # a [[prices]] model that prices every name the table does not know


@dataclass(frozen=True, slots=True)
class OffPeak:
    """Cheaper hours: outside the peak windows a request costs ``factor`` × the listed price."""

    factor: float
    peak_utc: tuple[tuple[int, int], ...]  # [start, end) in minutes after midnight UTC
    weekdays_only: bool = True

    def multiplier(self, at: float | None) -> float:
        if at is None:  # time unknown: charge the peak price (an upper bound)
            return 1.0
        t = time.gmtime(at)
        if self.weekdays_only and t.tm_wday >= 5:
            return self.factor
        minute = t.tm_hour * 60 + t.tm_min
        for start, end in self.peak_utc:
            if start <= minute < end:
                return 1.0
        return self.factor


@dataclass(frozen=True, slots=True)
class Rates:
    input: float
    output: float
    cache_write: float
    cache_read: float
    cache_write_1h: float


@dataclass(frozen=True)
class Price:
    """$ per million tokens. ``cache_write`` / ``cache_read`` None: 1.25× / 0.1× input."""

    input: float
    output: float
    cache_write: float | None
    cache_read: float | None
    source: str
    as_of: str
    # Optional refinements (the shipped table uses them; a user's price never does):
    long_prompt_above: int | None = None  # prompts above this many tokens use ``long_prompt``
    long_prompt: Price | None = None
    offpeak: OffPeak | None = None

    def rates(self, usage: Usage | None = None, at: float | None = None) -> Rates:
        """The effective rates for one request (its prompt length and start time)."""
        p = self
        if usage is not None and self.long_prompt is not None and self.long_prompt_above is not None:
            prompt = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            if prompt > self.long_prompt_above:
                p = self.long_prompt
        cw = p.cache_write if p.cache_write is not None else p.input * CACHE_WRITE_FACTOR
        cr = p.cache_read if p.cache_read is not None else p.input * CACHE_READ_FACTOR
        m = self.offpeak.multiplier(at) if self.offpeak is not None else 1.0
        return Rates(p.input * m, p.output * m, cw * m, cr * m, p.input * CACHE_WRITE_1H_FACTOR * m)

    def cost(self, usage: Usage, at: float | None = None) -> float:
        r = self.rates(usage, at)
        hour = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
        return (
            usage.input_tokens * r.input
            + usage.output_tokens * r.output
            + (usage.cache_creation_input_tokens - hour) * r.cache_write
            + hour * r.cache_write_1h
            + usage.cache_read_input_tokens * r.cache_read
        ) / 1_000_000


FREE_LOCAL = Price(0.0, 0.0, 0.0, 0.0, LOCAL_SOURCE, "")


# --------------------------------------------------------------------------- model ids

_OPENROUTER_FREE = re.compile(r":free$")


@dataclass(frozen=True)
class _Index:
    exact: Mapping[str, Price]
    canon: Mapping[str, Price]

    def find(self, model: str) -> Price | None:
        m = model.strip().lower()
        p = self.exact.get(m)
        if p is None:
            p = self.exact.get(_light(m))
        if p is None:
            c = canonical_model(m)
            p = self.canon.get(c)
            if p is None and c.endswith("-0"):  # Anthropic's claude-opus-4-0 is claude-opus-4
                p = self.canon.get(c[:-2])
        return p


def _build_index(entries: Iterable[tuple[Iterable[str], Price]]) -> _Index:
    exact: dict[str, Price] = {}
    canon: dict[str, Price] = {}
    later: list[tuple[str, Price]] = []
    for names, price in entries:
        for name in names:
            low = name.strip().lower()
            exact.setdefault(low, price)
            exact.setdefault(_light(low), price)
            c = canonical_model(low)
            # An undated base name owns its canonical form; a dated snapshot priced differently
            # (gpt-4o-2024-05-13) must not capture every other snapshot of its family.
            if c == _DIGIT_DOT.sub("-", low.rsplit("/", 1)[-1]):
                canon.setdefault(c, price)
            else:
                later.append((c, price))
    for c, price in later:
        canon.setdefault(c, price)
    return _Index(MappingProxyType(exact), MappingProxyType(canon))


# --------------------------------------------------------------------------- the shipped table


@dataclass(frozen=True)
class Provider:
    name: str
    hosts: tuple[str, ...] = ()
    list_price: bool = False
    offpeak: OffPeak | None = None


@dataclass(frozen=True)
class PriceTable:
    providers: Mapping[str, Provider]
    models: tuple[tuple[str, str, tuple[str, ...], Price], ...]  # provider, model, aliases, price

    @classmethod
    def load(cls, path: Path = PRICE_TABLE) -> PriceTable:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RuntimeError(f"The price table {path} cannot be read ({exc}). Reinstall Patchbay.") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "<prices>") -> PriceTable:
        providers: dict[str, Provider] = {}
        for name, t in raw.get("provider", {}).items():
            offpeak = None
            if "offpeak_factor" in t:
                windows = tuple(_parse_window(w, where) for w in t.get("peak_utc", []))
                offpeak = OffPeak(float(t["offpeak_factor"]), windows, bool(t.get("peak_weekdays_only", True)))
            providers[name] = Provider(name, tuple(h.lower() for h in t.get("hosts", [])),
                                       bool(t.get("list_price", False)), offpeak)
        models = []
        for n, t in enumerate(raw.get("model", []), 1):
            prov = t.get("provider")
            if prov not in providers:
                raise RuntimeError(f"{where}: model #{n} ({t.get('model')!r}) names the unknown provider {prov!r}.")
            for key in ("model", "input", "output", "source", "as_of"):
                if key not in t:
                    raise RuntimeError(f"{where}: model #{n} ({t.get('model')!r}) has no {key}.")
            long_t = t.get("long_prompt")
            long_p = None
            long_above = None
            if long_t is not None:
                long_above = int(long_t["above_tokens"])
                long_p = Price(float(long_t["input"]), float(long_t["output"]), _opt(long_t.get("cache_write")),
                               _opt(long_t.get("cache_read")), t["source"], t["as_of"])
            price = Price(float(t["input"]), float(t["output"]), _opt(t.get("cache_write")), _opt(t.get("cache_read")),
                          str(t["source"]), str(t["as_of"]), long_above, long_p, providers[prov].offpeak)
            models.append((prov, str(t["model"]), tuple(str(a) for a in t.get("aliases", [])), price))
        return cls(MappingProxyType(providers), tuple(models))


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _parse_window(w: str, where: str) -> tuple[int, int]:
    m = re.match(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$", w)
    if not m:
        raise RuntimeError(f"{where}: peak window {w!r} is not HH:MM-HH:MM.")
    a, b, c, d = (int(x) for x in m.groups())
    return a * 60 + b, c * 60 + d


# --------------------------------------------------------------------------- the price book


@dataclass(frozen=True)
class PriceBook:
    """Answers "what does this model cost on this backend". Immutable: rebuild on config change."""

    table: PriceTable
    overrides: tuple[PriceConfig, ...] = ()
    backends: Mapping[str, BackendConfig] = field(default_factory=lambda: MappingProxyType({}))
    fallback: bool = False  # price names the table does not know at a stated fallback (module docstring)
    _idx: dict[str, _Index] = field(init=False, repr=False, compare=False)
    _user_any: _Index = field(init=False, repr=False, compare=False)
    _user_by_backend: dict[str, _Index] = field(init=False, repr=False, compare=False)
    _list_providers: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _memo: dict[tuple[str, str], Price | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_provider: dict[str, list[tuple[Iterable[str], Price]]] = {}
        for prov, model, aliases, price in self.table.models:
            by_provider.setdefault(prov, []).append(((model, *aliases), price))
        idx = {p: _build_index(v) for p, v in by_provider.items()}
        user_any = _build_index(((pc.model,), _user_price(pc)) for pc in self.overrides if pc.backend is None)
        user_by_backend: dict[str, _Index] = {}
        for bid in {pc.backend for pc in self.overrides if pc.backend is not None}:
            user_by_backend[bid] = _build_index(
                ((pc.model,), _user_price(pc)) for pc in self.overrides if pc.backend == bid)
        object.__setattr__(self, "_idx", idx)
        object.__setattr__(self, "_user_any", user_any)
        object.__setattr__(self, "_user_by_backend", user_by_backend)
        object.__setattr__(self, "_list_providers",
                           tuple(p.name for p in self.table.providers.values() if p.list_price))
        object.__setattr__(self, "_memo", {})

    @classmethod
    def load(cls, config: Config, table: PriceTable | None = None) -> PriceBook:
        return cls(table if table is not None else PriceTable.load(), tuple(config.prices),
                   MappingProxyType({b.id: b for b in config.backends}),
                   fallback=bool(config.budgets) or config.team is not None)

    # ------------------------------------------------------------------ lookups

    def provider_of(self, backend: BackendConfig | str) -> str | None:
        """Which price-table provider a backend is: by its host, else by its id."""
        b = self._backend(backend)
        if b is not None:
            host = (urlsplit(b.base_url).hostname or "").lower()
            for p in self.table.providers.values():
                if any(host == h or host.endswith("." + h) for h in p.hosts):
                    return p.name
        bid = (b.id if b is not None else str(backend)).lower()
        for name in self.table.providers:
            if bid == name or bid.startswith(name + "-") or bid.startswith(name + "_"):
                return name
        return None

    def price_for(self, backend: BackendConfig | str, model: str) -> Price | None:
        """The price of ``model`` on ``backend``; None when it is unpriced."""
        bid = backend.id if isinstance(backend, BackendConfig) else str(backend)
        key = (bid, model)
        memo = self._memo
        if key in memo:
            return memo[key]
        price = self._lookup(backend, bid, model)
        if len(memo) > 4096:
            memo.clear()
        memo[key] = price
        return price

    def _lookup(self, backend: BackendConfig | str, bid: str, model: str) -> Price | None:
        user_b = self._user_by_backend.get(bid)
        if user_b is not None:
            p = user_b.find(model)
            if p is not None:
                return p
        p = self._user_any.find(model)
        if p is not None:
            return p
        b = self._backend(backend)
        if b is not None and b.is_local:
            return FREE_LOCAL
        provider = self.provider_of(backend)
        idx = self._idx
        if provider is not None and provider in idx:
            p = idx[provider].find(model)
            if p is not None:
                return p
        if provider == "openrouter" and _OPENROUTER_FREE.search(model.strip().lower()):
            return Price(0.0, 0.0, 0.0, 0.0, "OpenRouter ':free' variant", "")
        for lp in self._list_providers:
            if lp == provider or lp not in idx:
                continue
            p = idx[lp].find(_OPENROUTER_FREE.sub("", model))
            if p is not None:
                if provider is not None and p.offpeak is not None:
                    # another seller's schedule does not apply: keep the (upper-bound) peak rate
                    p = Price(p.input, p.output, p.cache_write, p.cache_read, p.source, p.as_of,
                              p.long_prompt_above, p.long_prompt, None)
                return p
        return self.fallback_price(backend) if self.fallback else None

    def fallback_price(self, backend: BackendConfig | str) -> Price | None:
        """What a model the table does not know is charged on ``backend`` (see the module
        docstring); None where nothing is known there at all."""
        bid = backend.id if isinstance(backend, BackendConfig) else str(backend)
        for pc in self.overrides:
            if pc.model == ANY_MODEL and pc.backend == bid:
                return _fallback(_user_price(pc), f'your [[prices]] model = "*" for {bid}')
        for pc in self.overrides:
            if pc.model == ANY_MODEL and pc.backend is None:
                return _fallback(_user_price(pc), 'your [[prices]] model = "*"')
        known = [(pc.model, _user_price(pc)) for pc in self.overrides
                 if pc.model != ANY_MODEL and pc.backend in (None, bid)]
        provider = self.provider_of(backend)
        b = self._backend(backend)
        if provider is not None:
            sellers = [provider]
        elif b is not None and b.kind in _CLAUDE_KINDS and "anthropic" in self._list_providers:
            sellers = ["anthropic"]  # a company gateway or a cloud serving Claude: Claude's prices
        else:
            sellers = list(self._list_providers)
        known += [(m, p) for prov, m, _a, p in self.table.models if prov in sellers]
        if not known:
            return None
        model, dearest = max(known, key=lambda mp: (mp[1].output, mp[1].input))
        return _fallback(dearest, f"the dearest known price on {bid} ({model})")

    def priced_by(self, backend: BackendConfig | str, model: str) -> str | None:
        """The fallback ``model`` was priced at on ``backend`` (a row's ``priced_by``), or None
        when the table or the user's prices know it."""
        p = self.price_for(backend, model)
        return p.source[len(FALLBACK_SOURCE):] if p is not None and p.source.startswith(FALLBACK_SOURCE) else None

    def cost(self, backend: BackendConfig | str, model: str, usage: Usage, at: float | None = None) -> float | None:
        """Dollars for one request, or None when the model is unpriced. ``at`` (the request's
        start, seconds since the epoch) picks off-peak rates where a provider has them; without
        it the peak rate is charged."""
        price = self.price_for(backend, model)
        if price is None:
            return None
        return price.cost(usage, at)

    def cost_of(self, finished: RequestFinished) -> float | None:
        """Dollars for one finished request, priced at the time it started (so off-peak rates
        come out the same in the ledger, the budgets and on every page). None when unpriced.
        A request served under a Claude subscription spends no money: 0 (its value at API
        prices is :meth:`api_equivalent`)."""
        if finished.plan == "subscription":
            return 0.0
        return self.cost(finished.backend, finished.model, finished.usage, at=finished.started_at)

    def api_equivalent(self, finished: RequestFinished) -> float | None:
        """What a request served under a subscription would have cost at API prices (None for
        any other request, and when unpriced): shown as value, never counted as spend."""
        if finished.plan != "subscription":
            return None
        return self.cost(finished.backend, finished.model, finished.usage, at=finished.started_at)

    def entries(self) -> list[tuple[str, str, Price]]:
        """Every shipped and user price as (provider or "config", model, price), for display."""
        out = [(prov, model, price) for prov, model, _aliases, price in self.table.models]
        out += [(f"config:{pc.backend}" if pc.backend else "config", pc.model, _user_price(pc))
                for pc in self.overrides]
        return out

    def _backend(self, backend: BackendConfig | str) -> BackendConfig | None:
        if isinstance(backend, BackendConfig):
            return backend
        return self.backends.get(backend)


def _fallback(p: Price, why: str) -> Price:
    return Price(p.input, p.output, p.cache_write, p.cache_read, FALLBACK_SOURCE + why, p.as_of,
                 p.long_prompt_above, p.long_prompt, None)


def _user_price(pc: PriceConfig) -> Price:
    return Price(pc.input, pc.output, pc.cache_write, pc.cache_read, CONFIG_SOURCE, "")
