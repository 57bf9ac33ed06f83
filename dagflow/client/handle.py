"""A handle on one run: wait for it, read its progress and outputs, cancel or retry it.

Handles come from :class:`dagflow.client.runner.Runner` (a run this process submitted) and
:func:`dagflow.client.runner.get_run` (any run, from any host: a reader with the run store
and no Celery app, which builds a runner only to cancel or retry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dagflow.client.consumers import INSPECT_TIMEOUT_S, unconsumed
from dagflow.client.status import RunResult, RunStatus
from dagflow.dag.plan import RunPlan
from dagflow.errors import PlanVersionError, RunnerError, StoreUnavailable
from dagflow.execution.cancel import CancelOutcome, cancel_run
from dagflow.execution.outputs import Outputs
from dagflow.execution.pools import waiting_lines
from dagflow.execution.publish import by_queue, default_queue
from dagflow.execution.rerun import retry_run
from dagflow.settings import Settings
from dagflow.stores import RunSnapshot, RunStore
from dagflow.stores.base import TaskInfo
from dagflow.stores.transport import Backoff, sealing
from dagflow.wiring import pool_store

if TYPE_CHECKING:
    from dagflow.client.runner import Runner
    from dagflow.dag.load import Dag

logger = logging.getLogger(__name__)

#: Seconds (besides one webhook timeout) an embedded run's wait gives its hooks and
#: webhooks to be told, after the run ended.
NOTICE_WAIT_S = 5.0

#: How often a waiter with a progress callback looks at the run, in seconds.
PROGRESS_INTERVAL_S = 0.1
#: First and largest pause between two tries to reach the run store while waiting, in seconds.
RECONNECT_S = (0.2, 5.0)


def url_of(settings: Settings) -> str | None:
    """The URL errors name: the run store's, else the broker's."""
    return settings.redis_url or settings.broker_url


#: Transport errors leave a handle's methods as UnreachableError naming the run store.
_handle_sealed = sealing(lambda handle: url_of(handle.settings))
#: Likewise for a runner's.
runner_sealed = sealing(lambda runner: url_of(runner.settings))


class WaitTimeout(TimeoutError):
    """Raised when a waiter gives up before the run ended: the run itself goes on."""

    def __init__(self, run_id: str, timeout: float) -> None:
        super().__init__(f"run {run_id} did not finish within {timeout:g} s")
        self.run_id = run_id


ProgressCallback = Callable[[RunSnapshot], None]


class RunHandle:
    """A run that was submitted (or re-attached to by id): wait for it, look at its progress.

    A handle from :func:`get_run` only reads: it has the run store and no Celery app, and
    builds a :class:`Runner` only if asked to cancel or retry the run.

    Args:
        runner: The runner whose run store holds the run (None: a reader, see above).
        run_id: The run's id.
        dag: The DAG, when this process submitted the run (None when re-attached).
        store: The run store to read (default: the runner's).
        settings: The settings (default: the runner's).
        make_runner: Builds the runner a reader acts with (required without ``runner``).
    """

    def __init__(
        self,
        runner: Runner | None,
        run_id: str,
        dag: Dag | None = None,
        *,
        store: RunStore | None = None,
        settings: Settings | None = None,
        make_runner: Callable[[], Runner] | None = None,
    ) -> None:
        if runner is not None:
            settings = settings or runner.settings
            store = store or runner.runtime.store
        if store is None or settings is None or (runner is None and make_runner is None):
            raise TypeError("a handle without a runner needs its store, settings and factory")
        self._runner = runner
        self._make_runner = make_runner
        self.run_id = run_id
        self.dag = dag
        self.settings = settings
        self.store = store
        self._plan: RunPlan | None = None

    @property
    def runner(self) -> Runner:
        """The runner to act on the run with (built on first use for a reader)."""
        if self._runner is None:
            assert self._make_runner is not None  # checked in __init__
            self._runner = self._make_runner()
        return self._runner

    def plan(self) -> RunPlan | None:
        """The run's stored plan (read once), or None if it is gone.

        Raises:
            PlanVersionError: A dagflow whose plan format this one cannot read wrote it.
        """
        if self._plan is None:
            raw = self.store.load_plan(self.run_id)
            self._plan = RunPlan.from_json(raw) if raw is not None else None
        return self._plan

    @_handle_sealed
    def snapshot(self, with_states: bool = False) -> RunSnapshot | None:
        """The run's current progress."""
        return self.store.snapshot(self.run_id, with_states=with_states)

    @_handle_sealed
    def outputs(self, task_ids: list[str] | None = None) -> dict[str, Any]:
        """Each finished task's output, decoded (kept in the run store for the run's TTL),
        read from the output store when it was kept by reference.

        Args:
            task_ids: Only these tasks (default: every task); unfinished ones are left out.
        """
        if task_ids is None:
            snap = self.snapshot(with_states=True)
            task_ids = list(snap.states or {}) if snap else []
        raw = self.store.outputs(self.run_id, task_ids)
        load = self._outputs().load
        return {task_id: load(value) for task_id, value in raw.items()}

    def _outputs(self) -> Outputs:
        """Reads outputs, resolving references to the output store (any store: a reference
        holds its whole URL)."""
        if self._runner is not None:
            return self._runner.runtime.outputs
        return Outputs.from_settings(self.settings)

    def tasks(self) -> list[TaskInfo]:
        """Each task's state, attempts, worker and how its last attempt ended, in plan order."""
        return list(self.status().tasks)

    @_handle_sealed
    def status(self) -> RunStatus:
        """The run's status and every task's details, read from the run store.

        Raises:
            RunnerError: The run's state is gone from the store (expired or flushed).
        """
        snap = self.store.snapshot(self.run_id)
        tasks = self.store.tasks(self.run_id)
        if snap is None or tasks is None:
            raise RunnerError(f"run {self.run_id} is not in the run store (unknown or expired)")
        try:
            plan = self.plan()
        except PlanVersionError:
            plan = None
        order = list(plan.tasks) if plan else []
        pools = pool_store(self.store)
        waits = waiting_lines(pools, plan, self.run_id, tasks) if pools and plan else {}
        status = RunStatus.from_store(snap, tasks, order, waits)
        notices = tuple(self.store.notices(self.run_id))
        return replace(status, notices=notices) if notices else status

    @_handle_sealed
    def unconsumed_waits(self, timeout: float = INSPECT_TIMEOUT_S) -> dict[str, list[str]]:
        """Queues that no live worker consumes, and this run's sent steps waiting on them.

        Empty for a run that is not running, with nothing sent and unclaimed, with the
        embedded worker (it consumes every queue of its runs), or when the workers cannot
        be asked; otherwise it asks them (``inspect().active_queues()``, up to ``timeout``).
        """
        snap = self.store.snapshot(self.run_id, with_states=True)
        plan = self.plan()
        if snap is None or plan is None or snap.status != "running" or self.settings.embedded:
            return {}
        pending = [t for t, state in (snap.states or {}).items() if state == "pending"]
        sent = self.store.unsent(self.run_id, pending)
        if not sent:
            return {}
        app = self.runner.app
        default = default_queue(app)
        waiting = {q or default: ids for q, ids in by_queue(sent, plan.queues).items()}
        return {q: waiting[q] for q in unconsumed(app, waiting, timeout)}

    @_handle_sealed
    def wait(
        self, timeout: float | None = None, on_progress: ProgressCallback | None = None
    ) -> RunResult:
        """Block until the run ends and return its result.

        A lost connection to the run store (a Redis restart, a network blip) does not end
        the wait: it reconnects with backoff until ``timeout``.

        Args:
            timeout: Seconds to wait at most (None: no limit).
            on_progress: Called with a snapshot (with task states) about every 0.1 s.

        Raises:
            WaitTimeout: The run did not finish in ``timeout`` seconds (it goes on).
            RunnerError: The run's state vanished from the store (expired or flushed).
        """
        store = self.store
        deadline = None if timeout is None else time.monotonic() + timeout
        step = PROGRESS_INTERVAL_S if on_progress else 1.0
        backoff = Backoff(*RECONNECT_S)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(self.run_id, timeout or 0.0)
            try:
                done = store.wait_done(self.run_id, step if left is None else min(step, left))
                snap = store.snapshot(self.run_id, with_states=on_progress is not None)
            except StoreUnavailable as exc:
                log = logger.warning if backoff.first else logger.debug
                log("dagflow: run store unreachable while waiting (%s); retrying", exc)
                pause = backoff.pause()
                time.sleep(pause if left is None else max(min(pause, left), 0.0))
                continue
            backoff.reset()
            if snap is None:
                raise RunnerError(
                    f"run {self.run_id}'s state is gone from the run store (expired, flushed "
                    "or never created): it cannot finish"
                )
            if on_progress:
                on_progress(snap)
            if done:
                break
        if self.runner.embedded:
            self._first_notices(deadline)
        failures: tuple[str, ...] = ()
        if snap.counts["failed"]:
            try:
                failures = tuple(self.status().failures)
            except (StoreUnavailable, RunnerError) as exc:  # the result is known: do not lose it
                logger.warning(
                    "dagflow: could not read the failed tasks of %s: %s", self.run_id, exc
                )
        return RunResult(
            run_id=self.run_id,
            dag_name=self.dag.name if self.dag else str(snap.meta.get("dag_name", "")),
            status=snap.status,
            tasks=snap.counts["total"],
            succeeded=snap.counts["ok"],
            failed=snap.counts["failed"],
            skipped=snap.counts["skipped"],
            duration_s=float(snap.meta.get("duration_s", 0.0)),
            failures=failures,
            cancelled=snap.counts.get("cancelled", 0),
        )

    def _first_notices(self, deadline: float | None) -> None:
        """Wait until the ended run's hooks and webhooks had their first attempt.

        The embedded worker tells them just after the run ends, in the thread that ended
        it: a process that exits when its run ends would otherwise cut them off. Later
        attempts (a receiver that was down) happen only while the process lives.
        """
        bound = time.monotonic() + self.runner.settings.notify_timeout_s + NOTICE_WAIT_S
        if deadline is not None:
            bound = min(bound, deadline)
        while time.monotonic() < bound:
            if all(n.state != "pending" for n in self.store.notices(self.run_id)):
                return
            time.sleep(0.02)

    @_handle_sealed
    def cancel(self, force: bool = False) -> CancelOutcome:
        """Cancel the run from this process (see :func:`dagflow.execution.cancel.cancel_run`).

        Args:
            force: End running steps as ``cancelled`` now (their holders die with this process).
        """
        return cancel_run(self.runner.app, self.runner.runtime, self.run_id, force=force)

    @_handle_sealed
    def retry(self) -> RunHandle:
        """Start a retry of this ended run; its handle.

        See :func:`dagflow.execution.rerun.retry_run`.
        """
        runner = self.runner
        if runner.embedded:
            old = self.plan()
            runner.start_embedded_worker(queues=old.queues.values() if old else ())
        return RunHandle(runner, retry_run(runner.app, runner.runtime, self.run_id))
