"""The composition root: the one place a process's parts are built from :class:`Settings`.

Every process (a worker, Beat, ``dagflow schedule``, the CLI, the dashboard, the embedded
mode) gets its run store, job store, event sink, state recorder and minute claims here, so
the rules that pick them live once:

* which Redis holds run state: :attr:`Settings.redis_url` (none: the embedded mode, every
  store in memory);
* whether events and scheduler lines go through the Redis stream:
  :attr:`Settings.events_via_stream` (else each process appends to its JSONL files).

Nothing here runs at import time, and nothing imports this module but the Celery wiring,
the client, the scheduler's drivers and the faces.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagflow.events.collector import Collector
from dagflow.events.jsonl import iter_records
from dagflow.events.log import JsonlEventLog
from dagflow.events.state_store import JsonlStateStore, StateRecorder
from dagflow.execution.backoff import RetryPolicy
from dagflow.execution.deadlines import sweep_deadlines
from dagflow.execution.notify import sweep_notices
from dagflow.execution.outputs import Outputs, sweep_outputs
from dagflow.execution.pools import sweep_pools
from dagflow.execution.runtime import EventSink, Runtime, SweepReportHook
from dagflow.redis_url import redis_client
from dagflow.scheduling.firing import run_finished_hook
from dagflow.scheduling.job_hooks import job_finished_hook, job_started_hook, sweep_jobs
from dagflow.scheduling.job_hooks import job_store as redis_job_store
from dagflow.settings import Settings
from dagflow.stores import MemoryRunStore, RedisRunStore, RunStore
from dagflow.stores.event_stream import RedisEventStream
from dagflow.stores.idempotency import IdempotencyKeys, RedisIdempotencyKeys
from dagflow.stores.jobs import JobStore, MemoryJobStore
from dagflow.stores.memory_pools import memory_pools
from dagflow.stores.metrics import RedisMetricsStore
from dagflow.stores.minute_claims import MemoryMinuteClaims, MinuteClaims, RedisMinuteClaims
from dagflow.stores.output_index import MemoryOutputIndex, OutputIndex, RedisOutputIndex
from dagflow.stores.pools import PoolStore
from dagflow.stores.redis_pools import RedisPools
from dagflow.stores.tokens import RedisTokenStore


def run_store(settings: Settings) -> RunStore:
    """Redis on :attr:`Settings.redis_url` (writing the events itself with the stream), or
    the in-memory store of the embedded mode."""
    if settings.embedded:
        return MemoryRunStore()
    return RedisRunStore(
        settings.require_redis_url(),
        ttl=settings.run_ttl_s,
        events_maxlen=settings.events_maxlen if settings.events_via_stream else None,
        master_name=settings.redis_master_name,
    )


def read_store(settings: Settings) -> RedisRunStore:
    """The run store to read runs from any process (``get_run``, ``list_runs``): Redis only,
    no Celery app.

    Raises:
        ConfigError: No Redis run store is configured (an embedded run lives only in its
            own process).
    """
    return RedisRunStore(
        settings.require_redis_url(), ttl=settings.run_ttl_s, master_name=settings.redis_master_name
    )


def pool_store(store: RunStore) -> PoolStore | None:
    """The pools beside ``store``: on its Redis (the scripts read its keys), or in the
    memory of an in-memory store (the same pools for every caller with that store); None
    for any other store (a test's fault-injecting wrapper)."""
    if isinstance(store, RedisRunStore):
        return RedisPools(store.client)
    if isinstance(store, MemoryRunStore):
        return memory_pools(store)
    return None


def event_sink(settings: Settings) -> EventSink:
    """The Redis event stream, or the JSONL event log of ``ORCH_EVENTS_PATH``."""
    if settings.events_via_stream:
        return _stream(settings)
    return JsonlEventLog(settings.events_path)


def state_recorder(settings: Settings) -> StateRecorder:
    """Where scheduler lines go: the stream (the collector writes ``STATE_STORE_PATH`` from
    it, so the module-level readers see every host's lines), or the JSONL file itself."""
    if settings.events_via_stream:
        return _stream(settings)
    return JsonlStateStore(settings.state_path)


def job_store(settings: Settings) -> JobStore:
    """Jobs in Redis, or in memory for the embedded mode."""
    return MemoryJobStore() if settings.embedded else redis_job_store(settings)


def minute_claims(settings: Settings) -> MinuteClaims:
    """Redis claims on the run state's Redis; else in-process claims seeded from the state
    store's ``schedule_enqueued`` lines (the embedded mode)."""
    if settings.redis_url is not None:
        return RedisMinuteClaims.from_url(
            settings.redis_url, master_name=settings.redis_master_name
        )
    claims = MemoryMinuteClaims()
    claims.seed(iter_records(settings.state_path))
    return claims


def token_store(settings: Settings) -> RedisTokenStore:
    """The HTTP API's tokens, in the run state's Redis.

    Raises:
        ConfigError: No Redis is configured.
    """
    return RedisTokenStore.from_url(
        settings.require_redis_url(), master_name=settings.redis_master_name
    )


def idempotency_keys(settings: Settings) -> IdempotencyKeys:
    """The idempotency keys of ``POST /api/v1/runs``, in the run state's Redis.

    Raises:
        ConfigError: No Redis is configured.
    """
    return RedisIdempotencyKeys.from_url(
        settings.require_redis_url(), master_name=settings.redis_master_name
    )


def collector(settings: Settings) -> Collector:
    """The collector of ``dagflow events collect``: the stream on the run state's Redis into
    ``ORCH_EVENTS_PATH`` and ``STATE_STORE_PATH``."""
    client = redis_client(
        settings.require_redis_url(), master_name=settings.redis_master_name, decode_responses=True
    )
    return Collector(
        client,
        settings.events_path,
        settings.state_path,
        claim_idle_ms=int(settings.collector_claim_s * 1000),
    )


def metrics_store(settings: Settings) -> RedisMetricsStore:
    """The store of ``dagflow metrics``: the stream's ``metrics`` group, the counted series
    and the gauges' sources, on the run state's Redis.

    Raises:
        ConfigError: No Redis is configured (the embedded mode has nothing to scrape).
    """
    return RedisMetricsStore(settings.require_redis_url(), master_name=settings.redis_master_name)


def output_index(settings: Settings) -> OutputIndex:
    """Runs with objects in the output store: in Redis beside the run state, or in memory
    for the embedded mode (whose runs die with the process)."""
    if settings.embedded:
        return MemoryOutputIndex()
    return RedisOutputIndex(settings.require_redis_url(), master_name=settings.redis_master_name)


def outputs(settings: Settings) -> Outputs:
    """Outputs by reference (:mod:`dagflow.execution.outputs`) for this process."""
    return Outputs.from_settings(settings, output_index(settings))


def build_runtime(settings: Settings, store: RunStore | None = None) -> Runtime:
    """A process's runtime, with scheduling's hooks: ``run_finished`` in the state store,
    each scheduled run's job moved along, and jobs swept (put back, retried) at every sweep;
    and the sweeps of missed deadlines and undelivered notifications.

    Args:
        settings: The process's settings.
        store: A run store to use instead of :func:`run_store`'s (tests, fault injection).
    """
    runtime = Runtime(
        settings=settings,
        store=store if store is not None else run_store(settings),
        events=event_sink(settings),
        jobs=job_store(settings),
        retry=RetryPolicy(settings.retry_base_s, settings.retry_max_s, settings.retry_jitter),
        outputs=outputs(settings),
    )
    runtime.run_finished_hooks.append(run_finished_hook(state_recorder(settings)))
    runtime.run_started_hooks.append(job_started_hook(runtime.jobs))
    runtime.run_finished_hooks.append(job_finished_hook(runtime.jobs, settings))
    runtime.sweep_hooks.append(sweep_jobs)
    runtime.pools = pool_store(runtime.store)
    runtime.sweep_hooks.append(sweep_pools)
    # Missed deadlines (claimed once across sweepers), then the notices left undelivered.
    runtime.sweep_hooks.append(sweep_deadlines)
    runtime.sweep_hooks.append(sweep_notices)
    runtime.sweep_report_hooks.append(sweep_recorder(state_recorder(settings)))
    runtime.sweep_hooks.append(sweep_outputs)
    return runtime


def sweep_recorder(state: StateRecorder) -> SweepReportHook:
    """A hook that writes what a sweep did as a ``sweep`` state line (``{"event": "sweep",
    "actions": {"expired": 1, ...}}``): the source of ``dagflow_sweeper_actions_total``."""

    def record(actions: Mapping[str, int]) -> None:
        state.record_event({"event": "sweep", "actions": dict(actions)})

    return record


def _stream(settings: Settings) -> RedisEventStream:
    return RedisEventStream(
        settings.require_redis_url(), settings.events_maxlen, master_name=settings.redis_master_name
    )
