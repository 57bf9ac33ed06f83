"""Starting a run and ending one: the two moments every path of dagflow shares.

:func:`start_run` is the one way a run begins, whether a client submits it
(:meth:`dagflow.runner.Runner.submit`) or a worker starts a scheduled firing
(``dagflow.start_scheduled_run``): store the plan, write ``dag_start``, send the start canvas.
:func:`finish_run` is the one way it ends: write ``dag_done``, record the final status,
wake waiters and call the runtime's run-finished hooks.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagflow.dag import Dag
from dagflow.plan import RunPlan
from dagflow.runtime import RunEnded, Runtime
from dagflow.stores import FinishResult

if TYPE_CHECKING:
    from celery import Celery

#: dag_start carries the DAG's edges (for the dashboard's graph) up to this many.
MAX_EDGES_IN_EVENT = 1000


def start_run(
    app: Celery,
    rt: Runtime,
    dag: Dag,
    *,
    run_id: str | None = None,
    labels: Mapping[str, Any] | None = None,
) -> str:
    """Store the run's plan, emit ``dag_start`` and send the start canvas; return the run id.

    Args:
        app: The Celery app whose broker the steps go to.
        rt: The app's runtime (run store and event log).
        dag: A loaded DAG.
        run_id: The run's id (a new UUID if None).
        labels: Metadata kept with the run; ``schedule_id`` marks a scheduled run.
    """
    run_id = run_id or uuid.uuid4().hex
    compiled = dag.compiled
    spec = compiled.spec
    plan = compiled.plan()
    meta = {
        "dag_name": spec.name,
        "tenant_id": spec.tenant_id,
        "source": dag.source,
        "started_at": time.time(),
        "labels": dict(labels or {}),
    }
    # The roots go into the outbox with the plan: if the start canvas is lost, the sweeper
    # sends them.
    edges = [[p, c] for c in compiled.graph.order for p in compiled.graph.parents[c]]
    event = rt.event(
        "dag_start",
        run_id,
        plan,
        tasks=len(spec.tasks),
        edges=edges if len(edges) <= MAX_EDGES_IN_EVENT else None,
    )
    rt.store.create_run(
        run_id,
        plan.to_json(),
        meta,
        compiled.graph.order,
        roots=compiled.graph.roots,
        grace_s=rt.settings.lease_s,
        event=event.to_record(),
    )
    if not rt.store.writes_events:
        rt.events.emit(event)
    compiled.start_canvas(app, run_id).apply_async()
    return run_id


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
    if snapshot is not None and snapshot.status != "running":
        return
    meta = snapshot.meta if snapshot else {}
    status = "failed" if result.counts.get("failed", 0) or error else "success"
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
    if not rt.store.writes_events:
        rt.events.emit(event)
    rt.store.mark_done(run_id, status, fields, event.to_record())
