"""The Prometheus exporter: counts the event stream into Redis, serves ``/metrics``.

Two parts, in one ``dagflow metrics`` process:

* :class:`Ingester` (a thread) reads the event stream through the consumer group
  ``metrics`` and applies each entry's updates in the store's atomic step (see
  :mod:`dagflow.stores.metrics`: a restarted exporter counts nothing twice, a killed worker
  loses no count, two exporters share the work);
* :class:`DagflowCollector` is what ``prometheus_client`` calls at each scrape: it reads the
  counted series and the gauges from Redis and returns them as metric families. Nothing is
  counted in this process's memory, so every exporter serves the same totals.

:func:`wsgi_app` serves ``/metrics`` (``prometheus_client``'s app: the text format, or
OpenMetrics when the scraper asks for it) and ``/health``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dagflow.errors import DagflowError
from dagflow.metrics import catalog as c
from dagflow.metrics.mapping import Buckets, bound_text, parse_field, updates
from dagflow.stores.metrics import BLOCK_MS, Gauges, RedisMetricsStore

logger = logging.getLogger(__name__)

#: ``/health`` says unhealthy when the ingester has not completed a read for this long (s).
STALE_S = 30.0

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def dagflow_version() -> str:
    """The installed dagflow's version (``unknown`` when run from a bare checkout)."""
    try:
        return version("dagflow")
    except PackageNotFoundError:
        return "unknown"


class Ingester:
    """Counts the stream's entries into the store, batch by batch.

    Args:
        store: The exporter's store.
        buckets: Histogram bounds (the same in every exporter sharing a Redis).
    """

    def __init__(self, store: RedisMetricsStore, buckets: Buckets) -> None:
        self.store = store
        self.buckets = buckets
        self.counted = 0
        self.last_ok = 0.0
        self.error: str | None = None

    def ingest_once(self, block_ms: int = BLOCK_MS) -> int:
        """Read one batch and apply it; returns how many entries this call counted."""
        batch = []
        for entry in self.store.read(block_ms):
            found = updates(entry.log, entry.record, self.buckets) if entry.record else []
            batch.append((entry.id, [(u.op, u.field, u.amount) for u in found]))
        counted = self.store.apply(batch)
        self.counted += counted
        self.last_ok = time.monotonic()
        self.error = None
        return counted

    def run(self, stop: threading.Event) -> None:
        """Count until ``stop`` is set; Redis errors are logged and retried every second."""
        while not stop.is_set():
            try:
                self.store.setup()
                break
            except DagflowError as exc:
                self._failed(exc, stop)
        while not stop.is_set():
            try:
                self.ingest_once()
            except DagflowError as exc:
                self._failed(exc, stop)
            except Exception as exc:  # a bug or an odd reply: keep counting, say it loudly
                logger.exception("dagflow metrics: counting failed")
                self.error = f"{type(exc).__name__}: {exc}"
                self.store.recover_soon()
                stop.wait(1.0)

    def _failed(self, exc: DagflowError, stop: threading.Event) -> None:
        self.error = exc.one_line()
        logger.warning("dagflow metrics: %s; retrying in 1 s", self.error)
        self.store.recover_soon()
        stop.wait(1.0)


class DagflowCollector(Collector):
    """The families served at each scrape, read from Redis (see the module doc).

    Args:
        store: Where the counted series and the gauges are read.
        buckets: The histograms' bounds (observations are stored in the bucket they fell
            in; the scrape makes them cumulative).
    """

    def __init__(self, store: RedisMetricsStore, buckets: Buckets) -> None:
        self.store = store
        self.buckets = buckets
        self.version = dagflow_version()

    def collect(self) -> Iterator[Metric]:
        """Every family of :data:`~dagflow.metrics.catalog.METRICS` (raises, failing the
        scrape, when Redis cannot be read: Prometheus then records ``up == 0``)."""
        values = self.store.values()
        gauges = self.store.gauges()
        yield from families(values, gauges, self.buckets, self.version)


def families(
    values: dict[str, float], gauges: Gauges, buckets: Buckets, build: str
) -> Iterator[Metric]:
    """The metric families of counted ``values`` and read ``gauges`` (pure)."""
    series: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for raw, value in values.items():
        name, labels = parse_field(raw)
        series[name][labels] = value
    for metric in c.METRICS:
        if metric.kind == "counter":
            family: Metric = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
            for labels, value in sorted(series.get(metric.name, {}).items()):
                family.add_metric(list(labels), value)  # type: ignore[attr-defined]
            yield family
        elif metric.kind == "histogram":
            yield _histogram(metric, series, buckets.of(metric))
        elif metric is c.SCHEDULE_LAST_SUCCESS:
            yield _gauge(metric, series.get(metric.name, {}))
        else:
            yield _gauge(metric, _gauge_values(metric, gauges, build))


def _gauge(metric: c.Metric, values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


def _gauge_values(metric: c.Metric, g: Gauges, build: str) -> dict[tuple[str, ...], float]:
    if metric is c.RUNS_ACTIVE:
        return {(t,): n for t, n in g.runs_active.items()}
    if metric is c.RUNS_PENDING:
        return {(t, _reason(r)): n for (t, r), n in g.runs_pending.items()}
    if metric is c.SLOTS_IN_USE:
        return {c.slot_labels(s): n for s, n in g.slots_in_use.items()}
    if metric is c.SLOTS_LIMIT:
        return {c.slot_labels(s): n for s, n in g.slots_limit.items()}
    if metric is c.JOBS:
        return {(s,): n for s, n in g.jobs.items()}
    if metric is c.STREAM_LENGTH:
        return {(): g.stream_length}
    if metric is c.COLLECTOR_LAG:
        return {(): g.collector_lag_s}
    return {(build,): 1}  # BUILD_INFO


def _reason(scope: str) -> str:
    return scope if scope == "queued" else c.slot_labels(scope)[0]


def _histogram(
    metric: c.Metric, series: dict[str, dict[tuple[str, ...], float]], bounds: tuple[float, ...]
) -> Metric:
    family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
    counts: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for key, n in series.get(metric.name + "_bucket", {}).items():
        counts[key[1:]][float(key[0])] = n
    sums = series.get(metric.name + "_sum", {})
    edges = [*bounds, float("inf")]
    texts = [bound_text(edge) for edge in edges]
    for labels in sorted(counts):
        # Cumulative: each bound counts every observation stored at or below it (a bound
        # stored under older DAGFLOW_METRICS_*_BUCKETS falls in the next current bound).
        stored = sorted(counts[labels].items())
        total, i, cumulative = 0.0, 0, []
        for edge, text in zip(edges, texts, strict=True):
            while i < len(stored) and stored[i][0] <= edge:
                total += stored[i][1]
                i += 1
            cumulative.append((text, total))
        family.add_metric(list(labels), cumulative, sums.get(labels, 0.0))
    return family


def wsgi_app(
    registry: CollectorRegistry, health: Callable[[], tuple[bool, dict[str, Any]]]
) -> WsgiApp:
    """``/metrics`` (prometheus_client's app, with its content negotiation) and ``/health``
    (200 or 503 with a JSON body); anything else is 404."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health":
            ok, body = health()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"dagflow metrics: see /metrics and /health\n"]

    return app


def health_check(
    ingester: Ingester, stale_s: float = STALE_S
) -> Callable[[], tuple[bool, dict[str, Any]]]:
    """``/health``: healthy while the ingester completed a read in the last ``stale_s``."""

    def check() -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - ingester.last_ok if ingester.last_ok else None
        ok = age is not None and age < stale_s
        body = {"ok": ok, "counted": ingester.counted, "error": ingester.error}
        return ok, body

    return check


def registry_for(store: RedisMetricsStore, buckets: Buckets) -> CollectorRegistry:
    """A registry holding only dagflow's collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DagflowCollector(store, buckets))
    return registry
