"""Cancelling a run: ``dagflow cancel``, :meth:`RunHandle.cancel` and the sweeper's follow-up.

The run store does the work atomically (:meth:`~dagflow.stores.base.RunStore.cancel`): it
flags the run cancelled and ends every task nobody runs as ``cancelled``. Steps running
under a live lease are interrupted here: on prefork workers their pool process is
terminated (``revoke(token, terminate=True)``; the worker's revoke hook then commits the
end, which the flag turns into ``cancelled``); on thread pools the step stops at its next
check (its claim, its commit). Whoever ends the last open task closes the run with
``dag_done`` status ``cancelled``. Safe to call again, from any host.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagflow.errors import RunnerError
from dagflow.execution.lifecycle import finish_run
from dagflow.execution.runtime import Runtime
from dagflow.stores import FinishResult

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Signal sent to the pool process of a running step of a cancelled run.
TERMINATE_SIGNAL = "SIGTERM"


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel did.

    Attributes:
        run_id: The run.
        already_ended: True if the run had ended before: nothing was changed.
        status: The run's status (for an ended run, its final status; else ``cancelled``
            once closed, ``running`` while interrupted steps still finish).
        cancelled: Tasks this call ended as ``cancelled``.
        interrupted: Tasks that were running: their steps were told to stop.
    """

    run_id: str
    already_ended: bool
    status: str
    cancelled: tuple[str, ...] = ()
    interrupted: tuple[str, ...] = ()


def cancel_run(
    app: Celery, rt: Runtime, run_id: str, *, force: bool = False, interrupt: bool = True
) -> CancelOutcome:
    """Cancel ``run_id``: its pending steps never start, its running steps are interrupted.

    Args:
        app: The Celery app whose workers run the steps (revokes go over its broker).
        rt: The app's runtime.
        run_id: The run.
        force: End running steps as ``cancelled`` now, without waiting for them (their
            holders die with this process: an embedded run on Ctrl+C or ``--timeout``).
        interrupt: Terminate the pool processes of running steps (the sweeper, which only
            closes runs cancelled before, passes False).

    Raises:
        RunnerError: The run is not in the run store (unknown or expired).
    """
    result = rt.store.cancel(run_id, force=force)
    if result.state == "gone":
        raise RunnerError(f"run {run_id} is not in the run store (unknown or expired)")
    if result.state == "finished":
        return CancelOutcome(run_id, True, result.status)
    plan = rt.plan(run_id)
    if plan is not None:
        for task_id in result.newly_cancelled:
            rt.emit(
                "task_cancel",
                run_id,
                plan,
                task_id=task_id,
                workflow_ref=plan.task(task_id).workflow_ref,
                error="cancelled: the run was cancelled while no worker ran this task",
            )
    if interrupt and result.running and not rt.settings.embedded:
        for task_id, token in result.running:
            try:
                app.control.revoke(token, terminate=True, signal=TERMINATE_SIGNAL)
            except Exception as exc:  # the step then stops at its commit
                logger.warning("dagflow: could not interrupt %s/%s: %s", run_id, task_id, exc)
    if result.complete and plan is not None:
        finish_run(rt, run_id, plan, FinishResult(complete=True, counts=result.counts))
    snapshot = rt.store.snapshot(run_id)
    return CancelOutcome(
        run_id,
        False,
        snapshot.status if snapshot else "cancelled",
        result.newly_cancelled,
        tuple(task_id for task_id, _ in result.running),
    )
