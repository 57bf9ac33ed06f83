"""How an attempt ends, committed under its lease: success, a durable retry, a failure.

Each end is one atomic write to the run store (:meth:`RunStore.finish` or
:meth:`RunStore.retry`) under the attempt's fencing number; only after it does the step write
its event (``task_ok``, ``task_retry``, ``task_fail``, and the ``task_skip``, ``map_expand``
and ``map_done`` lines of what the finish decided; a store that writes events appended them
in that write already) and send the children the write made ready. A holder that lost its
lease is told so and writes ``task_lease_lost`` instead; in a cancelled run the end is
recorded ``cancelled``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow.dag.plan import RunPlan
from dagflow.errors import (
    OutputMissingError,
    RunnerError,
    SecretError,
    UnknownWorkflowError,
    WorkflowOutputError,
)
from dagflow.events.log import Event
from dagflow.execution import pools
from dagflow.execution.attempt import Attempt
from dagflow.execution.fanout import finish_gates, map_events
from dagflow.execution.lifecycle import finish_run
from dagflow.execution.publish import link_push, send_later, send_steps
from dagflow.execution.runtime import Runtime, runtime_for
from dagflow.execution.store_retry import with_store
from dagflow.execution.tracebacks import user_traceback
from dagflow.stores import FinishResult
from dagflow.stores.base import AttemptEnd, FinishRequest

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Errors that another attempt cannot fix: they fail the task at once (an output over
#: DAGFLOW_OUTPUT_MAX is a WorkflowOutputError; a parent's object that is gone, a secret
#: that is not set).
PERMANENT_ERRORS = (UnknownWorkflowError, WorkflowOutputError, OutputMissingError, SecretError)
#: Retries due within this many seconds are also sent as a Celery ETA message (the fast
#: path); later ones are sent by the sweeper alone, so no worker holds them in memory.
ETA_MAX_S = 600.0


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def cancelled(
    rt: Runtime,
    run_id: str,
    plan: RunPlan,
    task_id: str,
    complete: bool,
    why: str,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """A task ended ``cancelled`` (its run was cancelled): write ``task_cancel``, maybe close."""
    base = {"workflow_ref": plan.task(task_id).workflow_ref, **(fields or {})}
    base.update(task_id=task_id, error=f"cancelled: {why}")
    base.pop("traceback", None)
    rt.emit("task_cancel", run_id, plan, **base)
    if complete:
        snapshot = rt.store.snapshot(run_id)
        counts = dict(snapshot.counts) if snapshot else {"cancelled": 1}
        finish_run(rt, run_id, plan, FinishResult(complete=True, counts=counts))


def _lease_lost(rt: Runtime, run_id: str, plan: RunPlan, fields: dict[str, Any]) -> None:
    rt.emit(
        "task_lease_lost",
        run_id,
        plan,
        **fields,
        error="lease lost: another delivery took this step over; this attempt's result "
        "was discarded",
    )


def succeeded(
    attempt: Attempt,
    output: str | None,
    duration: float,
    chosen: Sequence[str] | None = None,
    lengths: Mapping[str, str] | None = None,
) -> None:
    app, rt, plan, run_id, task_id = (
        attempt.app, attempt.rt, attempt.plan, attempt.run_id, attempt.task_id
    )  # fmt: skip
    spec = attempt.spec
    event = attempt.event("task_ok", duration_s=duration)
    request = FinishRequest(
        run_id,
        task_id,
        attempt.fence,
        "ok",
        output,
        total=len(plan.tasks),
        grace_s=rt.settings.lease_s,
        event=event.to_record(),
        end=AttemptEnd(duration_s=duration),
    )
    if plan.ruled:
        # Children are decided by their rules in the finish: which ones is known only there.
        unchosen = [c for c in spec.children if c not in chosen] if chosen is not None else []
        request = replace(request, gates=finish_gates(plan, task_id, unchosen), maps=lengths or {})
    else:
        push = link_push(app, rt.store, run_id, spec.links, plan.dag_name, plan.queues)
        request = replace(request, links=spec.links, joins=spec.joins, push=push)
    result = with_store(rt, "finish", lambda: rt.store.finish(request))
    pools.release(app, rt, plan, run_id, task_id)  # pools: the end is committed
    if result.lost or result.cancelled:
        rt.outputs.discard(output)  # the object of an output nobody will read
    if result.lost:
        _lease_lost(rt, run_id, plan, attempt.fields())
        return
    if result.cancelled:
        why = "the run was cancelled while it ran; its output was discarded"
        if result.recorded:
            cancelled(rt, run_id, plan, task_id, result.complete, why, attempt.fields())
        return
    rt.emit_with_commit(event, implied_events(rt, run_id, plan, task_id, result))
    pushed = set(result.pushed)
    unsent = [child for child in result.ready if child not in pushed]
    send_steps(app, run_id, unsent, plan.dag_name, queues=plan.queues)
    if result.complete:
        finish_run(rt, run_id, plan, result)


def implied_events(
    rt: Runtime, run_id: str, plan: RunPlan, task_id: str, result: FinishResult
) -> Iterator[Event]:
    """The lines of what the finish of ``task_id`` decided: a ``task_skip`` for each task it
    skipped, then its ``map_expand`` and ``map_done`` lines (built only when iterated)."""
    for skipped in result.newly_skipped:
        why = result.skip_reasons.get(skipped, f"skipped: upstream task '{task_id}' failed")
        yield rt.event(
            "task_skip",
            run_id,
            plan,
            task_id=skipped,
            workflow_ref=plan.task(skipped).workflow_ref,
            error=why,
        )
    yield from map_events(rt, run_id, plan, result.mapped)


def failed(attempt: Attempt, exc: Exception, duration: float) -> None:
    rt, plan, run_id, task_id = attempt.rt, attempt.plan, attempt.run_id, attempt.task_id
    redactor = attempt.redactor
    error = redactor.redact(f"{type(exc).__name__}: {exc}")
    trace = redactor.redact_opt(user_traceback(exc))
    if attempt.number <= attempt.spec.retries and not isinstance(exc, PERMANENT_ERRORS):
        delay = rt.retry.delay(attempt.number)
        event = attempt.event(
            "task_retry", delay_s=delay, error=error, traceback=trace, duration_s=duration
        )
        # Durable: the store sends it (through the sweeper) if the ETA message is lost.
        held = with_store(
            rt,
            "retry",
            lambda: rt.store.retry(
                run_id,
                task_id,
                attempt.fence,
                delay,
                rt.settings.lease_s,
                event.to_record(),
                end=AttemptEnd(duration, error, trace),
            ),
        )
        pools.release(attempt.app, rt, plan, run_id, task_id)  # pools: the retry re-acquires
        if not held:
            _lease_lost(rt, run_id, plan, attempt.fields())
            return
        rt.emit_with_commit(event)
        if delay <= ETA_MAX_S:
            send_later(attempt.app, run_id, task_id, plan.dag_name, delay, attempt.spec.queue)
        return
    message = f"Task '{task_id}' failed after {_attempts(attempt.number)}"
    failure = f"RunnerError: {message}: {error}"
    fields = {**attempt.fields(), "duration_s": duration, "traceback": trace}
    fail_step(rt, run_id, plan, task_id, attempt.fence, failure, fields)
    if redactor and error != f"{type(exc).__name__}: {exc}":
        # Celery logs the raised error with its cause: keep a secret out of both.
        raise RunnerError(f"{message}: {error}") from None
    raise RunnerError(f"{message}: {error}") from exc


def fail_step(
    rt: Runtime,
    run_id: str,
    plan: RunPlan,
    task_id: str,
    fence: int,
    error: str,
    fields: dict[str, Any],
    token: str = "",
) -> bool:
    """Commit a task's failure, write ``task_fail`` and the ``task_skip`` lines, end the run.

    Returns False if nothing was committed (the lease was lost, or the task had ended).
    """
    event = rt.event("task_fail", run_id, plan, **{**fields, "task_id": task_id}, error=error)
    end = AttemptEnd(fields.get("duration_s"), error, fields.get("traceback"))
    # Without rules every descendant is skipped at once; with them the store decides each
    # child (an all_done cleanup below a failure runs).
    ruled = plan.ruled
    skip = () if ruled else plan.descendants(task_id)
    result = with_store(
        rt,
        "finish",
        lambda: rt.store.finish(
            FinishRequest(
                run_id,
                task_id,
                fence,
                "failed",
                None,
                skip=skip,
                skip_refs={t: plan.task(t).workflow_ref for t in skip},
                total=len(plan.tasks),
                grace_s=rt.settings.lease_s,
                token=token,
                event=event.to_record(),
                end=end,
                gates=finish_gates(plan, task_id) if ruled else None,
            )
        ),
    )
    pools.release(rt.app, rt, plan, run_id, task_id)  # pools: the failure is committed
    if result.lost:
        if fence:
            _lease_lost(rt, run_id, plan, fields)
        return False
    if not result.recorded:
        return False
    if result.cancelled:
        why = "the run was cancelled while it ran"
        cancelled(rt, run_id, plan, task_id, result.complete, why, fields)
        return True
    rt.emit_with_commit(event, implied_events(rt, run_id, plan, task_id, result))
    if result.ready and rt.app is not None:
        # Children whose rule a failure meets (one_failed, all_done): in the outbox already,
        # so the sweeper sends them if this does not.
        send_steps(rt.app, run_id, result.ready, plan.dag_name, queues=plan.queues)
    if result.complete:
        finish_run(rt, run_id, plan, result)
    return True


def abort_step(app: Celery, run_id: str, task_id: str, token: str, reason: str) -> bool:
    """Fail a step from outside (revoked or terminated with ``celery control``).

    Allowed unless another delivery than ``token`` holds a live lease on it. Returns True if
    this call failed the task (and so wrote ``task_fail``).
    """
    rt = runtime_for(app)
    plan = rt.plan(run_id)
    if plan is None or not plan.knows(task_id):
        return False
    fields = {"workflow_ref": plan.task(task_id).workflow_ref}
    error = f"RunnerError: Task '{task_id}' {reason}"
    return fail_step(rt, run_id, plan, task_id, 0, error, fields, token=token)
