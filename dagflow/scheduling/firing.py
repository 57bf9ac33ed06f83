"""A firing: one claimed ``{schedule_id, minute}`` whose DAG run is to start.

Firing and :class:`~dagflow.scheduling.job.Job` are two views of one due execution, split on
purpose: a :class:`Firing` is the order to start one try, a frozen message (what Beat's task
and a drain hand a worker, with ``catch_up``, which only the ticker knows); a ``Job`` is the
durable record of the execution across its tries (status, runs, next try), which only the
job store changes. :meth:`Firing.job` records a new firing; :meth:`Firing.from_job` turns a
pending job into the order to start it. Nothing else converts between them.

The claim winner makes a :class:`Firing` (the run id is chosen at claim time, so
``schedule_enqueued`` already names the run). Whoever starts it, the scheduler CLI or a
worker running Beat's ``dagflow.start_scheduled_run``, loads its DAG with
:func:`firing_dag`, writes ``run_started`` and starts the run. When the run ends,
:func:`run_finished_hook` (installed on every runtime by :mod:`dagflow.celery_app`) writes
``run_finished``: the step that ends a run knows nothing about scheduling.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from dagflow.clock import now_iso
from dagflow.dag.load import Dag, check_dag, load_dag
from dagflow.events.state_store import StateRecorder
from dagflow.execution.runtime import RunEnded, RunFinishedHook
from dagflow.scheduling.job import JOB_LABEL, Job
from dagflow.settings import Settings

logger = logging.getLogger(__name__)

#: The Celery task Beat sends for each firing (registered in :mod:`dagflow.tasks`).
START_TASK = "dagflow.start_scheduled_run"


class Firing(BaseModel):
    """One claimed ``{schedule_id, minute}``: a DAG run to start.

    Attributes:
        schedule_id: The schedule's ``id``.
        dag: The DAG file, relative to the deployment root.
        tenant: The tenant the run is for (replaces the DAG's ``tenant_id``).
        scheduled_minute: The UTC minute it is due, ``2026-11-26T10:05:00Z``.
        run_id: The run's id, chosen when the minute was claimed.
        catch_up: True if it makes up for a minute missed while no scheduler ran.
        params: The schedule entry's run-level ``params`` (checked against the DAG's
            ``params:`` block when the run starts).
        job_id: The job this firing is the first try of (chosen with the run id).
        max_retries: The schedule's ``max_retries`` (tries after a failed one).
        alerts: The schedule entry's alert fields (:meth:`dagflow.dag.alerts.Alerts.to_data`),
            added to the DAG's for this run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schedule_id: str
    dag: str
    tenant: str
    scheduled_minute: str
    run_id: str
    catch_up: bool = False
    params: dict[str, Any] = {}
    job_id: str = ""
    max_retries: int = 0
    alerts: dict[str, Any] = {}

    @classmethod
    def from_job(cls, job: Job) -> Firing:
        """The firing that starts ``job``'s first try (what a drain hands to a worker)."""
        return cls(
            schedule_id=job.schedule_id,
            dag=job.dag_path,
            tenant=job.tenant_id,
            scheduled_minute=job.scheduled_minute,
            run_id=job.run_id,
            params=job.params,
            job_id=job.id,
            max_retries=job.max_retries,
            alerts=job.alerts,
        )

    def job(self, now: float) -> Job:
        """The ``PENDING`` job of this firing, enqueued at ``now`` (epoch seconds)."""
        # model_construct: a tick makes thousands at once from validated schedules.
        return Job.model_construct(
            id=self.job_id,
            dag_path=self.dag,
            tenant_id=self.tenant,
            schedule_id=self.schedule_id,
            enqueued_at=now,
            max_retries=self.max_retries,
            scheduled_minute=self.scheduled_minute,
            params=self.params,
            run_id=self.run_id,
            updated_at=now,
            alerts=self.alerts,
        )

    @property
    def labels(self) -> dict[str, str]:
        """The run labels that make :func:`run_finished_hook` write ``run_finished`` and link
        the run to its job (``job_id``, kept by retries)."""
        labels = {
            "schedule_id": self.schedule_id,
            "scheduled_minute": self.scheduled_minute,
            "dag": self.dag,
        }
        if self.job_id:
            labels[JOB_LABEL] = self.job_id
        return labels

    def state_event(self, name: str, timestamp: str | None = None, **extra: Any) -> dict[str, Any]:
        """A state-store event about this firing (``timestamp``: now if None)."""
        return {
            "timestamp": timestamp or now_iso(),
            "event": name,
            "schedule_id": self.schedule_id,
            "tenant_id": self.tenant,
            "dag": self.dag,
            "run_id": self.run_id,
            "scheduled_minute": self.scheduled_minute,
            **extra,
        }


def firing_dag(firing: Firing, settings: Settings, root: Path | None = None) -> Dag:
    """Load the firing's DAG (relative to ``root``, default the current folder) under its tenant.

    Raises:
        SpecError: The DAG file is missing or invalid now (it is checked again at each run,
            since it may have changed after the schedule was loaded).
    """
    dag = load_dag((root or Path.cwd()) / firing.dag, settings)
    if dag.spec.tenant_id != firing.tenant:
        spec = dag.spec.model_copy(update={"tenant_id": firing.tenant})
        dag = check_dag(spec, dag.source)
    return dag


def finished_event(ended: RunEnded) -> dict[str, Any] | None:
    """The ``run_finished`` state event of a scheduled run that ended, from its run labels
    (:attr:`Firing.labels`); None for a run no schedule started."""
    labels = ended.labels
    if not labels.get("schedule_id"):
        return None
    return {
        "timestamp": now_iso(),
        "event": "run_finished",
        "schedule_id": str(labels["schedule_id"]),
        "tenant_id": ended.tenant_id,
        "dag": str(labels.get("dag", ended.dag_name)),
        "run_id": ended.run_id,
        "scheduled_minute": str(labels.get("scheduled_minute", "")),
        "status": ended.status,
        "duration_s": ended.duration_s,
    }


def run_finished_hook(state: StateRecorder) -> RunFinishedHook:
    """A hook that writes ``run_finished`` to ``state`` when a scheduled run ends."""

    def record(ended: RunEnded) -> None:
        event = finished_event(ended)
        if event is not None:
            state.record_event(event)

    return record
