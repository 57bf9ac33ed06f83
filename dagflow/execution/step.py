"""Executing one DAG step: the only place user code runs.

``dagflow.step(run_id, task_id)`` is the whole message. The worker reads the run's plan
from the run store (once per run per process) and claims a **lease** on the step. Then it
merges its parents' outputs into its params and runs the workflow while a heartbeat keeps
the lease alive (:mod:`dagflow.execution.heartbeat`). It commits the end under the lease's fencing
number; the same atomic write puts the children it made ready in the outbox. Only then does
it write ``task_ok`` and send those children. (With the run store on the broker's Redis and
the event stream on, that write also appends ``task_ok`` and pushes the messages of the
children whose only parent this is: :func:`dagflow.execution.publish.link_push`.)

Every stage is safe to repeat when a message is delivered twice:

* a copy of a step whose lease is live is dropped (``busy``), whatever its message id;
* a copy of a finished step re-sends only its children that are still pending and
  unsent, at most one message per direct child (never the whole subtree again);
* a late end from a holder that lost its lease is refused, its output discarded and a
  ``task_lease_lost`` line written.

Steps that nobody finishes (a dead worker, a lost message, a retry held by a dead worker)
are re-sent by the sweeper (:mod:`dagflow.execution.sweeper`), never by the broker's
redelivery alone.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dagflow import workflows
from dagflow.dag.payload import merge_params
from dagflow.dag.plan import RunPlan, TaskPlan
from dagflow.dag.rules import branch_choice
from dagflow.errors import RunnerError, UnknownWorkflowError, WorkflowOutputError
from dagflow.events.log import Event
from dagflow.execution.lifecycle import finish_run
from dagflow.execution.message import READY_HEADER
from dagflow.execution.publish import default_queue, link_push, send_later, send_steps
from dagflow.execution.runtime import Runtime, runtime_for
from dagflow.execution.step_io import encode_output, with_store
from dagflow.execution.timeouts import call_with_timeout
from dagflow.execution.tracebacks import user_traceback
from dagflow.stores import TERMINAL, FinishResult
from dagflow.stores.base import COUNTED, AttemptEnd, FinishRequest, Gate, Gates
from dagflow.workflows.context import RunContext

if TYPE_CHECKING:
    from celery import Celery, Task

logger = logging.getLogger(__name__)

#: Errors that another attempt cannot fix: they fail the task at once.
PERMANENT_ERRORS = (UnknownWorkflowError, WorkflowOutputError)
#: Retries due within this many seconds are also sent as a Celery ETA message (the fast
#: path); later ones are sent by the sweeper alone, so no worker holds them in memory.
ETA_MAX_S = 600.0


@dataclass(frozen=True)
class Attempt:
    """One attempt of one step, as its claim granted it: what every stage after the claim
    needs, in one value.

    Attributes:
        app: The Celery app the step runs on (children and retries are sent through it).
        rt: The app's runtime.
        plan: The run's plan.
        run_id: The run.
        task_id: The task.
        number: The attempt's number (1 for the first).
        fence: The lease's fencing number: the store refuses this attempt's end once
            another delivery holds a larger one.
        worker: The worker's node name, or None.
    """

    app: Celery
    rt: Runtime
    plan: RunPlan
    run_id: str
    task_id: str
    number: int
    fence: int
    worker: str | None

    @property
    def spec(self) -> TaskPlan:
        """The task's plan."""
        return self.plan.tasks[self.task_id]

    def fields(self) -> dict[str, Any]:
        """The fields every event of this attempt carries."""
        return {
            "task_id": self.task_id,
            "workflow_ref": self.spec.workflow_ref,
            "attempt": self.number,
            "worker": self.worker,
            "fence": self.fence,
        }

    def event(self, name: str, **more: Any) -> Event:
        """One event of this attempt (built, not written)."""
        return self.rt.event(name, self.run_id, self.plan, **self.fields(), **more)


def finish_gates(plan: RunPlan, task_id: str, unchosen: Sequence[str] = ()) -> Gates:
    """What the store needs to decide ``task_id``'s children by their trigger rules.

    Only a plan with trigger rules or branches (:attr:`RunPlan.ruled`) needs it: the
    finish of any other plan takes the links and joins path, with nothing more to send or
    compute per step.
    """
    nodes = tuple(
        Gate(t, plan.tasks[t].trigger_rule, plan.tasks[t].parents, plan.tasks[t].children)
        for t in plan.descendants(task_id)
    )
    return Gates(plan.tasks[task_id].children, nodes, tuple(unchosen))


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _after_finished(
    app: Celery, rt: Runtime, run_id: str, plan: RunPlan, task_id: str, state: str
) -> None:
    """A copy of a finished step: repair what a dead worker may have left, cheaply.

    Only children still pending and unsent are sent (at most one message per direct child,
    never a subtree), and a run whose tasks are all finished but which was never marked
    done is finalized.
    """
    if state == "ok" or plan.ruled:  # with rules, a failure may have made children ready
        children = list(plan.tasks[task_id].children)
        unsent = with_store(rt, "unsent", lambda: rt.store.unsent(run_id, children))
        send_steps(app, run_id, unsent, plan.dag_name, queues=plan.queues)
    snapshot = rt.store.snapshot(run_id)
    if snapshot is None or snapshot.status != "running":
        return
    counts = snapshot.counts
    if sum(counts.get(k, 0) for k in COUNTED) >= counts["total"]:
        finish_run(rt, run_id, plan, FinishResult(complete=True, counts=counts))


def execute_step(app: Celery, task: Task, run_id: str, task_id: str) -> Any:
    """Run one step of a run. See the module docstring for the protocol."""
    rt = runtime_for(app)
    plan = with_store(rt, "plan", lambda: rt.plan(run_id))
    if plan is None or task_id not in plan.tasks:
        logger.warning("dagflow: run %s is unknown or expired; dropping step %s", run_id, task_id)
        return None
    spec = plan.tasks[task_id]
    token = task.request.id or f"local-{uuid.uuid4().hex}"
    worker = str(task.request.hostname or "")
    lease_s = rt.settings.lease_s
    # A store that writes events appends task_start inside the claim (one round trip less
    # per step); it fills in the attempt and fence the claim gives.
    waited = _waited(app, task, plan, task_id)
    start = (
        rt.event(
            "task_start", run_id, plan, task_id=task_id, workflow_ref=spec.workflow_ref,
            attempt=1, worker=worker or None, fence=0, **waited,
        ).to_record()
        if rt.store.writes_events
        else None
    )  # fmt: skip
    claim = with_store(
        rt,
        "claim",
        lambda: rt.store.claim(run_id, task_id, token, worker, lease_s, spec.parents, event=start),
    )
    if claim.state == "busy":
        logger.info(
            "dagflow: step %s/%s is held by %s; dropping a copy", run_id, task_id, claim.holder
        )
        return None
    if claim.state == "gone":
        logger.warning("dagflow: run %s has no state for %s; dropping it", run_id, task_id)
        return None
    if claim.recorded:  # the run was cancelled: this step never starts
        logger.info("dagflow: run %s was cancelled; step %s does not start", run_id, task_id)
        _cancelled(rt, run_id, plan, task_id, claim.complete, "cancelled before it started")
        return None
    if claim.state in TERMINAL:
        _after_finished(app, rt, run_id, plan, task_id, claim.state)
        return None
    if claim.took_over:
        logger.warning(
            "dagflow: step %s/%s: the lease of %s expired; running it again (fence %d)",
            run_id, task_id, claim.took_over, claim.fence,
        )  # fmt: skip
    attempt = Attempt(app, rt, plan, run_id, task_id, claim.attempt, claim.fence, worker or None)
    # The claim read the parents' outputs before the attempt starts: an unreachable store
    # is not a failure of the workflow and must not use up one of its attempts.
    upstream = {p: json.loads(v) for p, v in claim.outputs.items()}
    if start is None:
        rt.events.emit(attempt.event("task_start", **waited))
    started = time.perf_counter()
    with rt.heartbeat.hold(run_id, task_id, attempt.fence):
        try:
            call = _workflow_call(attempt)
            params = merge_params(spec.params, upstream)
            value = call_with_timeout(lambda: call(params), spec.timeout_s, f"Task '{task_id}'")
            output: str | None = encode_output(task_id, value)
            chosen = branch_choice(task_id, value, spec.children) if spec.branch else None
            error = None
        except Exception as exc:
            output, error, chosen = None, exc, None
    duration = round(time.perf_counter() - started, 6)
    if error is None:
        return _succeeded(attempt, output, duration, chosen)
    return _failed(attempt, error, duration)


def _waited(app: Celery, task: Task, plan: RunPlan, task_id: str) -> dict[str, Any]:
    """``task_start``'s ``queue`` and ``queued_s``: the step's queue, and the seconds since its
    message was sent or its retry fell due (the message's :data:`READY_HEADER`)."""
    fields: dict[str, Any] = {"queue": plan.queues.get(task_id) or default_queue(app)}
    ready = getattr(task.request, READY_HEADER, None)
    if isinstance(ready, int | float) and not isinstance(ready, bool):
        fields["queued_s"] = round(max(time.time() - ready, 0.0), 6)
    return fields


def _workflow_call(attempt: Attempt) -> Callable[[Mapping[str, Any]], Any]:
    """The task's workflow as a one-argument call, given its run context if it takes one."""
    ref = attempt.spec.workflow_ref
    func = workflows.get(ref)
    if not workflows.takes_context(ref):
        return func
    plan = attempt.plan
    ctx = RunContext.build(
        attempt.run_id,
        attempt.task_id,
        attempt.number,
        attempt.fence,
        dag_name=plan.dag_name,
        tenant_id=plan.tenant_id,
        params=plan.params,
        labels=plan.labels,
    )
    return lambda params: func(params, ctx)  # type: ignore[call-arg]


def _cancelled(
    rt: Runtime,
    run_id: str,
    plan: RunPlan,
    task_id: str,
    complete: bool,
    why: str,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """A task ended ``cancelled`` (its run was cancelled): write ``task_cancel``, maybe close."""
    base = {"workflow_ref": plan.tasks[task_id].workflow_ref, **(fields or {})}
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


def _succeeded(
    attempt: Attempt, output: str | None, duration: float, chosen: Sequence[str] | None = None
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
        request = replace(request, gates=finish_gates(plan, task_id, unchosen))
    else:
        push = link_push(app, rt.store, run_id, spec.links, plan.dag_name, plan.queues)
        request = replace(request, links=spec.links, joins=spec.joins, push=push)
    result = with_store(rt, "finish", lambda: rt.store.finish(request))
    if result.lost:
        _lease_lost(rt, run_id, plan, attempt.fields())
        return
    if result.cancelled:
        why = "the run was cancelled while it ran; its output was discarded"
        if result.recorded:
            _cancelled(rt, run_id, plan, task_id, result.complete, why, attempt.fields())
        return
    rt.emit_with_commit(event)
    _skipped(rt, run_id, plan, task_id, result)
    pushed = set(result.pushed)
    unsent = [child for child in result.ready if child not in pushed]
    send_steps(app, run_id, unsent, plan.dag_name, queues=plan.queues)
    if result.complete:
        finish_run(rt, run_id, plan, result)


def _skipped(rt: Runtime, run_id: str, plan: RunPlan, task_id: str, result: FinishResult) -> None:
    """Write a ``task_skip`` line for each task the finish of ``task_id`` skipped."""
    for skipped in result.newly_skipped:
        why = result.skip_reasons.get(skipped, f"skipped: upstream task '{task_id}' failed")
        rt.emit(
            "task_skip",
            run_id,
            plan,
            task_id=skipped,
            workflow_ref=plan.tasks[skipped].workflow_ref,
            error=why,
        )


def _failed(attempt: Attempt, exc: Exception, duration: float) -> None:
    rt, plan, run_id, task_id = attempt.rt, attempt.plan, attempt.run_id, attempt.task_id
    error = f"{type(exc).__name__}: {exc}"
    trace = user_traceback(exc)
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
                skip=() if ruled else plan.descendants(task_id),
                total=len(plan.tasks),
                grace_s=rt.settings.lease_s,
                token=token,
                event=event.to_record(),
                end=end,
                gates=finish_gates(plan, task_id) if ruled else None,
            )
        ),
    )
    if result.lost:
        if fence:
            _lease_lost(rt, run_id, plan, fields)
        return False
    if not result.recorded:
        return False
    if result.cancelled:
        why = "the run was cancelled while it ran"
        _cancelled(rt, run_id, plan, task_id, result.complete, why, fields)
        return True
    rt.emit_with_commit(event)
    _skipped(rt, run_id, plan, task_id, result)
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
    if plan is None or task_id not in plan.tasks:
        return False
    fields = {"workflow_ref": plan.tasks[task_id].workflow_ref}
    error = f"RunnerError: Task '{task_id}' {reason}"
    return fail_step(rt, run_id, plan, task_id, 0, error, fields, token=token)
