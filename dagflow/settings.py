"""Typed settings read from the environment, in one place.

Celery's own keys live in ``celeryconfig.py``; everything dagflow itself reads from the
environment is a field here, with its unit and default. Nothing else calls ``os.getenv``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagflow.env import (
    DEFAULT_TENANT_MAX_ACTIVE_RUNS,
    RUN_BUCKETS_S,
    TASK_BUCKETS_S,
    WAIT_BUCKETS_S,
    buckets,
    env_float,
    env_int,
    output_store,
    pools,
    secrets,
    tenant_limits,
)
from dagflow.errors import ConfigError
from dagflow.keys import is_redis_url
from dagflow.redis_url import DEFAULT_MASTER_NAME, check_master_name, check_redis_url

#: Redis ``visibility_timeout`` (seconds). An unacknowledged message older than this is
#: delivered again. dagflow does not rely on it (leases and the sweeper recover steps), but a
#: low value would deliver long steps again and again, so it stays high.
VISIBILITY_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class Settings:
    """dagflow's settings. Build with :meth:`from_env`; every field has a documented default.

    Attributes:
        broker_url: ``DAGFLOW_BROKER_URL`` (or ``REDIS_URL`` when ``QUEUE_BACKEND=redis``).
            ``None`` means the embedded default: an in-process broker and worker.
        result_backend: ``DAGFLOW_RESULT_BACKEND``; defaults to the broker's Redis.
            Either URL may be ``sentinel://h1:26379;sentinel://h2:26379[/db]`` (kombu's
            form): a primary found through Redis Sentinel (see dagflow.redis_url).
        redis_master_name: ``DAGFLOW_REDIS_MASTER_NAME``, the name the sentinels know the
            primary by (default ``mymaster``); used only with ``sentinel://`` URLs, by Celery
            (its ``master_name`` transport option) and by every dagflow client alike.
        workflow_modules: ``DAGFLOW_WORKFLOWS``, comma-separated modules that register workflows.
        events_path: ``ORCH_EVENTS_PATH``, the JSONL event log.
        state_path: ``STATE_STORE_PATH``, the scheduler's JSONL state store.
        schedules_dir: ``DAGFLOW_SCHEDULES_DIR``, where schedule YAML files live.
        dags_dir: ``DAGFLOW_DAGS_DIR``, where DAG files are found by name or by the events
            that trigger them (default ``dags``).
        sched_tick_ms: ``SCHED_TICK_MS``, scheduler tick in milliseconds.
        sched_max_parallel: ``SCHED_MAX_PARALLEL``, scheduled DAG runs that run at once,
            across every scheduler and Beat process (held in Redis; the others wait as
            ``pending``).
        tenant_max_active_runs: ``DAGFLOW_TENANT_MAX_ACTIVE_RUNS``, runs of one tenant that
            run at once (0: no limit); the others wait as ``pending``, in order, and
            tenants' waiting runs start in turn. :data:`DEFAULT_TENANT_MAX_ACTIVE_RUNS` (64)
            by default, so tenants share the workers fairly with nothing configured.
        tenant_limits: ``DAGFLOW_TENANT_LIMITS``, per-tenant overrides of that limit, as
            ``acme=4,beta=16``.
        pools: ``DAGFLOW_POOLS``, each pool's size as ``warehouse=4,api=2``: at most that many
            steps of the tasks with ``pool: warehouse`` run at once, across every worker.
            The workers' value is the one enforced (each acquire passes its worker's size
            and records it in Redis, where releases and the sweeper read it); a client's
            only checks DAG files (a ``pool`` it does not list is a validation error).
        sched_max_jobs_per_drain: ``SCHED_MAX_JOBS_PER_DRAIN``, ``PENDING`` jobs a scheduler
            takes off the job queue and starts per tick (the rest wait for the next drain).
        job_retry_base_s: ``DAGFLOW_JOB_RETRY_BASE_S``, seconds before a failed job's first
            retry (doubles with each further try).
        job_retry_max_s: ``DAGFLOW_JOB_RETRY_MAX_S``, cap on the wait before one job retry,
            in seconds.
        panel_window_h: ``ORCH_PANEL_WINDOW_H``, the dashboard's KPI window in hours.
        retry_base_s: ``DAGFLOW_RETRY_BASE_S``, first retry delay in seconds (doubles each time).
        retry_max_s: ``DAGFLOW_RETRY_MAX_S``, cap on one retry delay in seconds.
        retry_jitter: ``DAGFLOW_RETRY_JITTER``, fraction of the delay added at random (0..1).
        run_ttl_s: ``DAGFLOW_RUN_TTL_S``, how long a run's state is kept in Redis, in seconds.
        events_sink: ``DAGFLOW_EVENTS``: ``stream`` (the default with a broker: every event
            goes through a Redis stream and ``dagflow events collect`` writes the log) or
            ``file`` (each process appends to its own ``ORCH_EVENTS_PATH``; the embedded mode
            always does).
        events_maxlen: ``DAGFLOW_EVENTS_MAXLEN``, the stream's cap in entries.
        collector_claim_s: ``DAGFLOW_COLLECTOR_CLAIM_S``, seconds after which a collector
            takes over the unwritten entries of another collector that stopped.
        lease_s: ``DAGFLOW_LEASE_S``, seconds a step's lease lasts without a heartbeat: a
            step whose worker died is run again after at most ``lease_s + sweep_s``.
        sweep_s: ``DAGFLOW_SWEEP_S``, seconds between two sweeps (expired leases, due
            retries, unsent steps, stalled runs).
        store_retry_s: ``DAGFLOW_STORE_RETRY_S``, how long a step keeps retrying an
            unreachable run store in-process before it gives up (the sweeper recovers it).
        embedded_concurrency: ``DAGFLOW_EMBEDDED_CONCURRENCY``, threads of the in-process worker.
        map_max: ``DAGFLOW_MAP_MAX``, most instances one mapped task may have (10,000): over
            it the mapped task fails at once, naming the task, the key and the length.
        dashboard_host: ``DAGFLOW_DASHBOARD_HOST``, address the dashboard binds to.
        dashboard_port: ``DAGFLOW_DASHBOARD_PORT``, port of the dashboard.
        dashboard_auth: ``DAGFLOW_DASHBOARD_AUTH``, ``user:password`` for basic auth, or None.
        notify_timeout_s: ``DAGFLOW_NOTIFY_TIMEOUT_S``, seconds one webhook POST may take.
        notify_attempts: ``DAGFLOW_NOTIFY_ATTEMPTS``, delivery attempts of one hook or
            webhook before it is given up (``notification_failed``/``hook_failed`` with
            ``will_retry: false``).
        notify_retry_s: ``DAGFLOW_NOTIFY_RETRY_S``, seconds before the second attempt of a
            hook or webhook (doubling with each attempt, capped at 10 minutes).
        metrics_host: ``DAGFLOW_METRICS_HOST``, address ``dagflow metrics`` binds to.
        metrics_port: ``DAGFLOW_METRICS_PORT``, port of ``dagflow metrics`` (default 9810).
        metrics_run_buckets: ``DAGFLOW_METRICS_RUN_BUCKETS``, upper bounds in seconds of
            ``dagflow_run_duration_seconds``'s buckets, comma-separated (default 1 s to 1 day).
        metrics_task_buckets: ``DAGFLOW_METRICS_TASK_BUCKETS``, the same for
            ``dagflow_task_duration_seconds`` (default 10 ms to 1 h).
        metrics_wait_buckets: ``DAGFLOW_METRICS_WAIT_BUCKETS``, the same for
            ``dagflow_task_queue_wait_seconds`` (default 5 ms to 10 min). Every exporter on
            one Redis must use the same bounds: an observation is stored in its bucket.
        api_host: ``DAGFLOW_API_HOST``, address ``dagflow api`` binds to.
        api_port: ``DAGFLOW_API_PORT``, port of ``dagflow api``.
        idempotency_ttl_s: ``DAGFLOW_API_IDEMPOTENCY_TTL_S``, seconds an idempotency key of
            ``POST /api/v1/runs`` keeps answering with its run (at most the run's TTL).
        output_store: ``DAGFLOW_OUTPUT_STORE``, the fsspec URL outputs larger than
            ``output_inline_max`` are written under (``file:///srv/dagflow/outputs``,
            ``s3://bucket/prefix``); None: the embedded mode's folder under ``logs/``
            (:attr:`output_store_url`), and none at all with a broker.
        output_inline_max: ``DAGFLOW_OUTPUT_INLINE_MAX``, bytes of an output's JSON kept
            inline in the run store (65,536); a larger one goes to the output store.
        output_max: ``DAGFLOW_OUTPUT_MAX``, bytes of an output's JSON over which the task
            fails at once, without a retry (268,435,456: 256 MiB).
        secrets: ``DAGFLOW_SECRETS``, where ``{secret: NAME}`` params are read on the
            worker: ``env`` (the worker's environment variable NAME, the default) or
            ``file:///run/secrets`` (one file per secret).
    """

    broker_url: str | None = None
    result_backend: str | None = None
    redis_master_name: str = DEFAULT_MASTER_NAME
    workflow_modules: tuple[str, ...] = ()
    events_path: Path = Path("logs/orchestrator_events.jsonl")
    state_path: Path = Path("logs/orchestrator_state.jsonl")
    schedules_dir: Path = Path("schedules")
    dags_dir: Path = Path("dags")
    sched_tick_ms: int = 1000
    sched_max_parallel: int = 3
    tenant_max_active_runs: int = DEFAULT_TENANT_MAX_ACTIVE_RUNS
    tenant_limits: tuple[tuple[str, int], ...] = ()
    pools: tuple[tuple[str, int], ...] = ()
    sched_max_jobs_per_drain: int = 100
    job_retry_base_s: float = 30.0
    job_retry_max_s: float = 600.0
    panel_window_h: int = 24
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    retry_jitter: float = 0.1
    run_ttl_s: int = 7 * 24 * 3600
    events_sink: str = "file"
    events_maxlen: int = 200_000
    collector_claim_s: float = 30.0
    lease_s: float = 30.0
    sweep_s: float = 5.0
    store_retry_s: float = 60.0
    embedded_concurrency: int = 4
    map_max: int = 10_000  # dagflow.dag.mapping.MAP_MAX_DEFAULT
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8050
    dashboard_auth: str | None = None
    notify_timeout_s: float = 10.0
    notify_attempts: int = 5
    notify_retry_s: float = 5.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9810
    metrics_run_buckets: tuple[float, ...] = RUN_BUCKETS_S
    metrics_task_buckets: tuple[float, ...] = TASK_BUCKETS_S
    metrics_wait_buckets: tuple[float, ...] = WAIT_BUCKETS_S
    api_host: str = "127.0.0.1"
    api_port: int = 8060
    idempotency_ttl_s: int = 24 * 3600
    output_store: str | None = None
    output_inline_max: int = 65_536
    output_max: int = 268_435_456
    secrets: str = "env"

    @property
    def output_store_url(self) -> str | None:
        """Where large outputs go: ``DAGFLOW_OUTPUT_STORE``; without it the embedded mode's
        ``logs/outputs`` folder (next to the event log), and None with a broker (then an
        output over ``output_inline_max`` fails its task, naming the setting)."""
        if self.output_store:
            return self.output_store
        if self.embedded:
            return (self.events_path.parent / "outputs").resolve().as_uri()
        return None

    def tenant_limit(self, tenant: str) -> int:
        """Runs of ``tenant`` that may run at once (0: no limit)."""
        return dict(self.tenant_limits).get(tenant, self.tenant_max_active_runs)

    def pool_size(self, pool: str) -> int | None:
        """Steps of ``pool`` that may run at once, or None if ``DAGFLOW_POOLS`` does not
        list it."""
        return dict(self.pools).get(pool)

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and dagflow runs everything in-process."""
        return self.broker_url is None

    @property
    def redis_url(self) -> str | None:
        """The Redis that holds run state: the result backend's, else the broker's, else None.

        The one place this rule lives; :meth:`require_redis_url` raises instead of None.
        """
        return next((u for u in (self.result_backend, self.broker_url) if is_redis_url(u)), None)

    def require_redis_url(self) -> str:
        """:attr:`redis_url`, for what cannot work without it.

        Raises:
            ConfigError: Neither the result backend nor the broker is a Redis URL.
        """
        if self.redis_url is None:
            raise ConfigError(
                "dagflow keeps run state in Redis: set DAGFLOW_BROKER_URL or "
                "DAGFLOW_RESULT_BACKEND to a redis:// (or sentinel://) URL"
            )
        return self.redis_url

    @property
    def events_via_stream(self) -> bool:
        """True when events go through the Redis stream (``DAGFLOW_EVENTS=stream`` with a
        broker); the one place this rule lives."""
        return self.events_sink == "stream" and not self.embedded

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (``os.environ`` by default).

        Raises:
            ConfigError: A variable has a value of the wrong type or range.
        """
        env = os.environ if env is None else env
        broker = env.get("DAGFLOW_BROKER_URL") or None
        if broker is None and env.get("QUEUE_BACKEND", "memory").lower() == "redis":
            broker = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        backend = env.get("DAGFLOW_RESULT_BACKEND") or None
        # A bad Sentinel URL fails here, naming its variable, not at the first connection.
        if broker is not None:
            check_redis_url(broker, "DAGFLOW_BROKER_URL")
        if backend is not None:
            check_redis_url(backend, "DAGFLOW_RESULT_BACKEND")
        if backend is None and is_redis_url(broker):
            backend = broker
        master_name = check_master_name(env.get("DAGFLOW_REDIS_MASTER_NAME") or DEFAULT_MASTER_NAME)
        modules = tuple(m.strip() for m in env.get("DAGFLOW_WORKFLOWS", "").split(",") if m.strip())
        jitter = env_float(env, "DAGFLOW_RETRY_JITTER", 0.1)
        if jitter > 1:
            raise ConfigError(f"DAGFLOW_RETRY_JITTER={jitter} must be between 0 and 1")
        retry_max = env_float(env, "DAGFLOW_RETRY_MAX_S", 300.0)
        lease = env_float(env, "DAGFLOW_LEASE_S", 30.0, minimum=0.5)
        sink = (env.get("DAGFLOW_EVENTS") or ("stream" if broker else "file")).lower()
        if sink not in ("stream", "file"):
            raise ConfigError(f"DAGFLOW_EVENTS={sink!r} must be 'stream' or 'file'")
        if broker is None:
            sink = "file"  # the embedded mode writes the log itself
        sweep = env_float(env, "DAGFLOW_SWEEP_S", 5.0, minimum=0.1)
        return cls(
            broker_url=broker,
            result_backend=backend,
            redis_master_name=master_name,
            workflow_modules=modules,
            events_path=Path(env.get("ORCH_EVENTS_PATH") or "logs/orchestrator_events.jsonl"),
            state_path=Path(env.get("STATE_STORE_PATH") or "logs/orchestrator_state.jsonl"),
            schedules_dir=Path(env.get("DAGFLOW_SCHEDULES_DIR") or "schedules"),
            dags_dir=Path(env.get("DAGFLOW_DAGS_DIR") or "dags"),
            sched_tick_ms=env_int(env, "SCHED_TICK_MS", 1000, minimum=1),
            sched_max_parallel=env_int(env, "SCHED_MAX_PARALLEL", 3, minimum=1),
            tenant_max_active_runs=env_int(
                env, "DAGFLOW_TENANT_MAX_ACTIVE_RUNS", DEFAULT_TENANT_MAX_ACTIVE_RUNS
            ),
            tenant_limits=tenant_limits(env.get("DAGFLOW_TENANT_LIMITS") or ""),
            pools=pools(env.get("DAGFLOW_POOLS") or ""),
            sched_max_jobs_per_drain=env_int(env, "SCHED_MAX_JOBS_PER_DRAIN", 100, minimum=1),
            job_retry_base_s=env_float(env, "DAGFLOW_JOB_RETRY_BASE_S", 30.0),
            job_retry_max_s=env_float(env, "DAGFLOW_JOB_RETRY_MAX_S", 600.0),
            panel_window_h=env_int(env, "ORCH_PANEL_WINDOW_H", 24, minimum=1),
            retry_base_s=env_float(env, "DAGFLOW_RETRY_BASE_S", 1.0),
            retry_max_s=retry_max,
            retry_jitter=jitter,
            run_ttl_s=env_int(env, "DAGFLOW_RUN_TTL_S", 7 * 24 * 3600, minimum=60),
            events_sink=sink,
            events_maxlen=env_int(env, "DAGFLOW_EVENTS_MAXLEN", 200_000, minimum=1000),
            collector_claim_s=env_float(env, "DAGFLOW_COLLECTOR_CLAIM_S", 30.0, minimum=0.1),
            lease_s=lease,
            sweep_s=sweep,
            store_retry_s=env_float(env, "DAGFLOW_STORE_RETRY_S", 60.0),
            notify_timeout_s=env_float(env, "DAGFLOW_NOTIFY_TIMEOUT_S", 10.0, minimum=0.1),
            notify_attempts=env_int(env, "DAGFLOW_NOTIFY_ATTEMPTS", 5, minimum=1),
            notify_retry_s=env_float(env, "DAGFLOW_NOTIFY_RETRY_S", 5.0, minimum=0.01),
            embedded_concurrency=env_int(env, "DAGFLOW_EMBEDDED_CONCURRENCY", 4, minimum=1),
            map_max=env_int(env, "DAGFLOW_MAP_MAX", 10_000, minimum=1),
            dashboard_host=env.get("DAGFLOW_DASHBOARD_HOST") or "127.0.0.1",
            dashboard_port=env_int(env, "DAGFLOW_DASHBOARD_PORT", 8050, minimum=1),
            dashboard_auth=env.get("DAGFLOW_DASHBOARD_AUTH") or None,
            metrics_host=env.get("DAGFLOW_METRICS_HOST") or "127.0.0.1",
            metrics_port=env_int(env, "DAGFLOW_METRICS_PORT", 9810, minimum=1),
            metrics_run_buckets=buckets(env, "DAGFLOW_METRICS_RUN_BUCKETS", RUN_BUCKETS_S),
            metrics_task_buckets=buckets(env, "DAGFLOW_METRICS_TASK_BUCKETS", TASK_BUCKETS_S),
            metrics_wait_buckets=buckets(env, "DAGFLOW_METRICS_WAIT_BUCKETS", WAIT_BUCKETS_S),
            api_host=env.get("DAGFLOW_API_HOST") or "127.0.0.1",
            api_port=env_int(env, "DAGFLOW_API_PORT", 8060, minimum=1),
            idempotency_ttl_s=env_int(env, "DAGFLOW_API_IDEMPOTENCY_TTL_S", 24 * 3600, minimum=1),
            output_store=output_store(env.get("DAGFLOW_OUTPUT_STORE") or None),
            output_inline_max=env_int(env, "DAGFLOW_OUTPUT_INLINE_MAX", 65_536, minimum=256),
            output_max=env_int(env, "DAGFLOW_OUTPUT_MAX", 268_435_456, minimum=256),
            secrets=secrets(env.get("DAGFLOW_SECRETS") or "env"),
        )
