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
  this call completed the run, exactly once per run. For a plan with trigger rules or
  branches (:class:`Gates`) it instead decides each child from its parents' states: ready,
  skipped (which decides that task's children in turn) or waiting. A child with more than
  ``READ_ALL_MAX`` parents keeps the set of its ended parents and reads their states only
  when an end can decide it (:func:`dagflow.dag.rules.decisive`) or all have ended: the
  end of each of a wide join's parents does not read every other parent's state.
* :meth:`RunStore.retry` ends a failed attempt that will be tried again: the lease is
  released and the step goes into the outbox with its due time (a **durable retry**: it
  does not live only in a worker's memory as a Celery ETA).
* :meth:`RunStore.cancel` marks the run cancelled: every task that is not running under a
  live lease ends ``cancelled`` at once (its outbox entry dropped); the holders of live
  leases are returned so the caller can interrupt them. From then on ``claim`` ends a
  step of the run as ``cancelled`` instead of running it, ``finish`` records ``cancelled``
  whatever the attempt's outcome (its output is discarded, no child is made ready), and
  ``sweep`` re-sends nothing of the run.
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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dagflow.execution.admission import Slot

from dagflow.stores.notifications import Notice, NoticeBatch, NoticeState
from dagflow.stores.records import (
    AttemptEnd,
    CancelResult,
    Claim,
    ClaimResult,
    FinishRequest,
    FinishResult,
    Gate,
    Gates,
    MapChanges,
    Push,
    RunInspection,
    RunSnapshot,
    SweepResult,
    TaskInfo,
)

__all__ = [
    "COUNTED",
    "TERMINAL",
    "AttemptEnd",
    "CancelResult",
    "Claim",
    "ClaimResult",
    "FinishRequest",
    "FinishResult",
    "Gate",
    "Gates",
    "MapChanges",
    "Push",
    "RunInspection",
    "RunSnapshot",
    "RunStore",
    "SweepResult",
    "TaskInfo",
    "attempts_started",
    "run_matches",
    "run_position",
]

#: States after which a task never changes again.
TERMINAL = frozenset({"ok", "failed", "skipped", "cancelled"})
#: The task states a run's counts are kept for (``n_<state>`` in the store).
COUNTED = ("ok", "failed", "skipped", "cancelled")


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


def run_position(snap: RunSnapshot) -> tuple[int, str]:
    """Where a run sits in a listing, newest first: its start (ms) and its id (ties).

    Passed back as ``before`` to :meth:`RunStore.list_runs`, it pages through the runs
    without skipping or repeating one when runs start meanwhile.
    """
    try:
        started = int(float(snap.meta["started_at"]) * 1000)
    except (KeyError, TypeError, ValueError):
        started = 0
    return started, snap.run_id


def attempts_started(state: str, fence: int, failed_attempts: int) -> int:
    """Attempts of a task so far, from its lease: the failed ones, plus the one that is
    running or that ended it (a retry waiting to run is not started yet)."""
    current = 1 if fence > 0 and state in ("running", "ok", "failed") else 0
    return failed_attempts + current


class RunStore(Protocol):
    """Storage for runs in flight. See the module docstring for the guarantees.

    Attributes:
        writes_events: True when the store appends the ``event`` given to ``create_run``,
            ``retry``, ``finish`` and ``mark_done`` to the event stream in the same atomic
            step (so the caller must not write it again), and with a finish's event the
            ``task_skip``, ``map_expand`` and ``map_done`` lines of what it decided; False
            when the caller writes them all.
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
        reused: Mapping[str, str] | None = None,
        arrivals: Mapping[str, Sequence[str]] | None = None,
        pending: bool = False,
        maps: Mapping[str, tuple[int, int, int]] | None = None,
    ) -> None:
        """Store a new run's plan, metadata and ``pending`` tasks; put ``roots`` in the outbox.

        Args:
            reused: For a retry: tasks that start ``ok`` with this output JSON (counted ok).
            arrivals: For a retry: join children and the (reused) parents already arrived.
            maps: For a retry: mapped tasks that start expanded (``mapped``, their
                instances among ``task_ids``), as ``(instances, left to end, next index
                to start under max_parallel or -1)``.
            pending: The run waits for a slot (its meta has ``pending``): store it only;
                :meth:`activate` indexes it and fills the outbox once it is admitted.
        """

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
        event: Mapping[str, Any] | None = None,
    ) -> Claim:
        """Give delivery ``token`` a lease on ``task_id`` unless a live lease or an end exists.

        ``event`` is the attempt's ``task_start`` record: a store that :attr:`writes_events`
        appends it in the same atomic step when (and only when) the claim grants a lease
        (``run``), with its ``attempt`` and ``fence`` replaced by the lease's own.
        """

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

    def finish(self, request: FinishRequest) -> FinishResult:
        """Record a task's end under the request's fencing number (see
        :class:`FinishRequest` and the module docstring)."""

    def cancel(self, run_id: str, force: bool = False) -> CancelResult:
        """Mark the run cancelled and end its tasks that nobody runs; see the module docstring.

        Args:
            force: Also end the tasks running under a live lease (their holders die with
                this process: the embedded mode).
        """

    def unsent(self, run_id: str, task_ids: Sequence[str]) -> list[str]:
        """Those of ``task_ids`` that sit in the outbox, ready and not yet claimed."""

    def mark_done(
        self,
        run_id: str,
        status: str,
        fields: Mapping[str, Any],
        event: Mapping[str, Any] | None = None,
        notices: NoticeBatch | None = None,
    ) -> None:
        """Set the run's final status, drop it from the sweeper's index and wake waiters.

        In the same atomic step, drop the run's deadline and write ``notices`` (the hooks and
        webhooks to tell: :mod:`dagflow.stores.notifications`)."""

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
        before: tuple[int, str] | None = None,
    ) -> list[RunSnapshot]:
        """Up to ``limit`` runs still in the store, newest start first, that match every filter
        given (``status``: ``running``, ``success``, ``failed`` or ``cancelled``); with
        ``before`` (see :func:`run_position`), only the runs listed after that one."""

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

    # Admission (see dagflow.execution.admission).

    def admit(self, run_id: str, tenant_id: str, slots: Sequence[Slot]) -> bool:
        """Take one slot of each scope if all have room and nobody waits for them (True);
        else queue the run behind its tenant's waiting runs (False). Idempotent."""

    def promote(self, limit: int) -> list[str]:
        """Admit up to ``limit`` waiting runs whose scopes have room, visiting tenants in
        turn and each tenant's runs oldest first; drop cancelled ones. Returns the runs
        admitted: the caller activates them."""

    def release_slots(self, run_id: str, slots: Sequence[Slot]) -> None:
        """Give back an ended run's slots."""

    def audit_slots(self, stale_s: float) -> tuple[int, list[str]]:
        """Free the slots of runs that ended or vanished; return how many, and the runs
        admitted more than ``stale_s`` ago but never activated (their starter died)."""

    def activate(
        self,
        run_id: str,
        index: str,
        started_at: float,
        roots: Sequence[str],
        grace_s: float,
        event: Mapping[str, Any] | None = None,
    ) -> bool:
        """Start an admitted waiting run: clear ``pending``, index it, put ``roots`` in the
        outbox (and write ``event`` if the store writes events). False if it was not
        waiting (started already, or cancelled)."""

    def waiting_runs(self) -> dict[str, int]:
        """Runs waiting for a slot, per tenant."""

    # Notifications and deadlines (see dagflow.stores.notifications).

    def due_deadlines(self, limit: int) -> list[str]:
        """Runs whose ``deadline_at`` (a meta field given to ``create_run``) has passed and
        that nobody claimed yet (read only)."""

    def miss_deadline(
        self, run_id: str, notices: NoticeBatch, event: Mapping[str, Any] | None = None
    ) -> bool:
        """Claim the run's missed deadline: True for exactly one caller while the run is
        open; the claim writes ``notices`` (and ``event``, see :attr:`writes_events`)."""

    def claim_notices(self, limit: int, lease_s: float) -> list[Notice]:
        """Up to ``limit`` due notices, each held ``lease_s`` for the caller to deliver."""

    def settle_notice(self, notice: Notice, sent: bool, error: str | None = None) -> None:
        """End a notice: delivered (``sent``), or given up after its last attempt."""

    def retry_notice(self, notice: Notice, due_in_s: float, error: str) -> bool:
        """Re-arm a notice after a failed attempt; False if it was settled meanwhile."""

    def notices(self, run_id: str) -> list[NoticeState]:
        """The run's notices and how each delivery stands, sorted by id."""
