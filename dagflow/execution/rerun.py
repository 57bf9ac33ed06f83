"""Retrying a run (``dagflow retry``, :meth:`RunHandle.retry`): Airflow's "clear failed".

A retry is a new run of the same plan. Tasks that succeeded in the old run are **reused**:
they start ``ok`` in the new run with their outputs copied, their workflows do not run
again, and each gets a ``task_reused`` event (``reused_from``: the old run) instead of
``task_ok``, so the event log never claims a workflow ran when it did not. The failed,
skipped and cancelled tasks run again (and, under trigger rules, branch tasks, so they
choose again, and the parents of a ``one_failed`` task, so its rule is decided again). The new
run records ``retry_of`` in its labels, in its plan (the run context) and in its
``dag_start``. It is rebuilt from the old run's stored plan and metadata alone: the DAG file
is not read again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow.dag.plan import PLAN_VERSION, RunPlan
from dagflow.dag.rules import decide
from dagflow.errors import RunExistsError, RunnerError
from dagflow.execution.lifecycle import open_run
from dagflow.execution.runtime import Runtime

if TYPE_CHECKING:
    from celery import Celery

#: Labels of the old run that a retry does not carry: it is not a firing of a schedule.
SCHEDULE_LABELS = ("schedule_id", "scheduled_minute", "dag")


def retry_run(app: Celery, rt: Runtime, run_id: str, new_run_id: str | None = None) -> str:
    """Start a retry of the ended run ``run_id``; return the new run's id.

    Labels other than the schedule's are kept, ``job_id`` included, so a job's retry is
    still linked to its job.

    Args:
        new_run_id: The new run's id (a new UUID if None). A job's retry passes a fixed one,
            so starting it twice is detected.

    Raises:
        RunExistsError: ``new_run_id`` is already a run (this retry was started before).
        RunnerError: The run is unknown or expired, still running, or succeeded (nothing
            to retry).
        PlanVersionError: The old run's plan was written by another dagflow version.
    """
    if new_run_id is not None and rt.store.snapshot(new_run_id) is not None:
        raise RunExistsError(f"run {new_run_id} (a retry of {run_id}) was started already")
    snap = rt.store.snapshot(run_id, with_states=True)
    raw = rt.store.load_plan(run_id)
    if snap is None or raw is None:
        raise RunnerError(f"run {run_id} is not in the run store (unknown or expired)")
    if snap.status in ("running", "pending"):
        raise RunnerError(
            f"run {run_id} is still running: wait for it or cancel it (dagflow cancel {run_id})"
        )
    if snap.status == "success":
        raise RunnerError(f"run {run_id} succeeded: nothing to retry")
    old = RunPlan.from_json(raw)
    states = dict(snap.states or {})
    ok = [t for t in old.tasks if states.get(t) == "ok" and t not in _rerun_anyway(old)]
    reused = rt.store.outputs(run_id, ok)
    labels: dict[str, Any] = {
        k: v for k, v in dict(snap.meta.get("labels") or {}).items() if k not in SCHEDULE_LABELS
    }
    labels["retry_of"] = run_id
    context = {k: v for k, v in old.labels.items() if k not in SCHEDULE_LABELS}
    plan = replace(old, version=PLAN_VERSION, labels={**context, "retry_of": run_id})
    start = [
        t
        for t, task in plan.tasks.items()
        if t not in reused and all(p in reused for p in task.parents)
    ]
    arrivals = {
        t: [p for p in task.parents if p in reused]
        for t, task in plan.tasks.items()
        if t not in reused and len(task.parents) > 1
    }
    meta = {
        "source": snap.meta.get("source", ""),
        "labels": labels,
        "params": dict(plan.params),
        "reused": sorted(reused),
    }
    if snap.meta.get("max_active_runs"):
        meta["max_active_runs"] = snap.meta["max_active_runs"]
    edges = [[p, c] for c, task in plan.tasks.items() for p in task.parents]
    return open_run(
        app,
        rt,
        plan,
        meta,
        list(plan.tasks),
        start,
        run_id=new_run_id,
        edges=edges,
        reused=reused,
        arrivals=arrivals,
    )


def _rerun_anyway(plan: RunPlan) -> set[str]:
    """Tasks that run again in a retry although they succeeded, so rules decide as before.

    A branch task chooses again (its other children were skipped; reused, it would leave
    them to start). A task under a rule that parents all ``ok`` cannot meet (``one_failed``)
    is decided only when a parent ends, so its parents run again too.
    """
    again = {t for t, task in plan.tasks.items() if task.branch}
    for task in plan.tasks.values():
        if task.parents and decide(task.trigger_rule, ["ok"] * len(task.parents)) != "ready":
            again.update(task.parents)
    return again
