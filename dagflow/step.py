"""Executing one DAG step: the only place user code runs.

``dagflow.step(run_id, task_id)`` is the whole message. The worker reads the run's plan
from the run store (once per run per process), claims the step, merges its parents'
outputs into its params, runs the workflow, records the output, and then sends the
children that are now ready (see :mod:`dagflow.compile`). Every stage is safe to repeat
when a message is delivered twice (``acks_late``): the claim lets one delivery run, and a
step that already finished re-sends its ready children instead of running again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import redis

from dagflow import workflows
from dagflow.compile import STEP_TASK
from dagflow.errors import RunnerError, UnknownWorkflowError, WorkflowOutputError
from dagflow.lifecycle import finish_run
from dagflow.payload import merge_params
from dagflow.plan import RunPlan
from dagflow.runtime import Runtime, runtime_for
from dagflow.stores import FinishResult
from dagflow.timeouts import call_with_timeout

if TYPE_CHECKING:
    from celery import Celery, Task

logger = logging.getLogger(__name__)

#: Run store errors after which a step is tried again rather than failed.
STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: Seconds between tries of a step whose run store is unreachable.
STORE_RETRY_S = 1.0
#: Errors that another attempt cannot fix: they fail the task at once.
PERMANENT_ERRORS = (UnknownWorkflowError, WorkflowOutputError)


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def encode_output(task_id: str, value: Any) -> str:
    """Serialize a workflow's return value to JSON.

    Raises:
        WorkflowOutputError: The value holds something JSON cannot encode.
    """
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkflowOutputError(
            f"Task '{task_id}' returned a value that is not JSON-serializable: {exc}"
        ) from None


def send_children(
    app: Celery, run_id: str, plan: RunPlan, task_id: str, ready_joins: tuple[str, ...]
) -> list[str]:
    """Send ``task_id``'s single-parent children and the join children it made ready."""
    ready = [*plan.tasks[task_id].links, *ready_joins]
    if ready:
        step = app.tasks[STEP_TASK]
        with app.producer_or_acquire() as producer:
            for child in ready:
                step.apply_async(args=(run_id, child), producer=producer)
    return ready


def _redelivered_after_finish(
    app: Celery, rt: Runtime, run_id: str, plan: RunPlan, task_id: str, state: str
) -> None:
    """Finish what a worker that died after recording a step may have left undone.

    The step is not run again. Its ready children are sent again (a join's arrival set and
    the children's claims make that harmless), and a run whose tasks are all finished but
    which was never marked done is finalized.
    """
    if state == "ok":
        again = rt.store.finish(
            run_id, task_id, "ok", None, (), len(plan.tasks), plan.tasks[task_id].joins, force=True
        )
        send_children(app, run_id, plan, task_id, again.ready)
    snapshot = rt.store.snapshot(run_id)
    if snapshot is None or snapshot.status != "running":
        return
    counts = snapshot.counts
    if counts["ok"] + counts["failed"] + counts["skipped"] >= counts["total"]:
        finish_run(rt, run_id, plan, FinishResult(complete=True, counts=counts))


def execute_step(app: Celery, task: Task, run_id: str, task_id: str, store_retries: int = 0) -> Any:
    """Run one step of a run. See the module docstring for the protocol.

    Args:
        store_retries: How many of this message's Celery retries were for an unreachable run
            store rather than a failed attempt (they do not count as attempts).
    """
    rt = runtime_for(app)
    plan = rt.plan(run_id)
    if plan is None or task_id not in plan.tasks:
        logger.warning("dagflow: run %s is unknown or expired; dropping step %s", run_id, task_id)
        return None
    spec = plan.tasks[task_id]
    token = task.request.id or f"local-{task_id}"
    claim = rt.store.claim(run_id, task_id, token, spec.parents)
    if claim.state == "duplicate":
        logger.info("dagflow: step %s/%s is already being run; dropping a copy", run_id, task_id)
        return None
    if claim.state != "run":
        _redelivered_after_finish(app, rt, run_id, plan, task_id, claim.state)
        return None
    total = len(plan.tasks)
    attempt = int(task.request.retries or 0) - store_retries + 1
    common = {"task_id": task_id, "workflow_ref": spec.workflow_ref, "attempt": attempt}
    # The claim read the parents' outputs before the attempt starts: an unreachable store
    # is not a failure of the workflow and must not use up one of its attempts.
    upstream = {p: json.loads(v) for p, v in claim.outputs.items()}
    rt.emit("task_start", run_id, plan, **common)
    started = time.perf_counter()
    try:
        func = workflows.get(spec.workflow_ref)
        params = merge_params(spec.params, upstream)
        value = call_with_timeout(lambda: func(params), spec.timeout_s, f"Task '{task_id}'")
        output = encode_output(task_id, value)
    except Exception as exc:
        duration = round(time.perf_counter() - started, 6)
        error = f"{type(exc).__name__}: {exc}"
        if attempt <= spec.retries and not isinstance(exc, PERMANENT_ERRORS):
            delay = rt.retry.delay(attempt)
            rt.store.set_state(run_id, task_id, "retry")
            rt.emit("task_retry", run_id, plan, **common, delay_s=delay, error=error)
            raise task.retry(countdown=delay, max_retries=None) from None
        message = f"Task '{task_id}' failed after {_attempts(attempt)}"
        rt.emit(
            "task_fail",
            run_id,
            plan,
            **common,
            duration_s=duration,
            error=f"RunnerError: {message}: {error}",
        )
        result = rt.store.finish(run_id, task_id, "failed", None, plan.descendants(task_id), total)
        for skipped in result.newly_skipped:
            rt.emit(
                "task_skip",
                run_id,
                plan,
                task_id=skipped,
                workflow_ref=plan.tasks[skipped].workflow_ref,
                error=f"skipped: upstream task '{task_id}' failed",
            )
        if result.complete:
            finish_run(rt, run_id, plan, result)
        raise RunnerError(f"{message}: {error}") from None
    duration = round(time.perf_counter() - started, 6)
    rt.emit("task_ok", run_id, plan, **common, duration_s=duration)
    result = rt.store.finish(run_id, task_id, "ok", output, (), total, plan.tasks[task_id].joins)
    send_children(app, run_id, plan, task_id, result.ready)
    if result.complete:
        finish_run(rt, run_id, plan, result)
    return None
