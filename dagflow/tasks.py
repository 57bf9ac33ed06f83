"""Every Celery task dagflow registers, in one place.

* ``dagflow.step(run_id, task_id)``: runs one DAG step (:mod:`dagflow.execution.step`).
* ``dagflow.start_scheduled_run(firing)``: what Beat sends for each job it drains; a worker
  loads the DAG and starts the run (:func:`dagflow.execution.lifecycle.start_run`); the run's start
  makes the job ``RUNNING`` (a hook), a DAG that cannot start ends it ``FAILED``. It only submits
  (milliseconds), so no worker slot is held waiting for a DAG.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from dagflow.dag.compile import STEP_TASK
from dagflow.errors import SpecError
from dagflow.execution.lifecycle import start_run
from dagflow.execution.runtime import runtime_for
from dagflow.execution.step import execute_step
from dagflow.scheduling.firing import START_TASK, Firing, firing_dag
from dagflow.scheduling.job_hooks import fail_job
from dagflow.settings import Settings
from dagflow.wiring import build_runtime, state_recorder

if TYPE_CHECKING:
    from celery import Celery, Task

logger = logging.getLogger(__name__)


class StepRequest(Request):  # type: ignore[misc]
    """A ``dagflow.step`` request, as the worker's main process handles it.

    When the pool process running a step dies (killed, out of memory), Celery puts the
    message back with the same id; its lease would keep that redelivery out until it
    expires. The main process knows the holder is dead, so it releases the lease first and
    the redelivery takes over at once (with a new fencing number).
    """

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if (
            isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt)
            and len(self.args) >= 2
        ):
            try:
                runtime_for(self.task.app).store.release(self.args[0], self.args[1], self.id)
            except Exception as error:  # the lease then expires on its own
                logger.warning("dagflow: could not release the lease of %s: %s", self.id, error)
        return super().on_failure(exc_info, send_failed_event, return_ok)


def register(app: Celery) -> None:
    """Register ``dagflow.step`` and ``dagflow.start_scheduled_run`` on ``app``; an app
    without a runtime factory (not made by ``make_app``) gets one from the environment."""
    if getattr(app, "dagflow_runtime_factory", None) is None:
        app.dagflow_runtime_factory = lambda: build_runtime(Settings.from_env())
    _register_step(app)
    _register_start(app)


def _register_step(app: Celery) -> Task:
    """Register ``dagflow.step``.

    The task acknowledges late and is rejected back to the queue if its pool process dies;
    the lease and the sweeper recover what the broker does not give back. It stores no
    Celery result (outputs live in the run store).
    """

    @app.task(  # type: ignore[untyped-decorator]
        name=STEP_TASK,
        shared=False,  # each app (embedded, Redis, tests) keeps its own step
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        max_retries=None,
        Request=StepRequest,
    )
    def step(self: Task, run_id: str, task_id: str) -> Any:
        return execute_step(self.app, self, run_id, task_id)

    return app.tasks[STEP_TASK]


def _register_start(app: Celery) -> Task:
    """Register ``dagflow.start_scheduled_run``.

    The task is idempotent: a redelivered message finds its run id already in the run
    store and does nothing, so ``acks_late`` cannot start a run twice.
    """

    @app.task(  # type: ignore[untyped-decorator]
        name=START_TASK, shared=False, acks_late=True, ignore_result=True
    )
    def start_scheduled_run(firing: dict[str, Any]) -> str | None:
        item = Firing.model_validate(firing)
        rt = runtime_for(app)
        if rt.store.snapshot(item.run_id) is not None:
            return None
        try:
            dag = firing_dag(item, rt.settings)
        except SpecError as exc:
            logger.error("dagflow: schedule %s: %s", item.schedule_id, exc.one_line())
            fail_job(rt.jobs, item.job_id, exc.one_line())
            return None
        state_recorder(rt.settings).record_event(item.state_event("run_started", dag_name=dag.name))
        try:
            start_run(app, rt, dag, run_id=item.run_id, labels=item.labels, params=item.params)
        except SpecError as exc:  # the schedule's params do not fit the DAG's params:
            logger.error("dagflow: schedule %s: %s", item.schedule_id, exc.one_line())
            fail_job(rt.jobs, item.job_id, exc.one_line())
            return None
        return item.run_id

    return app.tasks[START_TASK]
