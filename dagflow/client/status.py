"""A run as ``dagflow status`` and ``dagflow runs`` show it, and how a finished run ended.

Pure: :meth:`RunStatus.from_store` takes a :class:`~dagflow.stores.RunSnapshot` and the
run's :class:`~dagflow.stores.base.TaskInfo` list and returns a value; nothing here reads
Redis or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagflow.dag.mapping import split_instance
from dagflow.execution.admission import slots_from_json, waiting_line
from dagflow.stores.base import RunSnapshot, TaskInfo
from dagflow.stores.notifications import NoticeState


def failure_line(task: TaskInfo) -> str:
    """The one line that says why a failed task failed (the seed's format).

    ``RunnerError: Task 'x' failed after N attempts: <error>`` as the worker stored it, or
    a line built from the attempts when the store kept no error.
    """
    if task.last.error:
        return task.last.error
    attempts = f"{task.attempts} attempt" + ("" if task.attempts == 1 else "s")
    return f"RunnerError: Task '{task.task_id}' failed after {attempts}"


def ordered(tasks: Sequence[TaskInfo], order: Sequence[str]) -> list[TaskInfo]:
    """``tasks`` in ``order`` (the plan's), unknown ones last by id."""
    rank = {task_id: i for i, task_id in enumerate(order)}
    return sorted(tasks, key=lambda t: (rank.get(t.task_id, len(rank)), t.task_id))


@dataclass(frozen=True)
class RunStatus:
    """A run's status, its tasks and its metadata, from any process that reaches the store.

    Attributes:
        run_id: The run.
        dag_name: The DAG's name.
        tenant_id: The DAG's tenant.
        status: ``running``, ``success`` or ``failed``.
        started_at: Epoch seconds.
        finished_at: Epoch seconds, or None while it runs.
        duration_s: Seconds from start to end, or None while it runs.
        counts: Tasks ``ok``, ``failed``, ``skipped`` and ``total``.
        labels: The labels it was started with.
        error: Why the run ended without all its tasks ending (``stalled: ...``), or None.
        tasks: Each task, in plan order (empty in listings).
        waiting_for: For a ``pending`` run, the limits it waits for
            (``waiting for a slot: tenant acme (2 at once)``), else None.
        pool_waits: Each step parked for a pool slot, and what it waits for
            (``waiting for pool 'warehouse' (4/4 in use, 3 waiting)``).
        notices: Its hooks and webhooks and how each delivery stands (``sent``,
            ``retrying``, ``failed``...), sorted by id.
    """

    run_id: str
    dag_name: str
    tenant_id: str
    status: str
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    counts: Mapping[str, int]
    labels: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    tasks: tuple[TaskInfo, ...] = ()
    waiting_for: str | None = None
    pool_waits: Mapping[str, str] = field(default_factory=dict)
    notices: tuple[NoticeState, ...] = ()

    @classmethod
    def from_store(
        cls,
        snapshot: RunSnapshot,
        tasks: Sequence[TaskInfo] = (),
        order: Sequence[str] = (),
        pool_waits: Mapping[str, str] | None = None,
    ) -> RunStatus:
        """Build a status from the store's snapshot and (optionally) its task details."""
        meta = snapshot.meta

        def number(key: str) -> float | None:
            value = meta.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return float(value)

        def text(key: str) -> str:
            value = meta.get(key)
            return "" if value is None else str(value)

        labels = meta.get("labels")
        pending = snapshot.status == "pending"
        return cls(
            run_id=snapshot.run_id,
            dag_name=text("dag_name"),
            tenant_id=text("tenant_id"),
            status=snapshot.status,
            started_at=None if pending else number("started_at"),
            finished_at=number("finished_at"),
            duration_s=number("duration_s"),
            counts=dict(snapshot.counts),
            labels=dict(labels) if isinstance(labels, dict) else {},
            error=str(meta["error"]) if meta.get("error") else None,
            tasks=tuple(ordered(tasks, order)),
            waiting_for=waiting_line(slots_from_json(meta.get("slots"))) if pending else None,
            pool_waits=dict(pool_waits or {}),
        )

    @property
    def maps(self) -> dict[str, dict[str, int]]:
        """For each mapped task with instances: how many are in each state, and ``total``."""
        found: dict[str, dict[str, int]] = {}
        for task in self.tasks:
            base, index = split_instance(task.task_id)
            if index is not None:
                counts = found.setdefault(base, {"total": 0})
                counts[task.state] = counts.get(task.state, 0) + 1
                counts["total"] += 1
        return found

    def map_lines(self) -> list[str]:
        """``process: 97 ok, 3 failed of 100`` for each mapped task with instances."""
        lines = []
        for base, counts in self.maps.items():
            parts = [f"{n} {state}" for state, n in counts.items() if state != "total"]
            lines.append(f"{base}: {', '.join(parts)} of {counts['total']}")
        return lines

    @property
    def failures(self) -> list[str]:
        """One line per failed task (see :func:`failure_line`), in plan order."""
        return [failure_line(t) for t in self.tasks if t.state == "failed"]

    def to_dict(self, tracebacks: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (``dagflow status --json``, ``dagflow runs --json``)."""
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "dag_name": self.dag_name,
            "tenant_id": self.tenant_id,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "counts": dict(self.counts),
            "labels": dict(self.labels),
            "error": self.error,
            "waiting_for": self.waiting_for,
        }
        if self.notices:
            data["notifications"] = [
                {
                    "kind": n.kind,
                    "target": n.target,
                    "trigger": n.trigger,
                    "state": n.state,
                    "attempts": n.attempts,
                    "error": n.error,
                }
                for n in self.notices
            ]
        if self.tasks:
            data["tasks"] = [
                {
                    "task_id": t.task_id,
                    "state": t.state,
                    "attempts": t.attempts,
                    "worker": t.worker or None,
                    "duration_s": t.last.duration_s,
                    "error": t.last.error,
                    "waiting_for": self.pool_waits.get(t.task_id),
                    **({"traceback": t.last.traceback} if tracebacks else {}),
                }
                for t in self.tasks
            ]
            if self.maps:
                data["maps"] = self.maps
        return data


@dataclass(frozen=True)
class RunResult:
    """How a finished run ended."""

    run_id: str
    dag_name: str
    status: str
    tasks: int
    succeeded: int
    failed: int
    skipped: int
    duration_s: float
    #: One line per failed task: ``RunnerError: Task 'x' failed after N attempts: <error>``.
    failures: tuple[str, ...] = ()
    #: Tasks ended by a cancel (never started, or interrupted).
    cancelled: int = 0

    @property
    def ok(self) -> bool:
        """True if the run succeeded: every task succeeded or was skipped, none failed."""
        return self.status == "success"
