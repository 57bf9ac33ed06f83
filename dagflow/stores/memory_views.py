"""The read side of the in-memory run store: snapshots, task details, listings, inspection.

:class:`~dagflow.stores.memory.MemoryRunStore` inherits them, as the Redis store inherits
:class:`~dagflow.stores.redis_views.RedisRunViews`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagflow.stores.base import (
    COUNTED,
    TERMINAL,
    AttemptEnd,
    RunInspection,
    RunSnapshot,
    TaskInfo,
    attempts_started,
    run_matches,
)


@dataclass
class MemoryLease:
    token: str = ""
    fence: int = 0
    worker: str = ""
    expires: float = 0.0  # 0: released
    fails: int = 0


@dataclass
class MemoryRun:
    plan: str
    meta: dict[str, Any]
    states: dict[str, str]
    leases: dict[str, MemoryLease] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    ends: dict[str, AttemptEnd] = field(default_factory=dict)
    arrivals: dict[str, set[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    complete: bool = False
    cancelled: bool = False
    #: What other parts of the store keep per run (the mapped tasks: memory_gates).
    extra: dict[str, Any] = field(default_factory=dict)

    def cancel_task(self, task_id: str) -> None:
        """End an open task as ``cancelled`` (the run was cancelled); release its lease."""
        self.states[task_id] = "cancelled"
        self.counts["cancelled"] += 1
        if task_id in self.leases:
            self.leases[task_id].expires = 0.0

    def complete_if_done(self) -> bool:
        """Mark the run complete if every task ended; True for the one call that does."""
        if sum(self.counts.values()) >= len(self.states) and not self.complete:
            self.complete = True
            return True
        return False

    done: threading.Event = field(default_factory=threading.Event)


class MemoryRunViews:
    """Read-only queries on the in-memory store's state (see the module docstring)."""

    _runs: dict[str, MemoryRun]
    _lock: threading.Lock
    _clock: Callable[[], float]
    _index: dict[str, tuple[str, str]]
    _outbox: dict[tuple[str, str], float]

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Return a copy of the run's progress."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            counts = dict(run.counts, total=len(run.states))
            states = dict(run.states) if with_states else None
            status = str(
                run.meta.get("status") or ("pending" if run.meta.get("pending") else "running")
            )
            return RunSnapshot(status, counts, states, dict(run.meta), run_id)

    def tasks(self, run_id: str) -> list[TaskInfo] | None:
        """Each task's state, attempts, worker and last attempt's end."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            out = []
            for task_id, state in run.states.items():
                lease = run.leases.get(task_id, MemoryLease())
                out.append(
                    TaskInfo(
                        task_id=task_id,
                        state=state,
                        attempts=attempts_started(state, lease.fence, lease.fails),
                        worker=lease.worker,
                        fence=lease.fence,
                        last=run.ends.get(task_id, AttemptEnd()),
                    )
                )
            return out

    def list_runs(
        self,
        *,
        tenant_id: str | None = None,
        dag_name: str | None = None,
        status: str | None = None,
        limit: int = 20,
        before: tuple[int, str] | None = None,
    ) -> list[RunSnapshot]:
        """Runs of this process, newest start first (ties by id, descending), that match
        every filter given, after ``before`` (start ms, run id) when it is given."""
        with self._lock:
            positions = {
                r: (int(float(self._runs[r].meta.get("started_at") or 0.0) * 1000), r)
                for r in self._runs
            }
        run_ids = sorted(positions, key=positions.__getitem__, reverse=True)
        found = []
        for run_id in run_ids:
            if before is not None and positions[run_id] >= before:
                continue
            snap = self.snapshot(run_id)
            if snap is not None and run_matches(snap, tenant_id, dag_name, status):
                found.append(snap)
                if len(found) >= limit:
                    break
        return found

    def inspect(self, run_id: str) -> RunInspection:
        """Read what the sweeper needs to judge one idle run."""
        now = self._clock()
        with self._lock:
            dag_name, tenant = self._index.get(run_id, ("", ""))
            run = self._runs.get(run_id)
            if run is None:
                return RunInspection(False, False, dag_name, tenant, {}, frozenset())
            done = "status" in run.meta
            live = {
                t
                for t, s in run.states.items()
                if s not in TERMINAL
                and (
                    (run_id, t) in self._outbox
                    or (t in run.leases and run.leases[t].token and run.leases[t].expires > now)
                )
            }
            states = dict(run.states)
            return RunInspection(
                True, done, dag_name, tenant, states, frozenset(live), run.cancelled
            )
