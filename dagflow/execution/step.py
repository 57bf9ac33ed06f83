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

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow import workflows
from dagflow.dag.mapping import ITEM_PARAM, map_item, split_instance
from dagflow.dag.payload import merge_params
from dagflow.dag.plan import RunPlan
from dagflow.dag.rules import branch_choice
from dagflow.execution import pools
from dagflow.execution.attempt import Attempt
from dagflow.execution.fanout import claim_parents, map_lengths, upstream_values
from dagflow.execution.lifecycle import finish_run
from dagflow.execution.message import READY_HEADER
from dagflow.execution.outcome import abort_step, cancelled, fail_step, failed, succeeded
from dagflow.execution.publish import default_queue, send_steps
from dagflow.execution.runtime import Runtime, runtime_for
from dagflow.execution.secrets import provider as secret_provider
from dagflow.execution.secrets import resolve_attempt
from dagflow.execution.store_retry import with_store
from dagflow.execution.timeouts import call_with_timeout
from dagflow.stores import TERMINAL, FinishResult
from dagflow.stores.base import COUNTED
from dagflow.workflows.context import RunContext

if TYPE_CHECKING:
    from celery import Celery, Task

__all__ = ["abort_step", "execute_step", "fail_step"]

logger = logging.getLogger(__name__)


def _after_finished(
    app: Celery, rt: Runtime, run_id: str, plan: RunPlan, task_id: str, state: str
) -> None:
    """A copy of a finished step: repair what a dead worker may have left, cheaply.

    Only children still pending and unsent are sent (at most one message per direct child,
    never a subtree), and a run whose tasks are all finished but which was never marked
    done is finalized.
    """
    if state == "ok" or plan.ruled:  # with rules, a failure may have made children ready
        children = list(plan.task(task_id).children)
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
    if plan is None or not plan.knows(task_id):
        logger.warning("dagflow: run %s is unknown or expired; dropping step %s", run_id, task_id)
        return None
    spec = plan.task(task_id)
    if not pools.gate(app, rt, plan, run_id, task_id):  # pools: parked, its slot comes later
        return None
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
        lambda: rt.store.claim(
            run_id, task_id, token, worker, lease_s, claim_parents(plan, run_id, task_id), start
        ),
    )
    if claim.state == "busy":
        logger.info(
            "dagflow: step %s/%s is held by %s; dropping a copy", run_id, task_id, claim.holder
        )
        return None
    if claim.state == "gone":
        logger.warning("dagflow: run %s has no state for %s; dropping it", run_id, task_id)
        return None
    if claim.state == "mapped":  # runs as its instances, never as itself
        logger.warning("dagflow: step %s/%s is a mapped task; dropping it", run_id, task_id)
        return None
    if claim.recorded:  # the run was cancelled: this step never starts
        logger.info("dagflow: run %s was cancelled; step %s does not start", run_id, task_id)
        cancelled(rt, run_id, plan, task_id, claim.complete, "cancelled before it started")
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
    # is not a failure of the workflow and must not use up one of its attempts. (Objects
    # in the output store are read below, inside the attempt: a missing one fails it.)
    if start is None:
        rt.events.emit(attempt.event("task_start", **waited))
    started = time.perf_counter()
    with rt.heartbeat.hold(run_id, task_id, attempt.fence):
        try:
            upstream = upstream_values(plan, run_id, task_id, claim.outputs, rt.outputs.load)
            # Secrets are read here, just before the call, and only the call sees them.
            found = resolve_attempt(secret_provider(rt.settings.secrets), spec.params, plan.params)
            attempt = replace(attempt, redactor=found.redactor)
            call = _workflow_call(attempt, found.run_params)
            params = _params(attempt, upstream, found.task_params)
            value = call_with_timeout(lambda: call(params), spec.timeout_s, f"Task '{task_id}'")
            output: str | None = rt.outputs.encode(
                run_id, task_id, attempt.fence, value, attempt.redactor
            )
            chosen = branch_choice(task_id, value, spec.children) if spec.branch else None
            # What each child mapped over this output gets, committed with the output.
            lengths = map_lengths(plan, task_id, value, rt.settings.map_max) if plan.mapped else {}
            error = None
        except Exception as exc:
            output, error, chosen, lengths = None, exc, None, {}
    duration = round(time.perf_counter() - started, 6)
    if error is None:
        return succeeded(attempt, output, duration, chosen, lengths)
    return failed(attempt, error, duration)


def _params(
    attempt: Attempt, upstream: Mapping[str, Any], own: Mapping[str, Any]
) -> dict[str, Any]:
    """The workflow's params: its own (``own``: with their secrets resolved), its parents'
    outputs under namespaced keys and, for an instance of a mapped task, its ``item``."""
    spec = attempt.spec
    params = merge_params(own, upstream)
    index = split_instance(attempt.task_id)[1]
    if spec.map_from is not None and index is not None:
        parent, key = spec.map_from
        params[ITEM_PARAM] = map_item(upstream.get(parent), key, index)
    return params


def _waited(app: Celery, task: Task, plan: RunPlan, task_id: str) -> dict[str, Any]:
    """``task_start``'s ``queue`` and ``queued_s``: the step's queue, and the seconds since its
    message was sent or its retry fell due (the message's :data:`READY_HEADER`)."""
    fields: dict[str, Any] = {"queue": plan.task(task_id).queue or default_queue(app)}
    ready = getattr(task.request, READY_HEADER, None)
    if isinstance(ready, int | float) and not isinstance(ready, bool):
        fields["queued_s"] = round(max(time.time() - ready, 0.0), 6)
    return fields


def _workflow_call(
    attempt: Attempt, run_params: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], Any]:
    """The task's workflow as a one-argument call, given its run context (with the run's
    ``params``, their secrets resolved) if it takes one."""
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
        params=run_params,
        labels=plan.labels,
        map_index=split_instance(attempt.task_id)[1],
    )
    return lambda params: func(params, ctx)  # type: ignore[call-arg]
