"""Starting a scheduled firing's run: the one function Beat's task and ``dagflow schedule``
share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagflow import workflows
from dagflow.dag.alerts import Alerts, unknown_hooks
from dagflow.errors import ScheduleError, SpecError
from dagflow.events.state_store import StateRecorder
from dagflow.execution.lifecycle import start_run
from dagflow.scheduling.firing import Firing, firing_dag
from dagflow.scheduling.job_hooks import fail_job

if TYPE_CHECKING:
    from celery import Celery

    from dagflow.execution.runtime import Runtime


def start_firing(app: Celery, rt: Runtime, firing: Firing, state: StateRecorder) -> str | None:
    """Start the firing's run under its fixed run id, once, and write ``run_started``.

    A firing delivered or drained twice finds its run id in the run store and starts
    nothing, so neither ``acks_late`` nor a second drainer can start a run twice.

    Returns:
        The run id, or None if the run had been started already.

    Raises:
        SpecError: The DAG cannot be loaded, or the schedule's params do not fit its
            ``params:``; the firing's job is failed with that line first.
    """
    if rt.store.snapshot(firing.run_id) is not None:
        return None
    try:
        dag = firing_dag(firing, rt.settings)
        alerts = Alerts.from_data(firing.alerts) if firing.alerts else None
        if alerts is not None:
            hooks = unknown_hooks(
                alerts, workflows.names(), source="schedule", entry=firing.schedule_id,
                error=ScheduleError,
            )  # fmt: skip
            if hooks:
                raise ScheduleError.collect(hooks)
        state.record_event(firing.state_event("run_started", dag_name=dag.name))
        start_run(
            app, rt, dag, run_id=firing.run_id, labels=firing.labels, params=firing.params,
            alerts=alerts,
        )  # fmt: skip
    except SpecError as exc:
        fail_job(rt.jobs, firing.job_id, exc.one_line())
        raise
    return firing.run_id
