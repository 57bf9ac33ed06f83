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
                                             (with trigger rules: parents of a wide task t
                                             that ended, however; rules.READ_ALL_MAX)
    dagflow:run:{<run_id>}:parents   hash    task -> its parents (JSON), for tasks with more
                                             than rules.READ_ALL_MAX (read by the finish)
    dagflow:run:{<run_id>}:done      list    pushed once when the run ends (wakes waiters)
    dagflow:run:{<run_id>}:notices   hash    notice -> its delivery (JSON: state, attempts,
                                             error; see stores.notifications.NoticeState)

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
    dagflow:notices           zset    notice -> when to deliver it (again) unless delivered
                                      first (ms); a member is ``<run_id>\t<notice_id>``
    dagflow:notices:tries     hash    notice -> failed delivery attempts so far
    dagflow:deadlines         zset    run -> its deadline (ms); removed when the run ends or
                                      when one sweeper claims it as missed
    dagflow:outputs           zset    run -> when its objects in the output store may be
                                      deleted (ms; its state's expiry): see
                                      dagflow.stores.output_index
    dagflow:events            stream  every event and state line (log, data), capped
    (group "collectors" on dagflow:events: the collectors' read positions and pending entries)
    (group "metrics" on dagflow:events: what ``dagflow metrics`` exporters counted)
    dagflow:metrics           hash    series -> value: the exporters' counters and histograms
                                      (see dagflow.stores.metrics)

Admission keys (``max_active_runs`` limits; a slot's scope is ``dag:<name>``,
``tenant:<id>`` or ``scheduled``)::

    dagflow:slots:<scope>             zset    run -> when it took a slot (ms): the runs
                                              holding the scope's slots
    dagflow:slots                     set     every slot key in use (for the sweeper's audit)
    dagflow:slots:waiting             hash    slot key -> runs waiting for it
    dagflow:pending:runs              hash    run -> its slots and limits (JSON) while it waits
    dagflow:pending:tenant:<id>       list    the tenant's waiting runs, oldest first
    dagflow:pending:tenants           list    tenants with waiting runs (rotated: round robin)

Pool keys (``pool:`` on a task; see dagflow.stores.pools; a member is ``<run_id>\t<task_id>``,
the full task id, so each mapped instance takes a slot of its own)::

    dagflow:pools                         hash    pool -> its size, as the last worker to
                                                  take a slot had it (DAGFLOW_POOLS)
    dagflow:pool:<pool>:holders           zset    step -> when it took (or was given) a slot (ms)
    dagflow:pool:<pool>:woken             hash    step -> 1: given a slot by a release and sent,
                                                  not yet arrived (the sweeper re-sends it)
    dagflow:pool:<pool>:parked            hash    step -> tenant: waiting for a slot
    dagflow:pool:<pool>:queue:<tenant>    list    the tenant's parked steps, oldest first
    dagflow:pool:<pool>:tenants           list    tenants with parked steps (rotated: round robin)

Scheduler keys::

    dagflow:sched:claim:<schedule>:<minute>   string  the run id that won this minute
    dagflow:sched:last                        hash    schedule -> last claimed minute

Event trigger keys (see dagflow.client.triggers; each expires DAGFLOW_RUN_TTL_S after the
first call)::

    dagflow:trigger:<event>:<sha256 of [event, event id, dag]>   string  the run id that the
                                              first ``dagflow trigger`` of this id started

Backfill keys (see dagflow.scheduling.backfill; kept DAGFLOW_RUN_TTL_S)::

    dagflow:backfill:<backfill_id>            string  the backfill as JSON: schedule, window,
                                              each minute's job and run, cancelled or not

Job keys (see dagflow.scheduling.job; a job's hash expires DAGFLOW_RUN_TTL_S after its last
change)::

    dagflow:job:<job_id>      hash    job: the job as JSON (see dagflow.scheduling.job.Job); status
    dagflow:jobs              zset    job -> enqueued at (ms): every job, newest last, for
                                      ``dagflow jobs``; trimmed to DAGFLOW_RUN_TTL_S
    dagflow:jobs:queue        list    PENDING jobs no drain took yet (oldest first)
    dagflow:jobs:draining     zset    job -> when a drain took it (ms); the sweeper puts back
                                      the ones never sent after JOB_DRAIN_LEASE_S
    dagflow:jobs:retries      zset    RETRY job -> when its next try is due (ms)

HTTP API keys (see dagflow.stores.tokens and dagflow.stores.idempotency)::

    dagflow:token:<token_id>              hash    an API token: the SHA-256 of its secret (never
                                                  the secret), tenant, admin, created, revoked
    dagflow:tokens                        zset    token id -> created at (ms), for the listing
    dagflow:idem:<tenant>:<key>           string  "<run_id>\t<fingerprint>" of POST /runs with
                                                  that idempotency key (expires, see the store)
"""

from __future__ import annotations

import hashlib
import json
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

#: API tokens (one hash each, and their index) and the idempotency keys of POST /runs.
TOKEN_PREFIX = f"{PREFIX}token:"
TOKENS = f"{PREFIX}tokens"
IDEMPOTENCY_PREFIX = f"{PREFIX}idem:"
#: Event triggers: one key per (event, event id, DAG) holding the run it started.
TRIGGER_PREFIX = f"{PREFIX}trigger:"
#: Backfills: one JSON document each.
BACKFILL_PREFIX = f"{PREFIX}backfill:"

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
#: Notifications to deliver (the notify outbox), their failed attempts, and run deadlines.
NOTICES = f"{PREFIX}notices"
NOTICE_TRIES = f"{PREFIX}notices:tries"
DEADLINES = f"{PREFIX}deadlines"
#: Admission: slot zsets, their registry, waiting counts, and the waiting runs per tenant.
SLOTS = f"{PREFIX}slots"
SLOTS_WAITING = f"{PREFIX}slots:waiting"
PENDING_RUNS = f"{PREFIX}pending:runs"
PENDING_TENANTS = f"{PREFIX}pending:tenants"
PENDING_TENANT_PREFIX = f"{PREFIX}pending:tenant:"
#: Pools: every pool's recorded size, and the prefix of one pool's keys (see pool_key).
POOLS = f"{PREFIX}pools"
POOL_PREFIX = f"{PREFIX}pool:"
#: The stream every event goes through in distributed mode, and its collectors' group.
EVENTS_STREAM = f"{PREFIX}events"
COLLECTOR_GROUP = "collectors"
#: The exporters' group on the stream, and the hash of what they counted.
METRICS_GROUP = "metrics"
METRICS = f"{PREFIX}metrics"

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


def pool_key(pool: str, part: str) -> str:
    """One key of a pool (``holders``, ``woken``, ``parked``, ``tenants``, ``queue:<tenant>``)."""
    return f"{POOL_PREFIX}{pool}:{part}"


def trigger_key(event: str, event_id: str, dag_name: str) -> str:
    """The key of the claim of one event id for one DAG (the id and name may hold any
    character, so they are hashed; the event name stays readable)."""
    digest = hashlib.sha256(json.dumps([event, event_id, dag_name]).encode()).hexdigest()
    return f"{TRIGGER_PREFIX}{event}:{digest}"


def backfill_key(backfill_id: str) -> str:
    """The key of one backfill's document."""
    return f"{BACKFILL_PREFIX}{backfill_id}"


def job_key(job_id: str) -> str:
    """The hash of one job."""
    return f"{JOB_PREFIX}{job_id}"


def token_key(token_id: str) -> str:
    """The hash of one API token."""
    return f"{TOKEN_PREFIX}{token_id}"


def idempotency_key(tenant: str, key: str) -> str:
    """The string holding the run an idempotency key of ``tenant`` started."""
    return f"{IDEMPOTENCY_PREFIX}{tenant}:{key}"


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
