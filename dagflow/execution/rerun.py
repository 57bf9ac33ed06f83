"""Retrying a run (``dagflow retry``, :meth:`RunHandle.retry`): Airflow's "clear failed".

A retry is a new run of the same plan. Tasks that succeeded in the old run are **reused**:
they start ``ok`` in the new run with their outputs copied (an output kept in the output
store is copied there into the new run's folder), their workflows do not run
again, and each gets a ``task_reused`` event (``reused_from``: the old run) instead of
``task_ok``, so the event log never claims a workflow ran when it did not. The failed,
skipped and cancelled tasks run again (and, under trigger rules, branch tasks, so they
choose again, and the parents of a ``one_failed`` task, so its rule is decided again). The new
run records ``retry_of`` in its labels, in its plan (the run context) and in its
``dag_start``. It is rebuilt from the old run's stored plan and metadata alone: the DAG file
is not read again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow.dag.mapping import instance_id, split_instance
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
    again = _rerun_anyway(old) | _unexpanded_sources(old, states)
    ok = [t for t in old.tasks if states.get(t) == "ok" and t not in again]
    expanded = _expanded(old, states, set(ok))
    instances = [i for ids in expanded.values() for i in ids]
    ok += [i for i in instances if states.get(i) == "ok"]
    new_run_id = new_run_id or uuid.uuid4().hex
    # Objects of reused outputs are copied into the new run's folder: it owns them, and
    # they expire with it, not with the old run.
    reused = rt.outputs.copy_reused(rt.store.outputs(run_id, ok), new_run_id)
    labels: dict[str, Any] = {
        k: v for k, v in dict(snap.meta.get("labels") or {}).items() if k not in SCHEDULE_LABELS
    }
    labels["retry_of"] = run_id
    context = {k: v for k, v in old.labels.items() if k not in SCHEDULE_LABELS}
    plan = replace(old, version=PLAN_VERSION, labels={**context, "retry_of": run_id})
    start = [
        t
        for t, task in plan.tasks.items()
        if t not in reused and t not in expanded and all(p in reused for p in task.parents)
    ]
    maps: dict[str, tuple[int, int, int]] = {}
    for task_id, ids in expanded.items():
        # Only the instances that did not succeed run again, max_parallel of them at first.
        again_ids = [i for i in ids if i not in reused]
        first = again_ids[: plan.tasks[task_id].max_parallel or len(again_ids)]
        start += first
        after = ids.index(first[-1]) + 1 if len(first) < len(again_ids) else -1
        maps[task_id] = (len(ids), len(again_ids), after)
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
        [*plan.tasks, *instances],
        start,
        run_id=new_run_id,
        edges=edges,
        reused=reused,
        arrivals=arrivals,
        maps=maps,
    )


def _expanded(plan: RunPlan, states: Mapping[str, str], ok: set[str]) -> dict[str, list[str]]:
    """Mapped tasks that did not succeed but had instances, and their instance ids in index
    order: the retry starts them expanded, reusing the instances that succeeded."""
    found: dict[str, list[str]] = {}
    for task_id, task in plan.tasks.items():
        if task.map_from is None or task_id in ok or task.map_from[0] not in ok:
            continue
        count = sum(1 for t in states if split_instance(t)[0] == task_id and t != task_id)
        if count:
            found[task_id] = [instance_id(task_id, i) for i in range(count)]
    return found


def _unexpanded_sources(plan: RunPlan, states: Mapping[str, str]) -> set[str]:
    """Map parents that run again: a mapped task that never expanded (its parent's list was
    unusable, or it was skipped or cancelled first) is expanded again by its parent's end."""
    again: set[str] = set()
    for task_id, task in plan.tasks.items():
        if task.map_from is None or states.get(task_id) == "ok":
            continue
        if not any(split_instance(t)[0] == task_id and t != task_id for t in states):
            again.add(task.map_from[0])
    return again


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
