"""Where jobs live: the :class:`JobStore` contract and its in-memory twin (embedded mode).

A store keeps each job, an index by enqueue time (newest first for listings), a queue of
``PENDING`` jobs no drain took yet, the jobs a drain took but whose start was not confirmed
(``draining``, by when they were taken), and the due times of ``RETRY`` jobs. The Redis
store (:mod:`dagflow.stores.redis_jobs`) keeps the same things in Redis; both pass
``tests/integration/test_job_store_contract.py``.

Drains and retries are **at least once**: a job taken by a process that dies before
starting it comes back (:meth:`JobStore.requeue_drained`, :meth:`JobStore.take_due_retries`
re-arms what it hands out). Starting twice is harmless because a try's run id is fixed in
advance and a start skips a run that exists.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from dagflow.scheduling.job import Job, JobStatus

#: A transition: the job after an event, or None to leave it as it is.
Change = Callable[[Job], Job | None]
#: Jobs the in-memory store keeps at most; beyond it the oldest ended ones are forgotten
#: (a ``dagflow schedule --serve`` without Redis runs for weeks).
MEMORY_JOBS_MAX = 10_000


class JobStore(Protocol):
    """What the scheduler, the run hooks, the sweeper and the ``jobs`` command need."""

    def add(self, jobs: Sequence[Job], *, queue: bool = True) -> None:
        """Store new ``PENDING`` jobs and queue them for a drain, in order (``queue=False``:
        store them only, for a caller that starts their runs itself: ``dagflow backfill``)."""

    def drain(self, limit: int, now: float) -> list[Job]:
        """Take at most ``limit`` queued jobs, oldest first, and mark them draining at ``now``."""

    def sent(self, job_ids: Sequence[str]) -> None:
        """The drained jobs ``job_ids`` were handed to a worker: they leave ``draining``."""

    def requeue_drained(self, before: float) -> list[str]:
        """Put back at the queue's head the jobs drained before ``before`` and never sent."""

    def get(self, job_id: str) -> Job | None:
        """The job, or None if unknown or expired."""

    def update(self, job_id: str, change: Change) -> Job | None:
        """Apply ``change`` atomically; return the new job (None: unknown or unchanged).

        A job that becomes ``RETRY`` is indexed by ``retry_at``; any other status removes it
        from that index.
        """

    def take_due_retries(self, now: float, limit: int, lease_s: float) -> list[Job]:
        """Jobs whose retry is due at ``now``, each re-armed ``lease_s`` later until
        :meth:`retry_started` (so a sweeper that dies mid-way loses nothing)."""

    def retry_started(self, job_id: str) -> None:
        """The job's retry was started (or is moot): drop it from the due retries."""

    def jobs(
        self,
        *,
        schedule: str | None = None,
        tenant: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        scan: int = 5000,
    ) -> list[Job]:
        """The newest jobs matching the filters, newest first, among the newest ``scan``."""

    def queued(self) -> int:
        """``PENDING`` jobs waiting for a drain."""


class MemoryJobStore:
    """A :class:`JobStore` in this process (the embedded mode: jobs die with it).

    Args:
        max_jobs: Jobs kept at most (the oldest ended ones are dropped first).
    """

    def __init__(self, max_jobs: int = MEMORY_JOBS_MAX) -> None:
        self.max_jobs = max_jobs
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._draining: dict[str, float] = {}
        self._retries: dict[str, float] = {}

    def add(self, jobs: Sequence[Job], *, queue: bool = True) -> None:
        with self._lock:
            for job in jobs:
                self._jobs[job.id] = job
                if queue:
                    self._queue.append(job.id)
            extra = len(self._jobs) - self.max_jobs
            if extra > 0:
                ended = sorted((j.enqueued_at, j.id) for j in self._jobs.values() if j.status.ended)
                for _, job_id in ended[:extra]:
                    del self._jobs[job_id]

    def drain(self, limit: int, now: float) -> list[Job]:
        with self._lock:
            taken: list[Job] = []
            while self._queue and len(taken) < limit:
                job_id = self._queue.popleft()
                if job_id in self._jobs:
                    self._draining[job_id] = now
                    taken.append(self._jobs[job_id])
            return taken

    def sent(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._draining.pop(job_id, None)

    def requeue_drained(self, before: float) -> list[str]:
        with self._lock:
            stale = sorted((t, j) for j, t in self._draining.items() if t < before)
            back = [j for _, j in stale]
            for job_id in reversed(back):
                del self._draining[job_id]
                self._queue.appendleft(job_id)
            return back

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def update(self, job_id: str, change: Change) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            new = change(job) if job is not None else None
            if new is None:
                return None
            self._jobs[job_id] = new
            if new.status == JobStatus.RETRY and new.retry_at is not None:
                self._retries[job_id] = new.retry_at
            else:
                self._retries.pop(job_id, None)
            return new

    def take_due_retries(self, now: float, limit: int, lease_s: float) -> list[Job]:
        with self._lock:
            due = sorted((t, j) for j, t in self._retries.items() if t <= now)[:limit]
            for _, job_id in due:
                if job_id in self._jobs:
                    self._retries[job_id] = now + lease_s
                else:
                    del self._retries[job_id]
            return [self._jobs[j] for _, j in due if j in self._jobs]

    def retry_started(self, job_id: str) -> None:
        with self._lock:
            self._retries.pop(job_id, None)

    def jobs(
        self,
        *,
        schedule: str | None = None,
        tenant: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        scan: int = 5000,
    ) -> list[Job]:
        with self._lock:
            newest = sorted(self._jobs.values(), key=lambda j: j.enqueued_at, reverse=True)
        return select(newest[:scan], schedule, tenant, status, limit)

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)


def select(
    newest: Sequence[Job],
    schedule: str | None,
    tenant: str | None,
    status: JobStatus | None,
    limit: int,
) -> list[Job]:
    """The first ``limit`` of ``newest`` that match every filter given."""
    out: list[Job] = []
    for job in newest:
        if schedule is not None and job.schedule_id != schedule:
            continue
        if tenant is not None and job.tenant_id != tenant:
            continue
        if status is not None and job.status != status:
            continue
        out.append(job)
        if len(out) >= limit:
            break
    return out
