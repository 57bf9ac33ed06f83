"""Starting a run and ending one: the two moments every path of dagflow shares.

:func:`start_run` is the one way a run begins, whether a client submits it
(:meth:`dagflow.client.runner.Runner.submit`) or a worker starts a scheduled firing
(``dagflow.start_scheduled_run``): store the plan, write ``dag_start``, send the start canvas.
:func:`finish_run` is the one way it ends: write ``dag_done``, record the final status
(``cancelled`` for a run that ``dagflow cancel`` stopped), wake waiters and call the
runtime's run-finished hooks; the run's ``on_failure``/``on_success`` hooks and webhooks are
written with ``dag_done`` and then told (:mod:`dagflow.execution.notify`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow.dag.alerts import Alerts
from dagflow.dag.budget import check_params_size
from dagflow.dag.load import Dag
from dagflow.dag.params import resolve_params
from dagflow.dag.plan import RunPlan
from dagflow.events.log import Event
from dagflow.execution.admission import run_slots, slots_from_json, slots_to_json, waiting_line
from dagflow.execution.deadlines import deadline_fields
from dagflow.execution.notify import deliver_all, end_notices, trigger_of
from dagflow.execution.publish import send_start
from dagflow.execution.runtime import RunEnded, RunStarted, Runtime
from dagflow.stores import FinishResult
from dagflow.stores.notifications import Notice, NoticeBatch
from dagflow.stores.transport import BACKEND_ERRORS

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Waiting runs one promotion starts at most (the next run that ends starts more).
PROMOTE_BATCH = 100
#: dag_start carries the DAG's edges (for the dashboard's graph) up to this many.
MAX_EDGES_IN_EVENT = 1000
#: Labels a workflow's run context shows; they are copied into the stored plan.
CONTEXT_LABELS = ("schedule_id", "scheduled_minute", "retry_of")


def start_run(
    app: Celery,
    rt: Runtime,
    dag: Dag,
    *,
    run_id: str | None = None,
    labels: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    alerts: Alerts | None = None,
) -> str:
    """Store the run's plan, emit ``dag_start`` and send the start canvas; return the run id.

    Args:
        app: The Celery app whose broker the steps go to.
        rt: The app's runtime (run store and event log).
        dag: A loaded DAG.
        run_id: The run's id (a new UUID if None).
        labels: Metadata kept with the run; ``schedule_id`` marks a scheduled run.
        params: Run-level params over the DAG's ``params:`` defaults.
        alerts: More alerts for this run (a schedule entry's), added to the DAG's; their
            ``deadline_s`` counts from the run's ``scheduled_minute`` label.

    Raises:
        DagValidationError: ``params`` holds a key the DAG's ``params:`` does not declare,
            or the inline params are over the budget (:mod:`dagflow.dag.budget`).
    """
    compiled = dag.compiled
    spec = compiled.spec
    run_params = resolve_params(spec.params, params, dag.source)
    check_params_size(spec, run_params, dag.source)  # the params' share of the Redis budget
    labels = dict(labels or {})
    plan = compiled.plan(run_params, {k: str(labels[k]) for k in CONTEXT_LABELS if k in labels})
    meta: dict[str, Any] = {"source": dag.source, "labels": labels, "params": run_params}
    if spec.max_active_runs:
        meta["max_active_runs"] = spec.max_active_runs
    run_alerts = spec.alerts.merged(alerts) if alerts is not None else spec.alerts
    if not run_alerts.empty:
        plan = replace(plan, alerts=run_alerts)
        minute = labels.get("scheduled_minute")
        meta.update(deadline_fields(time.time(), spec.alerts, alerts, minute))
    edges = [[p, c] for c in compiled.graph.order for p in compiled.graph.parents[c]]
    return open_run(
        app, rt, plan, meta, compiled.graph.order, compiled.graph.roots, run_id=run_id, edges=edges
    )


def open_run(
    app: Celery,
    rt: Runtime,
    plan: RunPlan,
    meta: Mapping[str, Any],
    order: Sequence[str],
    start: Sequence[str],
    *,
    run_id: str | None = None,
    edges: list[list[str]] | None = None,
    reused: Mapping[str, str] | None = None,
    arrivals: Mapping[str, Sequence[str]] | None = None,
    maps: Mapping[str, tuple[int, int, int]] | None = None,
) -> str:
    """Create a run from its plan in the store, write ``dag_start``, send the ``start`` steps.

    The one way a run begins (:func:`start_run`, and :func:`dagflow.execution.rerun.retry_run` with
    ``reused`` tasks that start ``ok``). A run under a ``max_active_runs`` limit
    (:mod:`dagflow.execution.admission`) is stored ``pending`` instead and starts (``dag_start``)
    when it gets a slot of each of its scopes.
    """
    run_id = run_id or uuid.uuid4().hex
    labels = dict(meta.get("labels") or {})
    limit = meta.get("max_active_runs")
    slots = run_slots(plan.dag_name, plan.tenant_id, labels, limit, rt.settings)
    now = time.time()
    meta = {"dag_name": plan.dag_name, "tenant_id": plan.tenant_id, "started_at": now, **meta}
    if "deadline_at" not in meta:  # a retry: the DAG's deadline counts from now
        meta.update(deadline_fields(now, plan.alerts))
    if slots:
        meta.update(pending=True, submitted_at=now, slots=slots_to_json(slots), start=list(start))
        rt.store.create_run(
            run_id,
            plan.to_json(),
            meta,
            order,
            reused=reused,
            arrivals=arrivals,
            pending=True,
            maps=maps,
        )
        if rt.store.admit(run_id, plan.tenant_id, slots):
            activate_run(app, rt, run_id, plan, start, edges)
        else:
            logger.info("dagflow: run %s is pending, %s", run_id, waiting_line(slots))
            promote_runs(app, rt)  # a slot may have freed before this run queued
        return run_id
    event = _dag_start(rt, run_id, plan, edges)
    # The start steps go into the outbox with the plan: if the start canvas is lost, the
    # sweeper sends them.
    rt.store.create_run(
        run_id,
        plan.to_json(),
        meta,
        order,
        roots=start,
        grace_s=rt.settings.lease_s,
        event=event.to_record(),
        reused=reused,
        arrivals=arrivals,
        maps=maps,
    )
    _started(app, rt, run_id, plan, start, event, list(reused or ()), labels)
    return run_id


def activate_run(
    app: Celery,
    rt: Runtime,
    run_id: str,
    plan: RunPlan | None = None,
    start: Sequence[str] | None = None,
    edges: list[list[str]] | None = None,
) -> bool:
    """Start a run that was admitted: ``dag_start``, its first steps, the started hooks.

    Safe to call twice or for a run that was cancelled while it waited (returns False).
    """
    plan = plan or rt.plan(run_id)
    snap = rt.store.snapshot(run_id)
    if plan is None or snap is None:
        return False
    start = list(snap.meta.get("start") or []) if start is None else list(start)
    event = _dag_start(rt, run_id, plan, edges)
    index = f"{plan.dag_name}\t{plan.tenant_id}"
    if not rt.store.activate(
        run_id, index, time.time(), start, rt.settings.lease_s, event.to_record()
    ):
        return False
    labels = dict(snap.meta.get("labels") or {})
    _started(app, rt, run_id, plan, start, event, list(snap.meta.get("reused") or ()), labels)
    return True


def promote_runs(app: Celery, rt: Runtime, limit: int = PROMOTE_BATCH) -> int:
    """Start waiting runs that slots have freed for; returns how many started."""
    started = 0
    for run_id in rt.store.promote(limit):
        try:
            started += activate_run(app, rt, run_id)
        except Exception:  # the sweeper's audit activates it after a lease period
            logger.exception("dagflow: could not start admitted run %s", run_id)
    return started


def _dag_start(rt: Runtime, run_id: str, plan: RunPlan, edges: list[list[str]] | None) -> Event:
    if edges is None:
        edges = [[p, c] for c, task in plan.tasks.items() for p in task.parents]
    return rt.event(
        "dag_start",
        run_id,
        plan,
        tasks=len(plan.tasks),
        edges=edges if len(edges) <= MAX_EDGES_IN_EVENT else None,
        params=dict(plan.params) or None,
        retry_of=plan.labels.get("retry_of"),
    )


def _started(
    app: Celery,
    rt: Runtime,
    run_id: str,
    plan: RunPlan,
    start: Sequence[str],
    event: Event,
    reused: Sequence[str],
    labels: Mapping[str, Any],
) -> None:
    """What follows a run's start in the store: events, the first steps, the hooks."""
    rt.emit_with_commit(event)
    for task_id in reused:
        rt.emit(
            "task_reused",
            run_id,
            plan,
            task_id=task_id,
            workflow_ref=plan.task(task_id).workflow_ref,
            reused_from=plan.labels.get("retry_of"),
        )
    send_start(app, run_id, start, plan.dag_name, plan.queues)
    rt.run_started(RunStarted(run_id, plan.dag_name, plan.tenant_id, dict(labels)))


def finish_run(
    rt: Runtime, run_id: str, plan: RunPlan, result: FinishResult, error: str | None = None
) -> None:
    """Close a run: emit ``dag_done``, record the status, wake waiters, call the hooks.

    Args:
        error: Why the run ended without all its tasks ending (``stalled: ...``); the run
            is then ``failed``.
    """
    # The finish that completed the run, a copy of a finished step and the sweeper may all
    # try to close it at about the same time: one of them does, within a lease period.
    if not rt.store.try_lock(f"finish:{run_id}", f"{os.getpid()}", rt.settings.lease_s):
        return
    snapshot = rt.store.snapshot(run_id)
    if snapshot is not None and snapshot.status not in ("running", "pending"):
        return
    meta = snapshot.meta if snapshot else {}
    counts = result.counts
    if counts.get("cancelled", 0) or meta.get("cancelled"):
        status = "cancelled"
    else:
        status = "failed" if counts.get("failed", 0) or error else "success"
    started = float(meta.get("started_at", time.time()))
    duration = round(max(time.time() - started, 0.0), 6)
    event = rt.event(
        "dag_done",
        run_id,
        plan,
        status=status,
        tasks=len(plan.tasks),
        tasks_succeeded=result.counts.get("ok", 0),
        tasks_failed=result.counts.get("failed", 0),
        tasks_skipped=result.counts.get("skipped", 0),
        tasks_cancelled=result.counts.get("cancelled", 0),
        duration_s=duration,
        error=error,
    )
    fields: dict[str, Any] = {"finished_at": time.time(), "duration_s": duration}
    if error:
        fields["error"] = error
    # Hooks and the file's dag_done come before mark_done wakes the waiters, so a waiter
    # finds them written.
    rt.run_finished(
        RunEnded(
            run_id=run_id,
            dag_name=plan.dag_name,
            tenant_id=plan.tenant_id,
            status=status,
            duration_s=duration,
            labels=dict(meta.get("labels") or {}),
        )
    )
    rt.emit_with_commit(event)
    # The hooks and webhooks to tell are written in mark_done's atomic step (the notify
    # outbox): if this process dies before it tells them, the sweeper does.
    notices = end_notices(plan, trigger_of(status))
    batch = NoticeBatch(notices, rt.settings.lease_s) if notices else None
    rt.store.mark_done(run_id, status, fields, event.to_record(), notices=batch)
    slots = slots_from_json(meta.get("slots"))
    if slots:
        # The run has ended: a store error here must not fail the step that ended it. The
        # sweeper's audit frees the slots (and starts the waiting runs) within a sweep.
        try:
            rt.store.release_slots(run_id, slots)
            if rt.app is not None:
                promote_runs(rt.app, rt)
        except BACKEND_ERRORS as exc:
            logger.warning(
                "dagflow: run %s ended; its slots are left to the sweeper: %s", run_id, exc
            )
    if notices:
        deliver_all(rt, [Notice(run_id, n) for n in notices], plan)
