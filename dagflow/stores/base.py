"""The run store contract: the few atomic operations completion-driven joins need.

Each operation is atomic in the store, and every one is safe to repeat, because with
``acks_late`` a worker that dies mid-task gets its message delivered again:

* :meth:`RunStore.claim` lets exactly one delivery of a step execute (a redelivery of the
  *same* message, or a Celery retry, keeps its claim; a second copy is told ``duplicate``).
* :meth:`RunStore.finish` records a task's final state once, skips its descendants and says
  whether this call completed the run, exactly once per run.
* :meth:`RunStore.arrive` records a parent against a child's set of arrived parents (a set,
  not a counter, so a repeated arrival is harmless) and says whether the child is now ready.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: States after which a task never changes again.
TERMINAL = frozenset({"ok", "failed", "skipped"})

ClaimResult = Literal["run", "duplicate", "ok", "failed", "skipped"]


@dataclass(frozen=True)
class FinishResult:
    """What :meth:`RunStore.finish` did.

    Attributes:
        complete: True for exactly one call per run: the one that finished its last task.
        newly_skipped: Descendants this call marked skipped (not those skipped before).
        counts: Tasks ``ok``, ``failed`` and ``skipped`` so far.
    """

    complete: bool
    newly_skipped: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


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

    def claim(self, run_id: str, task_id: str, token: str) -> ClaimResult:
        """Let the delivery ``token`` execute ``task_id``, unless another holds it or it is done."""

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
    ) -> FinishResult:
        """Record ``task_id``'s final state and output once, mark ``skip`` skipped."""

    def arrive(self, run_id: str, child: str, parent: str, parents: int, force: bool) -> bool:
        """Record ``parent`` as done for ``child``; True if this call made ``child`` ready."""

    def mark_done(self, run_id: str, status: str, fields: Mapping[str, Any]) -> None:
        """Set the run's final status and wake waiters."""

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Return the run's progress, or None if the run is unknown."""

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the run to be marked done; True if it is."""
