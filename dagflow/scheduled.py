"""A firing, and starting its DAG run: shared by ``--once``/``--serve`` and by Celery Beat.

A :class:`Firing` is what the claim winner enqueues: schedule, DAG, tenant, the scheduled
UTC minute and the run id chosen at claim time (so ``schedule_enqueued`` already names the
run). :func:`start_firing` loads the DAG under the schedule's tenant, writes ``run_started``
and submits the run without waiting; the run's finalizer (``dagflow.tasks.finalize``)
writes ``run_finished`` from the labels ``schedule_id``, ``scheduled_minute`` and ``dag``.

Under Beat, the firing travels as the message of ``dagflow.start_scheduled_run``, which a
worker runs: it only submits (milliseconds), so no worker slot is held waiting for a DAG.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from dagflow.dag import check_dag, load_dag
from dagflow.errors import DagflowError
from dagflow.events import isoformat, utc_now
from dagflow.state import JsonlStateStore

if TYPE_CHECKING:
    from celery import Celery, Task

    from dagflow.runner import RunHandle, Runner

logger = logging.getLogger(__name__)

#: The Celery task Beat sends for each firing.
START_TASK = "dagflow.start_scheduled_run"


class Firing(BaseModel):
    """One claimed ``{schedule_id, minute}``: a DAG run to start.

    Attributes:
        schedule_id: The schedule's ``id``.
        dag: The DAG file, relative to the deployment root.
        tenant: The tenant the run is for (replaces the DAG's ``tenant_id``).
        scheduled_minute: The UTC minute it is due, ``2026-11-26T10:05:00Z``.
        run_id: The run's id, chosen when the minute was claimed.
        catch_up: True if it makes up for a minute missed while no scheduler ran.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schedule_id: str
    dag: str
    tenant: str
    scheduled_minute: str
    run_id: str
    catch_up: bool = False

    @classmethod
    def from_labels(
        cls, labels: Mapping[str, Any], tenant: str, run_id: str, dag_name: str
    ) -> Firing:
        """The firing a scheduled run came from, rebuilt from its run labels (see below).

        ``dag_name`` stands in for the DAG file when the labels do not name one.
        """
        return cls.model_construct(
            schedule_id=str(labels["schedule_id"]),
            dag=str(labels.get("dag", dag_name)),
            tenant=tenant,
            scheduled_minute=str(labels.get("scheduled_minute", "")),
            run_id=run_id,
        )

    @property
    def labels(self) -> dict[str, str]:
        """The run labels that make the finalizer write ``run_finished``."""
        return {
            "schedule_id": self.schedule_id,
            "scheduled_minute": self.scheduled_minute,
            "dag": self.dag,
        }

    def state_event(self, name: str, timestamp: str | None = None, **extra: Any) -> dict[str, Any]:
        """A state-store event about this firing (``timestamp``: now if None)."""
        return {
            "timestamp": timestamp or isoformat(utc_now()),
            "event": name,
            "schedule_id": self.schedule_id,
            "tenant_id": self.tenant,
            "dag": self.dag,
            "run_id": self.run_id,
            "scheduled_minute": self.scheduled_minute,
            **extra,
        }


def start_firing(
    runner: Runner, firing: Firing, state: JsonlStateStore, root: Path | None = None
) -> RunHandle:
    """Load the firing's DAG under its tenant, write ``run_started`` and submit the run.

    Raises:
        SpecError: The DAG file is missing or invalid now (it is checked again at each run,
            since it may have changed after the schedule was loaded).
    """
    dag = load_dag((root or Path.cwd()) / firing.dag, runner.settings)
    if dag.spec.tenant_id != firing.tenant:
        spec = dag.spec.model_copy(update={"tenant_id": firing.tenant})
        dag = check_dag(spec, dag.source)
    state.record_event(firing.state_event("run_started", dag_name=dag.name))
    return runner.submit(dag, run_id=firing.run_id, labels=firing.labels)


def register(app: Celery) -> Task:
    """Register ``dagflow.start_scheduled_run`` on ``app`` and return it.

    The task is idempotent: a redelivered message finds its run id already in the run
    store and does nothing, so ``acks_late`` cannot start a run twice.
    """

    @app.task(  # type: ignore[untyped-decorator]
        name=START_TASK, shared=False, acks_late=True, ignore_result=True
    )
    def start_scheduled_run(firing: dict[str, Any]) -> str | None:
        from dagflow.errors import SpecError
        from dagflow.runner import Runner
        from dagflow.runtime import runtime_for

        item = Firing.model_validate(firing)
        runtime = runtime_for(app)
        if runtime.store.snapshot(item.run_id) is not None:
            return None
        runner = Runner(runtime.settings, app=app)
        try:
            start_firing(runner, item, JsonlStateStore(runtime.settings.state_path))
        except SpecError as exc:
            logger.error("dagflow: schedule %s: %s", item.schedule_id, exc.one_line())
            return None
        return item.run_id

    return app.tasks[START_TASK]


class RunQueue:
    """Drives scheduled runs, at most ``max_parallel`` at once; the rest wait, in order.

    ``SCHED_MAX_PARALLEL`` is enforced here, per scheduler process: each of the
    ``max_parallel`` threads starts one firing and waits for its run to end before taking
    the next, so queued firings are delayed, never dropped.

    Args:
        start: Submits one firing's run and returns a waiter that blocks until the run
            ends and says whether it succeeded.
        max_parallel: How many runs at once.
    """

    def __init__(self, start: Callable[[Firing], Callable[[], bool]], max_parallel: int) -> None:
        self._start = start
        self._queue: queue.Queue[Firing | None] = queue.Queue()
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self.running = 0
        self._submitting = 0
        #: The most runs that were in flight at once (tests check it against max_parallel).
        self.peak = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"dagflow-sched-{i}", daemon=True)
            for i in range(max_parallel)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, firing: Firing) -> None:
        """Queue a firing."""
        self._queue.put(firing)

    @property
    def waiting(self) -> int:
        """Firings queued and not started yet."""
        return self._queue.qsize()

    def join(
        self,
        abort: threading.Event | None = None,
        submitted_only: bool = False,
        poll_s: float = 0.05,
    ) -> bool:
        """Wait until every queued firing has run; False if ``abort`` was set first.

        Args:
            abort: Stop waiting when set (a second Ctrl+C).
            submitted_only: Return once every firing is submitted, without waiting for the
                runs to end: with a broker they finish on the workers all the same.
            poll_s: Seconds between checks.
        """
        while self._queue.unfinished_tasks and not (
            submitted_only and self._queue.qsize() == 0 and self._submitting == 0
        ):
            if abort is not None and abort.wait(poll_s):
                return False
            if abort is None:
                time.sleep(poll_s)
        return True

    def close(self) -> None:
        """Stop the threads once the queue is empty (daemon threads: never blocks exit)."""
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            firing = self._queue.get()
            if firing is None:
                self._queue.task_done()
                return
            with self._lock:
                self.running += 1
                self._submitting += 1
                self.peak = max(self.peak, self.running)
            ok = False
            try:
                try:
                    waiter = self._start(firing)
                finally:
                    with self._lock:
                        self._submitting -= 1
                ok = waiter()
            except DagflowError as exc:
                logger.error("dagflow: schedule %s: %s", firing.schedule_id, exc.one_line())
            except Exception:
                logger.exception("dagflow: schedule %s could not run", firing.schedule_id)
            finally:
                with self._lock:
                    self.running -= 1
                    if ok:
                        self.succeeded += 1
                    else:
                        self.failed += 1
                self._queue.task_done()
