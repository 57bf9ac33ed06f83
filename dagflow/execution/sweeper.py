"""The sweeper: what makes the run store, not the broker, the authority on a step's life.

Every ``DAGFLOW_SWEEP_S`` seconds one process (a Redis lock picks it among all workers and
Beat processes; a sweep is also safe to run twice) looks at the store's indexes and:

* re-sends steps whose **lease expired** (their worker died, was cut off or froze): a new
  delivery takes the step over with a larger fencing number;
* re-sends **outbox** entries that are due: children that were made ready but never
  claimed (a lost message, a worker that died before sending them, a broker error) and
  **retries** whose Celery ETA message was lost with its worker. While the broker's queue
  has a backlog such a step is probably still queued: it is re-sent at once only if a
  worker holds its message unacknowledged without running it (a dead worker's retry or
  prefetched step, :mod:`dagflow.execution.broker_queue`), else once the queue has drained (an entry
  is re-armed with a doubling delay, so a long queue is never flooded). What a dead worker
  held goes to the head of the queue: it already waited its turn;
* never re-sends a step of a **cancelled** run: it ends the steps nobody holds as
  ``cancelled`` and closes the run (:func:`dagflow.execution.cancel.cancel_run`);
* frees the ``max_active_runs`` **slots** of runs that ended or vanished without giving
  them back, and starts the waiting runs they were holding back;
* puts back **jobs** a scheduler drained but never started, and starts the **job
  retries** that are due, through the runtime's sweep hooks (scheduling installs
  :func:`dagflow.scheduling.job_hooks.sweep_jobs`);
* checks runs that **nothing moved** for a lease period: a run whose tasks all ended but
  that was never finalized is finalized; a task that could move but has nothing to move it
  is re-queued; a run whose state is gone, or that can never make progress, is ended as
  ``failed`` with a ``dag_done`` whose ``error`` starts with ``stalled:``.

So a step whose worker dies runs again within ``DAGFLOW_LEASE_S + DAGFLOW_SWEEP_S``, and
no run stays ``running`` for more than two lease periods after its last sign of life.

It runs inside every ``celery -A dagflow worker`` (a bootstep: :class:`SweeperStep`), inside
``celery -A dagflow beat``, and inside the embedded worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import bootsteps

from dagflow.dag.mapping import split_instance
from dagflow.dag.plan import RunPlan
from dagflow.dag.rules import decide
from dagflow.execution import broker_queue
from dagflow.execution.cancel import cancel_run
from dagflow.execution.lifecycle import activate_run, finish_run, promote_runs
from dagflow.execution.publish import default_queue, send_steps
from dagflow.execution.runtime import Runtime, runtime_for
from dagflow.stores import TERMINAL, FinishResult
from dagflow.stores.base import COUNTED

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Entries of each index one sweep handles at most (the next sweep takes the rest).
SWEEP_LIMIT = 1000
#: The lock that lets one process sweep at a time.
LOCK_NAME = "sweeper"


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    expired: int = 0
    resent: int = 0
    finalized: tuple[str, ...] = ()
    requeued: tuple[str, ...] = ()
    stalled: tuple[str, ...] = ()
    slots_freed: int = 0
    admitted: int = 0
    hooks: tuple[object, ...] = ()

    def actions(self) -> dict[str, int]:
        """What the sweep did, by action, zeros left out (the ``sweep`` state line)."""
        counts = {
            "expired": self.expired,
            "resent": self.resent,
            "finalized": len(self.finalized),
            "requeued": len(self.requeued),
            "stalled": len(self.stalled),
            "slots_freed": self.slots_freed,
            "admitted": self.admitted,
        }
        return {action: n for action, n in counts.items() if n}


def sweep_once(app: Celery, rt: Runtime | None = None) -> SweepReport:
    """Run one sweep (without the lock: :class:`Sweeper` takes it)."""
    rt = rt or runtime_for(app)
    lease_s = rt.settings.lease_s
    found = rt.store.sweep(SWEEP_LIMIT, grace_s=lease_s, idle_s=lease_s)
    for run_id, task_id, worker, fence in found.expired:
        logger.warning(
            "dagflow: lease of step %s/%s on %s (fence %d) expired; sending it again",
            run_id, task_id, worker or "?", fence,
        )  # fmt: skip
    expired = {(run_id, task_id) for run_id, task_id, _, _ in found.expired}
    plans = {run_id: rt.plan(run_id) for run_id in {run_id for run_id, _ in found.due}}

    def queue_of(step: tuple[str, str]) -> str | None:
        plan = plans.get(step[0])
        return plan.queues.get(step[1]) if plan else None

    front, back = resends(app, found.due, expired, queue_of)
    for steps, at_head in ((front, True), (back, False)):
        for run_id, task_ids in _by_run(steps).items():
            plan = plans.get(run_id)
            name, queues = (plan.dag_name, plan.queues) if plan else (None, {})
            send_steps(app, run_id, task_ids, name, front=at_head, queues=queues)
    verdicts: dict[str, list[str]] = defaultdict(list)
    for run_id in found.cancelled_runs:
        # Steps of a cancelled run are never re-sent: end the ones nobody holds instead.
        if not cancel_run(app, rt, run_id, interrupt=False).already_ended:
            verdicts["finalized"].append(run_id)
    for run_id in found.idle_runs:
        verdicts[check_run(app, rt, run_id)].append(run_id)
    finalized, requeued, stalled = (verdicts[k] for k in ("finalized", "requeued", "stalled"))
    resent = len(front) + len(back)
    hooks = tuple(rt.swept(app))
    report = SweepReport(
        len(found.expired),
        resent,
        tuple(finalized),
        tuple(requeued),
        tuple(stalled),
        *sweep_slots(app, rt),
        hooks=hooks,
    )
    actions = report.actions()
    if actions:
        rt.sweep_reported(actions)
    return report


def sweep_slots(app: Celery, rt: Runtime) -> tuple[int, int]:
    """Free the slots of runs that ended or vanished without giving them back (the process
    that ended them died), start admitted runs whose starter died, and start waiting runs
    that freed slots now allow. Returns (slots freed, runs started)."""
    freed, stuck = rt.store.audit_slots(rt.settings.lease_s)
    if freed:
        logger.warning("dagflow: freed %d slots of runs that ended or vanished", freed)
    started = sum(activate_run(app, rt, run_id) for run_id in stuck)
    return freed, started + promote_runs(app, rt)


def resends(
    app: Celery,
    due: Sequence[tuple[str, str]],
    expired: Set[tuple[str, str]],
    queue_of: Callable[[tuple[str, str]], str | None] | None = None,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Which due outbox entries to send again: (to the head of their queue, to its tail).

    What a dead worker held (an expired lease, or a message it holds unacknowledged: a
    retry, a prefetched step) goes to the head: it already waited its turn once, and the
    recovery bound must hold however long the queue is. Everything else is probably still
    queued while the queue has a backlog: it is sent once the queue has drained (its
    entries stay in the outbox, re-armed with a doubling delay), so a long queue is never
    flooded with copies.

    Each step is judged by the backlog of its own queue (``queue_of`` a step; None is the
    step's default queue).
    """
    front = [d for d in due if d in expired]
    waiting = [d for d in due if d not in expired]
    if not waiting:
        return front, []
    default = default_queue(app)
    queue = {d: (queue_of(d) if queue_of else None) or default for d in waiting}
    view = broker_queue.look(app, queues=set(queue.values()))
    drained = [d for d in waiting if not view.backlog_of(queue[d])]  # or the broker cannot say
    busy = [d for d in waiting if view.backlog_of(queue[d])]
    held = [d for d in busy if view.held is not None and d in view.held]
    if held:
        logger.warning(
            "dagflow: %d due steps are held, not run, by some worker: sending them", len(held)
        )
    return front + held, drained


def _by_run(steps: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    by_run: dict[str, list[str]] = defaultdict(list)
    for run_id, task_id in steps:
        by_run[run_id].append(task_id)
    return by_run


def movable_tasks(plan: RunPlan, states: Mapping[str, str]) -> list[str]:
    """Open tasks of a run nothing moves that should be sent again (pure).

    A task running or waiting for its retry, and a pending task whose rule its parents'
    ends meet (all ``ok`` without rules): it should have been sent, and one the branch
    above it did not choose was skipped in the same step. A mapped task is never sent
    (its instances are); of its pending instances, at most ``max_parallel`` are, lowest
    index first, and only when none of them runs.
    """
    movable: list[str] = []
    started: dict[str, int] = {}
    for task_id, state in states.items():
        if state in ("running", "retry"):
            movable.append(task_id)
            base, index = split_instance(task_id)
            if index is not None:
                started[base] = started.get(base, 0) + 1
    for task_id, state in sorted(states.items(), key=lambda item: _order(item[0])):
        if state != "pending" or not plan.knows(task_id):
            continue
        task = plan.task(task_id)
        base, index = split_instance(task_id)
        if task.map_from is not None and index is None:
            continue  # expanded by its parents' ends, never sent itself
        if index is not None:
            cap = task.max_parallel or len(states)
            if started.get(base, 0) >= cap:
                continue
            started[base] = started.get(base, 0) + 1
            movable.append(task_id)
        elif decide(task.trigger_rule, [states.get(p, "pending") for p in task.parents]) == "ready":
            movable.append(task_id)
    return movable


def _order(task_id: str) -> tuple[str, int]:
    base, index = split_instance(task_id)
    return base, -1 if index is None else index


def check_run(app: Celery, rt: Runtime, run_id: str) -> str:
    """Judge a run nothing moved for a lease period; returns what was done.

    Returns:
        ``alive`` (something will move it), ``finalized``, ``requeued``, ``stalled`` or
        ``forgotten`` (it had ended already).
    """
    seen = rt.store.inspect(run_id)
    if seen.done:
        rt.store.forget(run_id)
        return "forgotten"
    plan = rt.plan(run_id) if seen.exists else None
    if plan is None:
        rt.store.forget(run_id)
        rt.emit_raw(
            "dag_done",
            run_id,
            seen.dag_name,
            seen.tenant_id,
            status="failed",
            error="stalled: the run's state is gone from the run store (expired or flushed)",
        )
        logger.error("dagflow: run %s stalled: its state is gone from the store", run_id)
        return "stalled"
    open_tasks = {t: s for t, s in seen.states.items() if s not in TERMINAL}
    if not open_tasks:
        counts = _counts(seen.states)
        finish_run(rt, run_id, plan, FinishResult(complete=True, counts=counts))
        return "finalized"
    if seen.live:
        rt.store.touch(run_id)
        return "alive"
    if seen.cancelled:
        cancel_run(app, rt, run_id, interrupt=False)
        return "finalized"
    # A pending task whose rule its parents' ends meet (all ``ok`` without rules) should
    # have been sent; one the branch above it did not choose was skipped in the same step.
    movable = movable_tasks(plan, seen.states)
    if movable:
        logger.warning("dagflow: run %s: nothing held %s; sending them again", run_id, movable)
        rt.store.requeue(run_id, movable)
        send_steps(app, run_id, movable, plan.dag_name, queues=plan.queues)
        return "requeued"
    reason = (
        f"stalled: tasks {', '.join(sorted(open_tasks))} can never start "
        "(the state of the tasks upstream of them is lost)"
    )
    finish_run(rt, run_id, plan, FinishResult(complete=True, counts=_counts(seen.states)), reason)
    logger.error("dagflow: run %s %s", run_id, reason)
    return "stalled"


def _counts(states: Any) -> dict[str, int]:
    values = list(states.values())
    return {k: values.count(k) for k in COUNTED}


class Sweeper:
    """Sweeps every ``DAGFLOW_SWEEP_S`` in a daemon thread, when it wins the lock.

    Args:
        app: The Celery app whose runtime and broker it uses.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dagflow-sweeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the current sweep."""
        self._stop.set()

    def tick(self) -> SweepReport | None:
        """Sweep now if this process wins the lock; None if another one holds it."""
        rt = runtime_for(self.app)
        interval = rt.settings.sweep_s
        if not rt.store.try_lock(LOCK_NAME, self.holder, interval * 0.9):
            return None
        return sweep_once(self.app, rt)

    def _run(self) -> None:
        while not self._stop.wait(runtime_for(self.app).settings.sweep_s):
            try:
                self.tick()
            except Exception as exc:  # the store or broker is down: the next tick tries again
                logger.warning("dagflow: sweep failed: %s", exc)


class SweeperStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs a :class:`Sweeper` in every worker's main process.

    It starts after the pool: a pool process forked while the sweeper thread held a lock
    (a Redis pool's, the workflow registry's, a log file's) would inherit it held and hang
    at its first task.
    """

    label = "dagflow sweeper"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.sweeper: Sweeper | None = None

    def start(self, worker: Any) -> None:
        """Start sweeping when the worker starts."""
        self.sweeper = Sweeper(worker.app)
        self.sweeper.start()

    def stop(self, worker: Any) -> None:
        """Stop sweeping when the worker stops."""
        if self.sweeper is not None:
            self.sweeper.stop()
