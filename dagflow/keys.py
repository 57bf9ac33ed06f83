"""Every Redis key dagflow writes, and the one check for a Redis URL (arq's ``constants.py``).

A panel or a tool that scans Redis must be able to tell dagflow's keys from Celery's and
kombu's: every key dagflow writes starts with :data:`PREFIX`, and nothing else does.

Run keys share one hash tag per run (``{<run_id>}``), so a run stays on one Redis Cluster
slot and its Lua scripts may touch all of them::

    dagflow:run:{<run_id>}:plan      string  the stored plan (JSON, see dagflow.dag.plan)
    dagflow:run:{<run_id>}:meta      hash    dag, tenant, labels, times, counters, status
    dagflow:run:{<run_id>}:states    hash    task -> pending|running|retry|ok|failed|skipped
    dagflow:run:{<run_id>}:claims    hash    task -> lease of the delivery allowed to run it
    dagflow:run:{<run_id>}:out       hash    task -> output JSON
    dagflow:run:{<run_id>}:info      hash    task -> how its last attempt ended (JSON: duration,
                                             error, traceback; see stores.base.AttemptEnd)
    dagflow:run:{<run_id>}:arr:<t>   set     parents of join task t that have finished
    dagflow:run:{<run_id>}:done      list    pushed once when the run ends (wakes waiters)

Keys shared by every run (the sweeper's indexes; a member is ``<run_id>\t<task_id>``)::

    dagflow:leases            zset    step -> lease expiry (ms, Redis server time)
    dagflow:outbox            zset    step -> when to (re-)send it unless claimed first (ms)
    dagflow:outbox:resends    hash    step -> times the sweeper re-sent it (backoff)
    dagflow:runs              zset    run -> last time a step of it moved (ms)
    dagflow:runs:index        hash    run -> "<dag_name>\t<tenant_id>" (kept until it ends)
    dagflow:runs:started      zset    run -> start time (ms): every run, newest last, for
                                      ``dagflow runs``; trimmed to DAGFLOW_RUN_TTL_S and
                                      RUN_HISTORY_MAX at each new run
    dagflow:lock:<name>       string  a short lock (one sweep at a time)
    dagflow:outputs           zset    run -> when its objects in the output store may be
                                      deleted (ms; its state's expiry): see
                                      dagflow.stores.output_index
    dagflow:events            stream  every event and state line (log, data), capped
    (group "collectors" on dagflow:events: the collectors' read positions and pending entries)

Admission keys (``max_active_runs`` limits; a slot's scope is ``dag:<name>``,
``tenant:<id>`` or ``scheduled``)::

    dagflow:slots:<scope>             zset    run -> when it took a slot (ms): the runs
                                              holding the scope's slots
    dagflow:slots                     set     every slot key in use (for the sweeper's audit)
    dagflow:slots:waiting             hash    slot key -> runs waiting for it
    dagflow:pending:runs              hash    run -> its slots and limits (JSON) while it waits
    dagflow:pending:tenant:<id>       list    the tenant's waiting runs, oldest first
    dagflow:pending:tenants           list    tenants with waiting runs (rotated: round robin)

Scheduler keys::

    dagflow:sched:claim:<schedule>:<minute>   string  the run id that won this minute
    dagflow:sched:last                        hash    schedule -> last claimed minute

Job keys (see dagflow.scheduling.job; a job's hash expires DAGFLOW_RUN_TTL_S after its last
change)::

    dagflow:job:<job_id>      hash    job: the job as JSON (see dagflow.scheduling.job.Job); status
    dagflow:jobs              zset    job -> enqueued at (ms): every job, newest last, for
                                      ``dagflow jobs``; trimmed to DAGFLOW_RUN_TTL_S
    dagflow:jobs:queue        list    PENDING jobs no drain took yet (oldest first)
    dagflow:jobs:draining     zset    job -> when a drain took it (ms); the sweeper puts back
                                      the ones never sent after JOB_DRAIN_LEASE_S
    dagflow:jobs:retries      zset    RETRY job -> when its next try is due (ms)
"""

from __future__ import annotations

from typing import TypeGuard

#: Every key dagflow writes starts with this.
PREFIX = "dagflow:"
#: Prefix of the keys of one run (see :func:`run_key`).
RUN_PREFIX = f"{PREFIX}run:"
#: Prefix of the scheduler's minute claims.
SCHED_PREFIX = f"{PREFIX}sched"

#: Jobs: one hash each, the index by enqueue time, the drain queue, drains in flight and
#: due retries (see the module doc).
JOB_PREFIX = f"{PREFIX}job:"
JOBS = f"{PREFIX}jobs"
JOBS_QUEUE = f"{PREFIX}jobs:queue"
JOBS_DRAINING = f"{PREFIX}jobs:draining"
JOBS_RETRIES = f"{PREFIX}jobs:retries"

#: Leases of running steps by expiry, the outbox, and the index of runs in flight.
LEASES = f"{PREFIX}leases"
OUTBOX = f"{PREFIX}outbox"
OUTBOX_RESENDS = f"{PREFIX}outbox:resends"
#: Runs with objects in the output store, by when their state expires (the output sweep).
OUTPUTS = f"{PREFIX}outputs"
RUNS = f"{PREFIX}runs"
RUN_INDEX = f"{PREFIX}runs:index"
#: Every run by start time, finished or not (the listing of ``dagflow runs``).
RUNS_STARTED = f"{PREFIX}runs:started"
#: At most this many runs are kept in :data:`RUNS_STARTED` (the oldest are dropped).
RUN_HISTORY_MAX = 100_000
LOCK_PREFIX = f"{PREFIX}lock:"
#: Admission: slot zsets, their registry, waiting counts, and the waiting runs per tenant.
SLOTS = f"{PREFIX}slots"
SLOTS_WAITING = f"{PREFIX}slots:waiting"
PENDING_RUNS = f"{PREFIX}pending:runs"
PENDING_TENANTS = f"{PREFIX}pending:tenants"
PENDING_TENANT_PREFIX = f"{PREFIX}pending:tenant:"
#: The stream every event goes through in distributed mode, and its collectors' group.
EVENTS_STREAM = f"{PREFIX}events"
COLLECTOR_GROUP = "collectors"

#: URL schemes of a Redis dagflow can keep runs in: one server (TCP, TLS, unix socket), as
#: redis-py and kombu accept them, or a primary found through Redis Sentinel (kombu's form,
#: see dagflow.redis_url).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")


def run_key(run_id: str, part: str) -> str:
    """The key of one part of a run (``plan``, ``meta``, ``states``, ...)."""
    return f"{RUN_PREFIX}{{{run_id}}}:{part}"


def slot_key(scope: str) -> str:
    """The zset of the runs holding a slot of ``scope`` (``dag:x``, ``tenant:y``, ``scheduled``)."""
    return f"{SLOTS}:{scope}"


def job_key(job_id: str) -> str:
    """The hash of one job."""
    return f"{JOB_PREFIX}{job_id}"


def step_member(run_id: str, task_id: str) -> str:
    """A step's member in :data:`LEASES` and :data:`OUTBOX` (task ids never hold a tab)."""
    return f"{run_id}\t{task_id}"


def split_member(member: str) -> tuple[str, str]:
    """``(run_id, task_id)`` of a :func:`step_member` string."""
    run_id, _, task_id = member.partition("\t")
    return run_id, task_id


def is_redis_url(url: str | None) -> TypeGuard[str]:
    """True when ``url`` names a Redis server (``redis://``, ``rediss://`` or ``unix://``) or a
    Sentinel primary (``sentinel://``): a Redis dagflow can keep runs in."""
    return bool(url) and str(url).startswith(REDIS_SCHEMES)


def is_dagflow_key(key: str) -> bool:
    """True for a key dagflow wrote (and so not a broker queue or a Celery result)."""
    return key.startswith(PREFIX)
