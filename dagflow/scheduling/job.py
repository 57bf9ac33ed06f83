"""The Job model: one scheduled DAG execution, its tries and its status (pure).

A scheduler that wins a ``{schedule_id, minute}`` claim makes a :class:`Job` (``PENDING``);
a drain hands it to a worker, its run's start makes it ``RUNNING``, and its run's end makes
it ``SUCCESS``, ``RETRY`` (failed, another try is due at ``retry_at``) or ``FAILED`` (failed
with no try left, or cancelled). Every function here takes the current time as a parameter
and returns a new job (or None when the event does not apply), so the stores can apply a
transition atomically and tests need no clock::

    PENDING --run starts--> RUNNING --success--> SUCCESS
                               |--failed, tries left--> RETRY --retry starts--> RUNNING
                               '--failed (none left) or cancelled--> FAILED
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The run label that links every try's run to its job (kept by ``dagflow.execution.rerun``).
JOB_LABEL = "job_id"


class JobStatus(StrEnum):
    """Where a job is in its lifecycle (the spec's names)."""

    PENDING = "PENDING"  # enqueued, waiting for a drain and a worker
    RUNNING = "RUNNING"  # a try's run started
    SUCCESS = "SUCCESS"  # a try succeeded
    FAILED = "FAILED"  # failed after all retries, or cancelled
    RETRY = "RETRY"  # a try failed; the next one is due at retry_at

    @property
    def ended(self) -> bool:
        """True for a status no event changes any more."""
        return self in (JobStatus.SUCCESS, JobStatus.FAILED)


class Job(BaseModel):
    """One scheduled DAG execution (the spec's Persistent Queue entry).

    Attributes:
        id: The job's id, chosen when the minute was claimed.
        dag_path: The DAG file, relative to the deployment root.
        tenant_id: The tenant the runs are for.
        schedule_id: The schedule that fired.
        status: See :class:`JobStatus`.
        enqueued_at: When the job was created (epoch seconds).
        max_retries: Tries after the first one that a failure may use.
        scheduled_minute: The UTC minute that fired, ``2026-11-26T10:05:00Z``.
        params: The schedule's run-level params.
        run_id: The run of the current try: the one to start next while ``PENDING`` or
            ``RETRY``, else the last one started.
        runs: The runs of the tries that started, oldest first.
        retry_at: When the next try is due (epoch seconds), while ``RETRY``.
        updated_at: When the status last changed (epoch seconds).
        last_status: The last run's status (``success``, ``failed``, ``cancelled``).
        error: Why the job failed without a run to show it (its DAG could not start).
        alerts: The schedule entry's alert fields, added to the DAG's for each try's run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    dag_path: str
    tenant_id: str
    schedule_id: str
    status: JobStatus = JobStatus.PENDING
    enqueued_at: float
    max_retries: int = Field(default=0, ge=0)
    scheduled_minute: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    run_id: str
    runs: tuple[str, ...] = ()
    retry_at: float | None = None
    updated_at: float = 0.0
    last_status: str | None = None
    error: str | None = None
    alerts: dict[str, Any] = Field(default_factory=dict)

    @property
    def tries(self) -> int:
        """Tries whose run started."""
        return len(self.runs)

    @property
    def last_run_id(self) -> str | None:
        """The run of the latest try that started, or None before the first one."""
        return self.runs[-1] if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON values, with ``tries`` and ``last_run_id`` (``dagflow jobs --json``)."""
        return {
            **self.model_dump(mode="json"),
            "tries": self.tries,
            "last_run_id": self.last_run_id,
        }


def backoff_s(tries: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before try ``tries + 1`` after try ``tries`` failed.

    Exponential, ``base_s * 2 ** (tries - 1)``, capped at ``max_s``: a DAG that fails for
    an outage is not hammered, and a long outage does not push the next try out for hours.
    """
    if tries < 1:
        return 0.0
    return float(min(base_s * 2 ** min(tries - 1, 62), max_s))


def retry_run_id(job_id: str, attempt: int) -> str:
    """The run id of try ``attempt`` (2, 3, ...) of a job.

    Fixed in advance, so a retry started twice (two sweeps, a redelivery) finds its run
    already in the store and is skipped.
    """
    return f"{job_id}-{attempt}"


def mark_running(job: Job, run_id: str, now: float) -> Job | None:
    """The job once the run ``run_id`` started; None if that run is not its next try.

    A run whose end was recorded first (a fast run on another worker) is already in
    ``runs``, so a late start never turns an ended try back into ``RUNNING``.
    """
    if job.status not in (JobStatus.PENDING, JobStatus.RETRY) or run_id != job.run_id:
        return None
    if run_id in job.runs:
        return None
    return job.model_copy(
        update={
            "status": JobStatus.RUNNING,
            "runs": (*job.runs, run_id),
            "retry_at": None,
            "updated_at": now,
        }
    )


def mark_ended(
    job: Job, run_id: str, run_status: str, now: float, base_s: float, max_s: float
) -> Job | None:
    """The job once its run ``run_id`` ended with ``run_status``; None if it does not apply.

    ``success`` ends the job ``SUCCESS``. ``failed`` makes it ``RETRY`` (the next try due
    after :func:`backoff_s`) while ``max_retries`` are left, else ``FAILED``. ``cancelled``
    ends it ``FAILED`` with no retry: an operator stopped it on purpose.
    """
    if job.status.ended or run_id != job.run_id:
        return None
    runs = job.runs if run_id in job.runs else (*job.runs, run_id)
    update: dict[str, Any] = {"runs": runs, "updated_at": now, "last_status": run_status}
    if run_status == "success":
        return job.model_copy(update={**update, "status": JobStatus.SUCCESS, "retry_at": None})
    if run_status == "failed" and len(runs) <= job.max_retries:
        return job.model_copy(
            update={
                **update,
                "status": JobStatus.RETRY,
                "retry_at": now + backoff_s(len(runs), base_s, max_s),
                "run_id": retry_run_id(job.id, len(runs) + 1),
            }
        )
    return job.model_copy(update={**update, "status": JobStatus.FAILED, "retry_at": None})


def mark_rerun(job: Job, now: float) -> Job | None:
    """The ``FAILED`` job given one more try by an operator: ``RETRY``, due ``now``, from
    its last run (None if it is not ``FAILED`` or never ran: there is nothing to re-run).

    The try counts like any other: if it fails, the job ends ``FAILED`` again unless
    ``max_retries`` still has tries left.
    """
    if job.status != JobStatus.FAILED or not job.runs:
        return None
    update = {
        "status": JobStatus.RETRY,
        "retry_at": now,
        "run_id": retry_run_id(job.id, len(job.runs) + 1),
        "updated_at": now,
        "error": None,
    }
    return job.model_copy(update=update)


def mark_failed(job: Job, error: str, now: float) -> Job | None:
    """The job ended ``FAILED`` because its next try cannot start (None: it has ended)."""
    if job.status.ended:
        return None
    update = {"status": JobStatus.FAILED, "retry_at": None, "updated_at": now, "error": error}
    return job.model_copy(update=update)


def parse_status(text: str) -> JobStatus:
    """The status named ``text`` (any case).

    Raises:
        ValueError: Not a status; the message lists the valid ones.
    """
    try:
        return JobStatus(text.strip().upper())
    except ValueError:
        names = ", ".join(s.value.lower() for s in JobStatus)
        raise ValueError(f"unknown job status {text!r} (expected one of {names})") from None
