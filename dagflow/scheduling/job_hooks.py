"""Jobs at the edges: where they are read from, the run hooks that move them, their retries.

The model and its transitions are pure (:mod:`dagflow.scheduling.job`); this module applies them:

* :func:`job_store` opens the jobs of a deployment (Redis) for ``dagflow jobs``, the
  dashboard and scripts; a worker's runtime carries its own (:attr:`Runtime.jobs`, in
  memory in the embedded mode).
* :func:`job_started_hook` and :func:`job_finished_hook` are installed on every runtime by
  :mod:`dagflow.celery_app`. They key on the run's ``job_id`` label, which every try keeps,
  and never on the schedule labels, which a retry drops.
* :func:`sweep_jobs` runs in every sweep (:mod:`dagflow.execution.sweeper`): it puts back
  drained jobs that were never sent and starts the retries that are due with
  :func:`dagflow.execution.rerun.retry_run` (succeeded tasks are reused), under the run id fixed for
  that try, so a retry started twice is skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagflow.errors import ConfigError, RunExistsError, RunnerError
from dagflow.execution.rerun import retry_run
from dagflow.execution.runtime import RunEnded, RunFinishedHook, RunStarted, RunStartedHook, Runtime
from dagflow.scheduling.job import (
    JOB_LABEL,
    Job,
    JobStatus,
    mark_ended,
    mark_failed,
    mark_rerun,
    mark_running,
)
from dagflow.settings import Settings
from dagflow.stores.jobs import JobStore, MemoryJobStore
from dagflow.stores.redis_jobs import RedisJobStore

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "Job",
    "JobStatus",
    "JobStore",
    "MemoryJobStore",
    "RedisJobStore",
    "job_finished_hook",
    "job_started_hook",
    "job_store",
    "rerun_job",
    "sweep_jobs",
]

logger = logging.getLogger(__name__)

#: Seconds a drained job may stay unsent before the sweeper puts it back in the queue (its
#: scheduler died between taking it and starting it).
JOB_DRAIN_LEASE_S = 300.0
#: Seconds a due retry handed to a sweep stays out of the next sweeps (it is re-armed then,
#: should that sweep have died before starting it).
RETRY_LEASE_S = 60.0
#: Due retries one sweep starts at most (the next sweep takes the rest).
RETRIES_PER_SWEEP = 100

NO_REDIS = (
    "jobs are kept in Redis: set DAGFLOW_BROKER_URL (or DAGFLOW_RESULT_BACKEND) to a redis:// "
    "(or sentinel://) URL (without a broker, `dagflow schedule` keeps its jobs in memory)"
)


def job_store(settings: Settings | None = None) -> RedisJobStore:
    """The jobs of the deployment ``settings`` point at (from the environment if None).

    Raises:
        ConfigError: Neither the broker nor the result backend is a Redis URL.
    """
    settings = settings or Settings.from_env()
    url = settings.redis_url
    if url is None:
        raise ConfigError(NO_REDIS)
    return RedisJobStore(url, ttl=settings.run_ttl_s, master_name=settings.redis_master_name)


def job_started_hook(jobs: JobStore) -> RunStartedHook:
    """A hook that makes a run's job ``RUNNING`` when the run starts (not when submitted:
    an admitted run may start later)."""

    def record(started: RunStarted) -> None:
        job_id = started.labels.get(JOB_LABEL)
        if job_id:
            now = time.time()
            job = jobs.update(str(job_id), lambda j: mark_running(j, started.run_id, now))
            if job is not None:
                jobs.sent([job.id])  # a redelivered start: it is no longer draining

    return record


def job_finished_hook(jobs: JobStore, settings: Settings) -> RunFinishedHook:
    """A hook that moves a run's job to ``SUCCESS``, ``RETRY`` or ``FAILED`` when it ends."""

    def record(ended: RunEnded) -> None:
        job_id = ended.labels.get(JOB_LABEL)
        if not job_id:
            return
        now = time.time()
        job = jobs.update(
            str(job_id),
            lambda j: mark_ended(
                j,
                ended.run_id,
                ended.status,
                now,
                settings.job_retry_base_s,
                settings.job_retry_max_s,
            ),
        )
        if job is not None:
            logger.info(
                "dagflow: job %s (%s) is %s after run %s",
                job.id, job.schedule_id, job.status.value, ended.run_id,
            )  # fmt: skip

    return record


def fail_job(jobs: JobStore, job_id: str, error: str) -> None:
    """End the job ``FAILED`` with ``error``: its next try cannot start (a bad DAG file, an
    expired run); a no-op for an unknown or ended job."""
    if job_id:
        now = time.time()
        jobs.update(job_id, lambda j: mark_failed(j, error, now))
        jobs.sent([job_id])
        jobs.retry_started(job_id)


@dataclass(frozen=True)
class JobSweep:
    """What one sweep did to jobs."""

    requeued: tuple[str, ...] = ()
    retried: tuple[str, ...] = ()


def sweep_jobs(app: Celery, rt: Runtime, now: float | None = None) -> JobSweep:
    """Put back jobs drained and never sent, and start the job retries that are due."""
    now = time.time() if now is None else now
    requeued = rt.jobs.requeue_drained(now - JOB_DRAIN_LEASE_S)
    for job_id in requeued:
        logger.warning("dagflow: job %s was drained and never started; queued again", job_id)
    retried: list[str] = []
    for job in rt.jobs.take_due_retries(now, RETRIES_PER_SWEEP, RETRY_LEASE_S):
        if start_retry(app, rt, job):
            retried.append(job.run_id)
    return JobSweep(tuple(requeued), tuple(retried))


def rerun_job(app: Celery, rt: Runtime, job_id: str) -> str:
    """Give a ``FAILED`` job one more try now, from its last run; returns the new run's id.

    Like an automatic retry, the try reuses what the last run finished and is linked to the
    job (``dagflow jobs`` shows it, the job goes ``RUNNING``, then ``SUCCESS`` or ``FAILED``).

    Raises:
        RunnerError: The job is unknown or expired, or not ``FAILED`` (running, waiting for
            a retry, or succeeded), or its last run cannot be retried any more.
    """
    job = rt.jobs.get(job_id)
    if job is None:
        raise RunnerError(f"job {job_id} is not in the job store (unknown or expired)")
    now = time.time()
    rerun = rt.jobs.update(job_id, lambda j: mark_rerun(j, now))
    if rerun is None:
        raise RunnerError(f"job {job_id} is {job.status.value}: only a FAILED job can be re-run")
    if not start_retry(app, rt, rerun):
        updated = rt.jobs.get(job_id)
        if updated is not None and updated.error:
            raise RunnerError(f"job {job_id} cannot be re-run: {updated.error}")
    return rerun.run_id


def start_retry(app: Celery, rt: Runtime, job: Job) -> bool:
    """Start ``job``'s next try from its last run; False if there was nothing to start."""
    if job.status != JobStatus.RETRY or job.last_run_id is None:
        rt.jobs.retry_started(job.id)  # moot: the job moved on
        return False
    last = rt.store.snapshot(job.last_run_id)
    if last is not None and last.status == "running":
        # The hook that scheduled this retry runs just before the run is marked ended.
        soon = time.time() + 1.0
        rt.jobs.update(job.id, lambda j: j.model_copy(update={"retry_at": soon}))
        return False
    try:
        retry_run(app, rt, job.last_run_id, new_run_id=job.run_id)
    except RunExistsError:
        rt.jobs.retry_started(job.id)  # started by an earlier sweep
        return False
    except RunnerError as exc:
        # The last run expired or is unreadable: this job cannot be retried any more.
        logger.error("dagflow: job %s cannot be retried: %s", job.id, exc.one_line())
        fail_job(rt.jobs, job.id, f"its retry could not start: {exc.one_line()}")
        rt.jobs.retry_started(job.id)
        return False
    rt.jobs.retry_started(job.id)
    logger.info("dagflow: job %s: try %d started (run %s)", job.id, job.tries + 1, job.run_id)
    return True
