"""The queue panel's jobs: counts by status and the newest jobs, read from the job store.

Jobs live in Redis (:mod:`dagflow.scheduling.job_hooks`); without it the panel says so.
Like the other panels, the jobs follow the tenant filter. Counts are over the newest
:data:`JOBS_SCANNED` jobs, so a refresh costs one bounded read however long the history is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dash import html

from dagflow.dashboard.actions import ActionGuard, job_buttons
from dagflow.dashboard.layout import ROW, Column, count_card, keep, linked, plain, table, when
from dagflow.scheduling.job import Job, JobStatus
from dagflow.settings import Settings
from dagflow.stores.queue_stats import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S
from dagflow.stores.redis_jobs import RedisJobStore
from dagflow.stores.transport import BACKEND_ERRORS

#: Newest jobs the counts are taken over, and rows in the recent-jobs table.
JOBS_SCANNED = 1000
RECENT_JOBS = 10

#: What reading the jobs may raise without the panel failing (it shows the error instead).
PANEL_ERRORS: tuple[type[BaseException], ...] = (*BACKEND_ERRORS, ValueError)
NO_JOBS = "Jobs are kept in Redis: set DAGFLOW_BROKER_URL to see the scheduled jobs"

JOB_COLUMNS: list[Column] = [
    ("id", "Job", plain),
    ("schedule_id", "Schedule", plain),
    ("tenant_id", "Tenant", plain),
    ("status", "Status", plain),
    ("tries", "Tries", plain),
    ("run_cell", "Last run", keep),
    ("enqueued", "Enqueued (UTC)", when),
]


@dataclass(frozen=True)
class JobsView:
    """What the panel shows of the jobs (of one tenant, or all).

    Attributes:
        counts: Jobs per status among the newest :data:`JOBS_SCANNED`.
        recent: The newest jobs, newest first.
        error: Why Redis could not be read, or None.
    """

    counts: dict[str, int] = field(default_factory=dict)
    recent: tuple[Job, ...] = ()
    error: str | None = None


def summarize_jobs(newest: Sequence[Job], recent: int = RECENT_JOBS) -> JobsView:
    """Counts by status and the first ``recent`` of ``newest`` (pure)."""
    counts = {s.value: 0 for s in JobStatus}
    for job in newest:
        counts[job.status.value] += 1
    return JobsView(counts=counts, recent=tuple(newest[:recent]))


def probe_jobs(settings: Settings, tenant: str | None) -> JobsView | None:
    """The jobs in the deployment's Redis (None without one); never raises for Redis."""
    url = settings.redis_url
    if url is None:
        return None
    store = RedisJobStore(
        url,
        master_name=settings.redis_master_name,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
    )
    try:
        return summarize_jobs(store.jobs(tenant=tenant, limit=JOBS_SCANNED, scan=JOBS_SCANNED))
    except PANEL_ERRORS as exc:
        return JobsView(error=f"Redis error: {type(exc).__name__}: {exc}")
    finally:
        store.close()


def _row(job: Job) -> dict[str, Any]:
    enqueued = datetime.fromtimestamp(job.enqueued_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {**job.to_dict(), "enqueued": enqueued}


def jobs_section(view: JobsView | None, search: str, guard: ActionGuard | None = None) -> list[Any]:
    """The panel's job cards, recent-jobs table and a Re-run button per failed job (when
    actions are on); links keep the tenant filter."""
    if view is None:
        # One line: the empty table says it (a note above it said it a second time).
        return [table("queue-jobs", JOB_COLUMNS, [], NO_JOBS)]
    if view.error:
        return [html.P(view.error, id="jobs-error", style={"color": "#c62828"})]
    cards = [
        count_card(f"Jobs {status.value.lower()}", view.counts.get(status.value, 0),
                   f"jobs-{status.value.lower()}")
        for status in JobStatus
    ]  # fmt: skip
    rows = linked([_row(job) for job in view.recent], search, run_key="last_run_id")
    failed = [job.id for job in view.recent if job.status == JobStatus.FAILED and job.runs]
    return [
        html.Div(cards, style=ROW),
        table("queue-jobs", JOB_COLUMNS, rows, "No jobs yet."),
        *job_buttons(guard, failed),
    ]
