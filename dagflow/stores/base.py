"""The run store contract: leases, an outbox and joins, each operation atomic in the store.

The run store, not the broker, is the authority on whether a step is alive (Celery's Redis
transport keeps a dead worker's message hidden for ``visibility_timeout``; a connection
blip delivers a running step's message again with the same id). Every operation is atomic
and safe to repeat:

* :meth:`RunStore.claim` gives a delivery a **lease** on a step: a fencing number that grows
  with each new holder, the worker's name and an expiry. While the lease is live no other
  delivery may run the step, whatever its message id (``busy``). After it expires, the
  next delivery takes over with a larger fencing number. The claim also hands over the
  parents' outputs and the attempt number (failed attempts so far + 1).
* :meth:`RunStore.renew` extends leases (the heartbeat of a running step).
* :meth:`RunStore.finish` commits a step's end **only for the current fencing number**: a
  holder that lost its lease is told ``lost`` and its output is discarded. In the same
  atomic write it skips descendants of a failed task, records join arrivals (a set, not a
  counter), and puts the children it made ready into the **outbox**; it reports whether
  this call completed the run, exactly once per run.
* :meth:`RunStore.retry` ends a failed attempt that will be tried again: the lease is
  released and the step goes into the outbox with its due time (a **durable retry**: it
  does not live only in a worker's memory as a Celery ETA).
* :meth:`RunStore.tasks` and :meth:`RunStore.list_runs` are read-only views for
  ``dagflow status`` and ``dagflow runs``: each task's attempts, worker and how its last
  attempt ended (an :class:`AttemptEnd`, written by ``finish`` and ``retry`` in the same
  atomic call), and recent runs newest first.
* :meth:`RunStore.sweep` is the sweeper's view: leases that expired and outbox entries that
  are due (never picked up, or a retry whose message was lost). It re-arms what it returns,
  so a step is re-sent at most once per grace period.

A step therefore still costs two round trips to the store, whatever its fan-in and fan-out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

#: States after which a task never changes again.
TERMINAL = frozenset({"ok", "failed", "skipped"})

ClaimResult = Literal["run", "busy", "gone", "ok", "failed", "skipped"]


@dataclass(frozen=True)
class Claim:
    """What :meth:`RunStore.claim` said.

    Attributes:
        state: ``run`` (execute it under the lease), ``busy`` (another delivery holds a live
            lease), ``gone`` (the run's state is not in the store) or the task's terminal
            state (it already finished).
        outputs: The parents' output JSON, when ``state`` is ``run``.
        fence: The lease's fencing number (the attempt's idempotency key).
        attempt: 1 + the attempts of this task that failed so far.
        took_over: The worker whose expired lease this claim replaced, or "".
        holder: For ``busy``: the worker holding the lease.
    """

    state: ClaimResult
    outputs: Mapping[str, str] = field(default_factory=dict)
    fence: int = 0
    attempt: int = 1
    took_over: str = ""
    holder: str = ""


@dataclass(frozen=True)
class FinishResult:
    """What :meth:`RunStore.finish` did.

    Attributes:
        complete: True for exactly one call per run: the one that finished its last task.
        newly_skipped: Descendants this call marked skipped (not those skipped before).
        counts: Tasks ``ok``, ``failed`` and ``skipped`` so far.
        ready: Children this call made ready (in the outbox now: send them).
        lost: True if the caller's lease was no longer current: nothing was written.
        recorded: True if this call set the task's end (False if it had ended before).
    """

    complete: bool
    newly_skipped: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    ready: tuple[str, ...] = ()
    lost: bool = False
    recorded: bool = True


@dataclass(frozen=True)
class RunSnapshot:
    """A run's progress as a waiter sees it.

    Attributes:
        status: ``running``, ``success`` or ``failed``.
        counts: Tasks ``ok``, ``failed``, ``skipped`` so far, and ``total``.
        states: Each task's state (``pending``, ``running``, ``retry`` or terminal), if asked for.
        meta: The run's metadata (dag name, tenant, labels, start and finish times).
        run_id: The run's id.
    """

    status: str
    counts: Mapping[str, int]
    states: Mapping[str, str] | None
    meta: Mapping[str, Any]
    run_id: str = ""


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt of a task ended, kept with the task (the store's ``info`` hash).

    Written by :meth:`RunStore.finish` and :meth:`RunStore.retry` in the same atomic call
    as the end itself, so ``dagflow status`` reads it from any host, without the event log.

    Attributes:
        duration_s: Seconds the attempt ran.
        error: ``ErrorName: message`` of a failed attempt; for a task's last attempt, the
            seed's line ``RunnerError: Task 'x' failed after N attempts: ...``.
        traceback: The workflow's own frames of a failed attempt (see
            :mod:`dagflow.tracebacks`), or None.
    """

    duration_s: float | None = None
    error: str | None = None
    traceback: str | None = None

    def to_json(self) -> str:
        """The JSON stored for the task (null fields left out)."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, raw: str | None) -> AttemptEnd:
        """Parse :meth:`to_json`'s output; an empty or unreadable value gives an empty end."""
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(
            duration_s=data.get("duration_s"),
            error=data.get("error"),
            traceback=data.get("traceback"),
        )


@dataclass(frozen=True)
class TaskInfo:
    """One task of a run as ``dagflow status`` shows it.

    Attributes:
        task_id: The task.
        state: ``pending``, ``running``, ``retry``, ``ok``, ``failed`` or ``skipped``.
        attempts: Attempts started so far (0 for a task that never ran).
        worker: The Celery node of the last attempt, or "".
        fence: The last attempt's lease fencing number (0: never claimed).
        last: How the last finished attempt ended (empty while the first one runs).
    """

    task_id: str
    state: str
    attempts: int = 0
    worker: str = ""
    fence: int = 0
    last: AttemptEnd = field(default_factory=AttemptEnd)


def run_matches(
    snap: RunSnapshot, tenant_id: str | None, dag_name: str | None, status: str | None
) -> bool:
    """True if the run passes every filter of :meth:`RunStore.list_runs` that is given."""
    meta = snap.meta
    return (
        (tenant_id is None or meta.get("tenant_id") == tenant_id)
        and (dag_name is None or meta.get("dag_name") == dag_name)
        and (status is None or snap.status == status)
    )


def attempts_started(state: str, fence: int, failed_attempts: int) -> int:
    """Attempts of a task so far, from its lease: the failed ones, plus the one that is
    running or that ended it (a retry waiting to run is not started yet)."""
    current = 1 if fence > 0 and state in ("running", "ok", "failed") else 0
    return failed_attempts + current


@dataclass(frozen=True)
class SweepResult:
    """What one :meth:`RunStore.sweep` found (already re-armed in the store).

    Attributes:
        expired: ``(run_id, task_id, worker, fence)`` of leases that expired: re-send them.
        due: ``(run_id, task_id)`` of outbox entries that are due: re-send them.
        idle_runs: Runs nothing touched for the idle period: check them for a stall.
    """

    expired: tuple[tuple[str, str, str, int], ...] = ()
    due: tuple[tuple[str, str], ...] = ()
    idle_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunInspection:
    """Everything the sweeper needs to tell a slow run from a stalled one.

    Attributes:
        exists: False if the run's state is gone from the store (expired or flushed).
        done: True if the run already has its final status.
        dag_name: From the run index (kept even when the state is gone).
        tenant_id: Likewise.
        states: Each task's state.
        live: Tasks with a live lease or an outbox entry: something will move them.
    """

    exists: bool
    done: bool
    dag_name: str
    tenant_id: str
    states: Mapping[str, str]
    live: frozenset[str]


class RunStore(Protocol):
    """Storage for runs in flight. See the module docstring for the guarantees.

    Attributes:
        writes_events: True when the store appends the ``event`` given to ``create_run``,
            ``retry``, ``finish`` and ``mark_done`` to the event stream in the same atomic
            step (so the caller must not write it again); False when the caller writes it.
    """

    writes_events: bool

    def create_run(
        self,
        run_id: str,
        plan: str,
        meta: Mapping[str, Any],
        task_ids: Sequence[str],
        roots: Sequence[str] = (),
        grace_s: float = 30.0,
        event: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a new run's plan, metadata and ``pending`` tasks; put ``roots`` in the outbox."""

    def load_plan(self, run_id: str) -> str | None:
        """Return the run's plan JSON, or None if the run is unknown or expired."""

    def claim(
        self,
        run_id: str,
        task_id: str,
        token: str,
        worker: str = "",
        lease_s: float = 30.0,
        parents: Sequence[str] = (),
    ) -> Claim:
        """Give delivery ``token`` a lease on ``task_id`` unless a live lease or an end exists."""

    def renew(self, leases: Sequence[tuple[str, str, int]], lease_s: float) -> list[bool]:
        """Extend each ``(run_id, task_id, fence)`` lease; False where it is no longer held."""

    def release(self, run_id: str, task_id: str, token: str) -> bool:
        """Expire delivery ``token``'s lease now (its process is known to be dead).

        The next delivery takes over at once instead of after the lease period; the fence
        is kept, so a late commit of the dead holder is still refused.
        """

    def retry(
        self,
        run_id: str,
        task_id: str,
        fence: int,
        due_in_s: float,
        grace_s: float,
        event: Mapping[str, Any] | None = None,
        end: AttemptEnd | None = None,
    ) -> bool:
        """End a failed attempt that will be retried; False if the lease was lost.

        The step goes into the outbox, due ``due_in_s + grace_s`` from now (the grace lets
        the fast path, a Celery ETA message, run it first); ``end`` is kept with the task.
        """

    def outputs(self, run_id: str, task_ids: Sequence[str]) -> dict[str, str]:
        """Return the stored output JSON of each finished task in ``task_ids``."""

    def finish(
        self,
        run_id: str,
        task_id: str,
        fence: int,
        state: Literal["ok", "failed"],
        output: str | None,
        *,
        skip: Sequence[str] = (),
        total: int,
        links: Sequence[str] = (),
        joins: Sequence[tuple[str, int]] = (),
        grace_s: float = 30.0,
        token: str = "",
        event: Mapping[str, Any] | None = None,
        end: AttemptEnd | None = None,
    ) -> FinishResult:
        """Record ``task_id``'s end for lease ``fence``; see the module docstring.

        Args:
            fence: The caller's fencing number; 0 ends the task from outside (a revoked
                step): allowed unless another delivery than ``token`` holds a live lease.
            skip: Descendants to mark skipped (when ``state`` is ``failed``).
            total: How many tasks the run has.
            links: Children with this task as their only parent (ready when it is ``ok``).
            joins: ``(child, number of parents)`` for each child with several parents.
            grace_s: Seconds the outbox waits before the sweeper re-sends a ready child.
            token: With ``fence`` 0: the delivery that is allowed to end it.
            event: The ``task_ok``/``task_fail`` record, written only by the call that
                records the end (see :attr:`writes_events`).
            end: How the attempt ended, kept with the task if this call records its end.
        """

    def unsent(self, run_id: str, task_ids: Sequence[str]) -> list[str]:
        """Those of ``task_ids`` that sit in the outbox, ready and not yet claimed."""

    def mark_done(
        self,
        run_id: str,
        status: str,
        fields: Mapping[str, Any],
        event: Mapping[str, Any] | None = None,
    ) -> None:
        """Set the run's final status, drop it from the sweeper's index and wake waiters."""

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Return the run's progress, or None if the run is unknown."""

    def tasks(self, run_id: str) -> list[TaskInfo] | None:
        """Each task's state, attempts, worker and last attempt's end, in no set order; None
        if the run is unknown."""

    def list_runs(
        self,
        *,
        tenant_id: str | None = None,
        dag_name: str | None = None,
        status: str | None = None,
        limit: int = 20,
    ) -> list[RunSnapshot]:
        """Up to ``limit`` runs still in the store, newest start first, that match every filter
        given (``status``: ``running``, ``success`` or ``failed``)."""

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the run to be marked done; True if it is."""

    def sweep(self, limit: int, grace_s: float, idle_s: float) -> SweepResult:
        """Return (and re-arm) expired leases, due outbox entries and idle runs."""

    def inspect(self, run_id: str) -> RunInspection:
        """Read what the sweeper needs to judge one idle run."""

    def touch(self, run_id: str) -> None:
        """Mark a run as alive (the sweeper checked it and found it moving)."""

    def forget(self, run_id: str) -> None:
        """Drop a run whose state is gone from the sweeper's index."""

    def requeue(self, run_id: str, task_ids: Sequence[str]) -> None:
        """Put tasks into the outbox, due now (the sweeper repairs a run this way)."""

    def try_lock(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take a named lock for ``ttl_s`` seconds unless another holder has it."""
