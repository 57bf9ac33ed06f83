"""Starting runs and waiting for them: the client side of dagflow.

A :class:`Runner` sends a DAG's start canvas to Celery and waits on the run store for the
run to finish. With a broker configured (``DAGFLOW_BROKER_URL``) the steps run on
``celery -A dagflow worker`` processes; without one, the runner starts an *embedded*
Celery worker in this process (in-memory broker, a thread pool) and runs the very same
canvas and step task on it, so no server is needed to try dagflow.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dagflow.celery_app import make_app
from dagflow.client.handle import (
    RECONNECT_S,
    ProgressCallback,
    RunHandle,
    WaitTimeout,
    runner_sealed,
    url_of,
)
from dagflow.client.status import RunResult, RunStatus
from dagflow.dag.load import Dag, load_dag
from dagflow.errors import RunnerError
from dagflow.execution.lifecycle import start_run
from dagflow.execution.publish import default_queue
from dagflow.execution.runtime import RunStarted, Runtime, runtime_for
from dagflow.settings import Settings
from dagflow.stores.transport import Backoff, retry_unreachable, sealed
from dagflow.wiring import read_store

if TYPE_CHECKING:
    from pathlib import Path

    from celery import Celery

__all__ = ["RunHandle", "Runner", "WaitTimeout", "get_run", "list_runs", "run", "submit"]

logger = logging.getLogger(__name__)

#: Seconds the embedded worker has to confirm it consumes a queue a new run needs.
ADD_QUEUE_TIMEOUT_S = 10.0
#: Seconds one ask waits for the embedded worker's answer (it answers in a few ms).
ADD_QUEUE_ASK_S = 0.25


class Runner:
    """Submits runs to Celery; owns the embedded worker when there is no broker.

    Args:
        settings: Settings (from the environment if None).
        app: A Celery app built by :func:`dagflow.celery_app.make_app` for these settings.
    """

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.app = app or make_app(self.settings)
        self.runtime: Runtime = runtime_for(self.app)
        self._worker: tuple[Any, threading.Thread] | None = None
        #: Celery's default app before this runner's embedded worker made its own the one.
        self._previous_app: Any = None
        self._queues: set[str] = set()

    @property
    def embedded(self) -> bool:
        """True when steps run on an in-process worker."""
        return self.settings.embedded

    def start_embedded_worker(self, loglevel: str = "CRITICAL", queues: Iterable[str] = ()) -> None:
        """Start the in-process worker (no-op with a broker), consuming ``queues`` too.

        It is a real Celery ``WorkController`` (consumer, thread pool, timer for retry
        countdowns) on the in-memory transport, running in a daemon thread. It is the only
        worker of its runs, so it consumes the default queue and every queue its DAGs name:
        a worker already started is told to consume the ones it lacks (a broadcast
        ``add_consumer``, answered within :data:`ADD_QUEUE_TIMEOUT_S`).

        Raises:
            RunnerError: A running embedded worker did not confirm a new queue.
        """
        if not self.embedded:
            return
        if self._worker is not None:
            self._add_queues(queues)
            return
        import socket

        from dagflow import workflows

        workflows.load(self.settings.workflow_modules)
        self.app.finalize()
        # The thread pool looks tasks up in Celery's *current* app (a process-wide default):
        # remember the one before, so close() can give it back to another embedded runner
        # of this process. Two embedded runners of one process must not run at once.
        from celery import _state

        self._previous_app = _state.default_app
        self.app.set_current()
        self.app.set_default()
        self.app.log.setup(loglevel=loglevel)
        self._queues = {default_queue(self.app), *queues}
        worker = self.app.WorkController(
            hostname=f"dagflow-embedded-{uuid.uuid4().hex[:8]}@{socket.gethostname()}",
            queues=sorted(self._queues),
            pool="threads",
            concurrency=self.settings.embedded_concurrency,
            loglevel=loglevel,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        thread = threading.Thread(target=worker.start, name="dagflow-embedded", daemon=True)
        thread.start()
        self._worker = (worker, thread)
        # Runs this process starts without submit (a schedule's firings, job retries the
        # sweeper starts) name their queues in their plan: consume them as they start (their
        # first steps wait in the in-memory queue until then).
        self.runtime.run_started_hooks.append(self._consume_run_queues)

    def _consume_run_queues(self, started: RunStarted) -> None:
        plan = self.runtime.plan(started.run_id)
        if plan is not None and plan.queues:
            self._add_queues(plan.queues.values())

    def _add_queues(self, queues: Iterable[str]) -> None:
        """Make the running embedded worker consume the ``queues`` it does not yet."""
        if self._worker is None:
            return
        hostname = self._worker[0].hostname
        for queue in sorted(set(queues) - self._queues):
            # A worker still starting has no control consumer yet and misses the broadcast:
            # ask again until it answers (adding a queue it consumes is a no-op).
            deadline = time.monotonic() + ADD_QUEUE_TIMEOUT_S
            while not self.app.control.add_consumer(
                queue, destination=[hostname], reply=True, timeout=ADD_QUEUE_ASK_S
            ):
                if time.monotonic() >= deadline:
                    raise RunnerError(
                        f"the embedded worker did not start consuming queue {queue!r}"
                    )
            self._queues.add(queue)

    def close(self, wait: bool = True) -> None:
        """Stop the embedded worker, if any.

        Args:
            wait: Join the worker thread (up to ~2 s: the in-memory transport polls in 2 s
                cycles). A process about to exit passes False: the thread is a daemon and
                every run it was given has finished.
        """
        if self._worker is not None:
            worker, thread = self._worker
            self._worker = None
            if wait:
                worker.stop(in_sighandler=False)
                thread.join(30)
            self._give_back_current_app()
        if self.embedded:
            # The embedded run store dies with this process: so do its runs' large outputs.
            self.runtime.outputs.purge()

    def _give_back_current_app(self) -> None:
        """Make the app that was Celery's current one before this embedded worker started
        current again (another embedded runner of this process goes on working)."""
        from celery import _state

        previous = self._previous_app
        if previous is not None and _state.default_app is self.app:
            previous.set_default()
            previous.set_current()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @runner_sealed
    def attach(self, run_id: str, timeout: float | None = None) -> RunHandle:
        """A handle to a run started anywhere (another process or host), by its id.

        Args:
            run_id: The run's id.
            timeout: Seconds to keep trying an unreachable run store (default 30).

        Raises:
            RunnerError: The run store does not know the run.
            UnreachableError: The run store could not be reached within ``timeout``.
        """
        timeout_s = 30.0 if timeout is None else timeout
        snapshot = self.runtime.store.snapshot
        found = retry_unreachable(lambda: snapshot(run_id), timeout_s, Backoff(*RECONNECT_S))
        if found is None:
            raise RunnerError(f"run {run_id} is not in the run store (unknown or expired)")
        return RunHandle(self, run_id)

    @runner_sealed
    def submit(
        self,
        dag: Dag,
        *,
        run_id: str | None = None,
        labels: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> RunHandle:
        """Store the run's plan, emit ``dag_start`` and send the start canvas.

        Args:
            dag: A loaded DAG (see :func:`dagflow.load_dag`).
            run_id: The run's id (a new UUID if None).
            labels: Extra metadata kept with the run; ``schedule_id`` makes the run write
                ``run_finished`` to the state store when it ends.
            params: Run-level params over the DAG's ``params:`` defaults (an unknown key
                raises :class:`~dagflow.errors.DagValidationError`).

        Raises:
            UnreachableError: Redis or the broker cannot be reached (nothing was started,
                or the run was stored and its outbox sends its first steps).
        """
        self.start_embedded_worker(queues=dag.spec.queues.values())
        run_id = start_run(self.app, self.runtime, dag, run_id=run_id, labels=labels, params=params)
        return RunHandle(self, run_id, dag)


def submit(dag: Dag | str | Path, *, settings: Settings | None = None, **kwargs: Any) -> RunHandle:
    """Start a run on the configured broker's workers and return its handle.

    With no broker, use :class:`Runner` (or :func:`run`): the embedded worker lives only as
    long as its runner.
    """
    settings = settings or Settings.from_env()
    loaded = dag if isinstance(dag, Dag) else load_dag(dag, settings)
    return Runner(settings).submit(loaded, **kwargs)


def run(
    dag: Dag | str | Path,
    *,
    settings: Settings | None = None,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Run a DAG to completion (embedded worker, or the broker's workers) and return the result."""
    settings = settings or Settings.from_env()
    loaded = dag if isinstance(dag, Dag) else load_dag(dag, settings)
    with Runner(settings) as runner:
        return runner.submit(loaded).wait(timeout=timeout, on_progress=on_progress)


def get_run(
    run_id: str, *, settings: Settings | None = None, timeout: float | None = None
) -> RunHandle:
    """A handle to a run started by any process or host, from the run store in Redis.

    The handle's :meth:`~RunHandle.status`, :meth:`~RunHandle.wait` and
    :meth:`~RunHandle.outputs` work without the process that submitted the run.

    Args:
        run_id: The run's id.
        settings: Settings (from the environment if None).
        timeout: Seconds to keep trying an unreachable run store (default 30).

    Raises:
        ConfigError: No Redis run store is configured (``DAGFLOW_BROKER_URL`` or
            ``DAGFLOW_RESULT_BACKEND``): an embedded run lives only in its own process.
        RunnerError: The run store does not know the run (unknown or expired).
        UnreachableError: The run store could not be reached within ``timeout``.
    """
    settings = settings or Settings.from_env()
    store = read_store(settings)
    timeout_s = 30.0 if timeout is None else timeout
    with sealed(url_of(settings)):
        found = retry_unreachable(lambda: store.snapshot(run_id), timeout_s, Backoff(*RECONNECT_S))
    if found is None:
        raise RunnerError(f"run {run_id} is not in the run store (unknown or expired)")
    return RunHandle(
        None, run_id, store=store, settings=settings, make_runner=lambda: Runner(settings)
    )


def list_runs(
    *,
    tenant: str | None = None,
    dag: str | None = None,
    status: str | None = None,
    limit: int = 20,
    settings: Settings | None = None,
    before: tuple[int, str] | None = None,
) -> list[RunStatus]:
    """Recent runs still in the run store, newest first (their ``tasks`` are left empty).

    Args:
        tenant: Only runs of this ``tenant_id``.
        dag: Only runs of the DAG with this ``name``.
        status: Only ``running``, ``success`` or ``failed`` runs.
        limit: At most this many.
        settings: Settings (from the environment if None).
        before: Only runs listed after this one (its
            :func:`~dagflow.stores.base.run_position`): the next page of a listing.

    Raises:
        ConfigError: No Redis run store is configured.
        UnreachableError: The run store cannot be reached.
    """
    settings = settings or Settings.from_env()
    store = read_store(settings)
    try:
        with sealed(url_of(settings)):
            found = store.list_runs(
                tenant_id=tenant, dag_name=dag, status=status, limit=limit, before=before
            )
    finally:
        store.client.close()
    return [RunStatus.from_store(snap) for snap in found]
