"""The run store contract: the few atomic operations completion-driven joins need.

Each operation is atomic in the store, and every one is safe to repeat, because with
``acks_late`` a worker that dies mid-task gets its message delivered again:

* :meth:`RunStore.claim` lets exactly one delivery of a step execute (a redelivery of the
  *same* message, or a Celery retry, keeps its claim; a second copy is told ``duplicate``),
  and hands it its parents' outputs in the same round trip.
* :meth:`RunStore.finish` records a task's final state once, skips its descendants, records
  the task against each join child's set of arrived parents (a set, not a counter, so a
  repeated arrival is harmless), returns the join children that became ready, and says
  whether this call completed the run, exactly once per run.

A step therefore costs two round trips to the store, whatever its fan-in and fan-out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: States after which a task never changes again.
TERMINAL = frozenset({"ok", "failed", "skipped"})

ClaimResult = Literal["run", "duplicate", "ok", "failed", "skipped"]


@dataclass(frozen=True)
class Claim:
    """What :meth:`RunStore.claim` said.

    Attributes:
        state: ``run`` (execute it), ``duplicate`` (another delivery holds it) or the task's
            terminal state (it already finished).
        outputs: The parents' output JSON, when ``state`` is ``run``.
    """

    state: ClaimResult
    outputs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishResult:
    """What :meth:`RunStore.finish` did.

    Attributes:
        complete: True for exactly one call per run: the one that finished its last task.
        newly_skipped: Descendants this call marked skipped (not those skipped before).
        counts: Tasks ``ok``, ``failed`` and ``skipped`` so far.
        ready: Join children that this call made ready (send them).
    """

    complete: bool
    newly_skipped: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    ready: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSnapshot:
    """A run's progress as a waiter sees it.

    Attributes:
        status: ``running``, ``success`` or ``failed``.
        counts: Tasks ``ok``, ``failed``, ``skipped`` so far, and ``total``.
        states: Each task's state (``pending``, ``running``, ``retry`` or terminal), if asked for.
        meta: The run's metadata (dag name, tenant, labels, start and finish times).
    """

    status: str
    counts: Mapping[str, int]
    states: Mapping[str, str] | None
    meta: Mapping[str, Any]


class RunStore(Protocol):
    """Storage for runs in flight. See the module docstring for the guarantees."""

    def create_run(
        self, run_id: str, plan: str, meta: Mapping[str, Any], task_ids: Sequence[str]
    ) -> None:
        """Store a new run's plan (JSON), metadata and all its tasks as ``pending``."""

    def load_plan(self, run_id: str) -> str | None:
        """Return the run's plan JSON, or None if the run is unknown or expired."""

    def claim(self, run_id: str, task_id: str, token: str, parents: Sequence[str] = ()) -> Claim:
        """Let delivery ``token`` execute ``task_id`` unless another holds it or it is done."""

    def set_state(self, run_id: str, task_id: str, state: str) -> None:
        """Set a non-terminal state (``retry``) for display; terminal states go through finish."""

    def outputs(self, run_id: str, task_ids: Sequence[str]) -> dict[str, str]:
        """Return the stored output JSON of each finished task in ``task_ids``."""

    def finish(
        self,
        run_id: str,
        task_id: str,
        state: Literal["ok", "failed"],
        output: str | None,
        skip: Sequence[str],
        total: int,
        joins: Sequence[tuple[str, int]] = (),
        force: bool = False,
    ) -> FinishResult:
        """Record ``task_id``'s final state and output once, mark ``skip`` skipped.

        Args:
            joins: ``(child, number of parents)`` for each child with several parents; the
                task is recorded as arrived at each (only when ``state`` is ``ok``).
            force: Report a join child as ready even if this task had arrived before (a
                redelivered step re-sends what a dead worker may not have sent).
        """

    def mark_done(self, run_id: str, status: str, fields: Mapping[str, Any]) -> None:
        """Set the run's final status and wake waiters."""

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Return the run's progress, or None if the run is unknown."""

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the run to be marked done; True if it is."""
