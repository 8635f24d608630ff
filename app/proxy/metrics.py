"""``GET /metrics``: the gateway in Prometheus' text format (the ``prometheus_client`` library).

``GatewayMetrics.sink`` is an EventHub sink (on the gateway thread: a few counter increments per
request, no I/O). Gauges that belong to other parts (the ledger's queue and spool, budget
utilisation) are read when Prometheus scrapes, through the callables given. Each instance has its
own registry, so two gateways in one process (tests) do not share numbers.

Label values are bounded: a series lives as long as the process, and the model name comes from
the client (or an upstream's echo of it), so 1,500 made-up names once added 98 MB. A model is
its own label only when ``known(backend, model)`` says so (the engine: a configured name or one
the price table prices) and it is short and printable; any other is ``"other"``. At most
``MAX_MODEL_LABELS`` distinct names are ever kept, whatever ``known`` says.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.config import Config
from app.events import RequestFinished, RequestStarted

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
OTHER = "other"
MAX_MODEL_LABELS = 256
MAX_LABEL_CHARS = 128


_configured: tuple[Config | None, frozenset[str]] = (None, frozenset())


def configured_models(config: Config) -> frozenset[str]:
    """Every model name the config writes: backends' lists, [active], [routes] targets."""
    global _configured
    if _configured[0] is config:
        return _configured[1]
    names = {m for b in config.backends for m in b.models}
    if config.active.model:
        names.add(config.active.model)
    r = config.routes
    for t in (r.background, r.think, r.subagent, r.compaction, r.long_context, r.web_search, r.image, *r.fallback):
        if t is not None and t.model:
            names.add(t.model)
    _configured = (config, frozenset(names))
    return _configured[1]


class _Callbacks(Collector):
    def __init__(self, queue: Callable[[], int], spool: Callable[[], int],
                 budgets: Callable[[], Iterable[tuple[str, float]]]) -> None:
        self._queue, self._spool, self._budgets = queue, spool, budgets

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("patchbay_ledger_queue_rows", "Usage rows waiting in memory for the ledger writer",
                                value=self._queue())
        yield GaugeMetricFamily("patchbay_ledger_spool_rows",
                                "Usage rows waiting in the local spool for the shared ledger", value=self._spool())
        g = GaugeMetricFamily("patchbay_budget_utilisation", "Spent / limit of each budget in its current period",
                              labels=["budget"])
        for label, fraction in self._budgets():
            g.add_metric([label], fraction)
        yield g


class GatewayMetrics:
    def __init__(self, cost: Callable[[RequestFinished], float | None], *,
                 queue: Callable[[], int] = lambda: 0, spool: Callable[[], int] = lambda: 0,
                 budgets: Callable[[], Iterable[tuple[str, float]]] = lambda: (),
                 known: Callable[[str, str], bool] = lambda backend, model: False) -> None:
        self._cost = cost
        self._known = known
        self._models: set[str] = set()  # model label values in use
        self._started: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("patchbay_requests", "Requests answered", ["backend", "model", "status"], registry=r)
        self.tokens = Counter("patchbay_tokens", "Tokens, by kind", ["backend", "model", "kind"], registry=r)
        self.cost = Counter("patchbay_cost_usd", "Dollars spent on priced requests", ["backend", "model"], registry=r)
        self.duration = Histogram("patchbay_request_duration_seconds", "Request duration", ["backend"],
                                  buckets=_DURATION_BUCKETS, registry=r)
        self.ttft = Histogram("patchbay_time_to_first_token_seconds", "Time to the upstream's first content byte",
                              ["backend"], buckets=_TTFT_BUCKETS, registry=r)
        self.inflight = Gauge("patchbay_requests_in_flight", "Requests being served now", registry=r,
                              multiprocess_mode="livesum")
        r.register(_Callbacks(queue, spool, budgets))
        # `serve --workers N` (app/cli/serve_workers.py): every worker's counters, summed from their files
        self._shared: CollectorRegistry | None = None
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            from prometheus_client.multiprocess import MultiProcessCollector

            self._shared = CollectorRegistry()
            MultiProcessCollector(self._shared, path)
            self._shared.register(_Callbacks(queue, spool, budgets))
        # labelled children by label values: ``labels()`` takes a lock and rebuilds its key on
        # every call (five calls a request); the children themselves live as long as the registry
        self._kids: dict[tuple[object, ...], Any] = {}

    def _kid(self, metric: Any, *values: str) -> Any:
        key = (metric, *values)
        kid = self._kids.get(key)
        if kid is None:
            kid = self._kids[key] = metric.labels(*values)
        return kid

    def sink(self, event: object) -> None:
        t = type(event)
        if t is RequestStarted:
            self._started.add(event.request_id)  # type: ignore[attr-defined]
            self.inflight.inc()
        elif t is RequestFinished:
            ev: RequestFinished = event  # type: ignore[assignment]
            if ev.request_id in self._started:  # a refusal before the start had no RequestStarted
                self._started.discard(ev.request_id)
                self.inflight.dec()
            model = self.model_label(ev.backend, ev.model)
            self._kid(self.requests, ev.backend, model, str(ev.status)).inc()
            u = ev.usage
            for kind, n in (("input", u.input_tokens), ("output", u.output_tokens),
                            ("cache_write", u.cache_creation_input_tokens), ("cache_read", u.cache_read_input_tokens)):
                if n:
                    self._kid(self.tokens, ev.backend, model, kind).inc(n)
            try:
                c = self._cost(ev)
            except Exception:
                c = None
            if c:
                self._kid(self.cost, ev.backend, model).inc(c)
            self._kid(self.duration, ev.backend).observe(ev.duration_ms / 1000.0)
            if ev.ttft_ms is not None:
                self._kid(self.ttft, ev.backend).observe(ev.ttft_ms / 1000.0)

    def model_label(self, backend: str, model: str) -> str:
        """``model`` where it is a known, well-formed name and there is room; else ``"other"``."""
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODEL_LABELS or len(model) > MAX_LABEL_CHARS or not model.isprintable():
            return OTHER
        try:
            known = self._known(backend, model)
        except Exception:
            known = False
        if not known:
            return OTHER
        self._models.add(model)
        return model

    def render(self) -> bytes:
        return bytes(generate_latest(self._shared or self.registry))
