"""Run store in process memory, for the embedded mode (one process, worker threads).

The same contract as :class:`~dagflow.stores.redis.RedisRunStore`, kept atomic by one lock
instead of Lua scripts, with the same leases, outbox and sweeper indexes. Nothing survives
the process: this twin is for ``dagflow run`` with no broker and for tests, not for
production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from dagflow.stores.base import (
    TERMINAL,
    AttemptEnd,
    CancelResult,
    Claim,
    ClaimResult,
    FinishRequest,
    FinishResult,
    MapChanges,
)
from dagflow.stores.memory_admission import MemoryAdmission
from dagflow.stores.memory_gates import decide_children, maps_of
from dagflow.stores.memory_recovery import MemoryRecovery
from dagflow.stores.memory_views import MemoryLease, MemoryRun, MemoryRunViews
from dagflow.stores.notifications import MemoryNotices, NoticeBatch


class MemoryRunStore(MemoryAdmission, MemoryRunViews, MemoryNotices, MemoryRecovery):
    """A :class:`~dagflow.stores.base.RunStore` in dicts, guarded by one lock.

    Args:
        clock: Seconds (wall clock by default; tests pass a fake to expire leases).
    """

    #: This store writes no events: the step writes them to the event log itself.
    writes_events = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._runs: dict[str, MemoryRun] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._leases: dict[tuple[str, str], float] = {}
        self._outbox: dict[tuple[str, str], float] = {}
        self._resends: dict[tuple[str, str], int] = {}
        self._moved: dict[str, float] = {}
        self._index: dict[str, tuple[str, str]] = {}
        self._locks: dict[str, float] = {}
        self._init_admission()
        self._init_notices()

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
        """Store a new run (with its reused tasks), index it and put its roots in the outbox
        (a ``pending`` run: only stored, :meth:`activate` does the rest)."""
        now = self._clock()
        with self._lock:
            run = MemoryRun(plan, dict(meta), dict.fromkeys(task_ids, "pending"))
            for task_id, output in (reused or {}).items():
                run.states[task_id] = "ok"
                run.outputs[task_id] = output
                run.counts["ok"] += 1
            for child, parents in (arrivals or {}).items():
                run.arrivals[child] = set(parents)
            if maps:
                maps_of(run).preset(run, maps)
            self._runs[run_id] = run
            self._on_created(run_id, meta)
            if not pending:
                self._start(run_id, run, roots, now + grace_s)

    def _start(self, run_id: str, run: MemoryRun, roots: Sequence[str], due: float) -> None:
        self._index[run_id] = (
            str(run.meta.get("dag_name", "")),
            str(run.meta.get("tenant_id", "")),
        )
        self._moved[run_id] = self._clock()
        for root in roots:
            self._outbox[(run_id, root)] = due

    def load_plan(self, run_id: str) -> str | None:
        """Return the plan JSON, or None."""
        run = self._runs.get(run_id)
        return run.plan if run else None

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
        """Give ``token`` a lease on ``task_id`` and read its parents' outputs.

        ``event`` is ignored: this store does not write events (the caller does).
        """
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_id)
            state = run.states.get(task_id) if run else None
            if run is None or state is None:
                return Claim("gone")
            if state in TERMINAL or state == "mapped":
                return Claim(cast(ClaimResult, state))
            lease = run.leases.setdefault(task_id, MemoryLease())
            if lease.token and lease.expires > now:
                return Claim("busy", holder=lease.worker)
            if run.cancelled:
                self._cancel_task(run_id, run, task_id)
                return Claim("cancelled", recorded=True, complete=run.complete_if_done())
            took_over = lease.worker if lease.token and lease.expires > 0 else ""
            lease.token, lease.worker = token, worker
            lease.fence += 1
            lease.expires = now + lease_s
            run.states[task_id] = "running"
            self._leases[(run_id, task_id)] = lease.expires
            self._outbox.pop((run_id, task_id), None)
            self._resends.pop((run_id, task_id), None)
            self._moved[run_id] = now
            outputs = {p: run.outputs[p] for p in parents if p in run.outputs}
            return Claim("run", outputs, lease.fence, lease.fails + 1, took_over)

    def renew(self, leases: Sequence[tuple[str, str, int]], lease_s: float) -> list[bool]:
        """Extend each lease still held with its fencing number."""
        now = self._clock()
        out = []
        with self._lock:
            for run_id, task_id, fence in leases:
                run = self._runs.get(run_id)
                lease = run.leases.get(task_id) if run else None
                if lease is None or not lease.token or lease.expires <= 0 or lease.fence != fence:
                    out.append(False)
                    continue
                lease.expires = now + lease_s
                self._leases[(run_id, task_id)] = lease.expires
                self._moved[run_id] = now
                out.append(True)
        return out

    def release(self, run_id: str, task_id: str, token: str) -> bool:
        """Expire ``token``'s lease now."""
        with self._lock:
            run = self._runs.get(run_id)
            lease = run.leases.get(task_id) if run else None
            if lease is None or not lease.token or lease.token != token or lease.expires <= 1:
                return False
            lease.expires = 1.0
            self._leases[(run_id, task_id)] = 1.0
            return True

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
        """Release the lease and put the step in the outbox, due later; keep ``end``."""
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_id)
            lease = run.leases.get(task_id) if run else None
            if run is None or lease is None or not lease.token or lease.fence != fence:
                return False
            if run.states.get(task_id) == "running":
                lease.expires = 0.0
                lease.fails += 1
                run.states[task_id] = "retry"
                if end is not None:
                    run.ends[task_id] = end
                self._leases.pop((run_id, task_id), None)
                self._outbox[(run_id, task_id)] = now + due_in_s + grace_s
                self._moved[run_id] = now
            return True

    def outputs(self, run_id: str, task_ids: Sequence[str]) -> dict[str, str]:
        """Return stored outputs."""
        with self._lock:
            run = self._runs.get(run_id)
            out = run.outputs if run else {}
            return {t: out[t] for t in task_ids if t in out}

    def finish(self, request: FinishRequest) -> FinishResult:
        """Check the fence, record the end once, skip, record arrivals, fill the outbox.

        ``push`` is ignored (no broker queue lives here): the caller sends every ready child.
        """
        run_id, task_id = request.run_id, request.task_id
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or task_id not in run.states:
                return FinishResult(complete=False, lost=True)
            lease = run.leases.setdefault(task_id, MemoryLease())
            if request.fence > 0 and (not lease.token or lease.fence != request.fence):
                return FinishResult(complete=False, lost=True)
            if (
                request.fence == 0
                and lease.token
                and lease.token != request.token
                and lease.expires > now
            ):
                return FinishResult(complete=False, lost=True)
            first = run.states[task_id] not in TERMINAL
            final = "cancelled" if run.cancelled else request.state
            if first:
                run.states[task_id] = final
                if request.output is not None and not run.cancelled:
                    run.outputs[task_id] = request.output
                if request.end is not None:
                    run.ends[task_id] = request.end
                run.counts[final] += 1
            lease.expires = 0.0
            self._leases.pop((run_id, task_id), None)
            self._outbox.pop((run_id, task_id), None)
            newly = []
            for node in () if run.cancelled else request.skip:
                if run.states.get(node) not in TERMINAL:
                    run.states[node] = "skipped"
                    run.counts["skipped"] += 1
                    self._outbox.pop((run_id, node), None)
                    newly.append(node)
            if request.maps and first and final == "ok":
                maps_of(run).record(request.maps)
            reasons: dict[str, str] = {}
            ready: list[str] = []
            mapped = MapChanges()
            if request.gates is not None and first and not run.cancelled:
                ready, mapped = decide_children(
                    run,
                    task_id,
                    final,
                    request.gates,
                    lambda node: (run_id, node) in self._outbox,
                    reasons,
                )
                newly += list(reasons)
            complete = False
            total = max(request.total, len(run.states))
            if sum(run.counts.values()) >= total and not run.complete:
                run.complete = complete = True
            if request.state == "ok" and not run.cancelled:
                ready += [c for c in request.links if first and run.states.get(c) == "pending"]
                for child, need in request.joins:
                    arrived = run.arrivals.setdefault(child, set())
                    added = task_id not in arrived
                    arrived.add(task_id)
                    if added and len(arrived) >= need:
                        ready.append(child)
            for child in ready:
                self._outbox[(run_id, child)] = now + request.grace_s
            if run_id in self._moved:
                self._moved[run_id] = now
            return FinishResult(
                complete,
                tuple(newly),
                dict(run.counts),
                tuple(ready),
                recorded=first,
                cancelled=run.cancelled,
                skip_reasons=reasons,
                mapped=mapped,
            )

    def cancel(self, run_id: str, force: bool = False) -> CancelResult:
        """Flag the run cancelled; end every open task nobody holds a live lease on."""
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return CancelResult("gone")
            if "status" in run.meta or run.complete:
                return CancelResult("finished", status=str(run.meta.get("status", "finishing")))
            run.cancelled = True
            run.meta["cancelled"] = True
            newly, running = [], []
            for task_id, state in list(run.states.items()):
                if state in TERMINAL:
                    continue
                lease = run.leases.get(task_id)
                live = state == "running" and lease and lease.token and lease.expires > now
                if live and not force and lease is not None:
                    running.append((task_id, lease.token))
                    continue
                self._cancel_task(run_id, run, task_id)
                newly.append(task_id)
            complete = run.complete_if_done()
            return CancelResult(
                "cancelled", tuple(newly), tuple(running), complete, dict(run.counts)
            )

    def _cancel_task(self, run_id: str, run: MemoryRun, task_id: str) -> None:
        """End an open task of a cancelled run and drop it from the indexes (lock held)."""
        run.cancel_task(task_id)
        for index in (self._leases, self._outbox, self._resends):
            index.pop((run_id, task_id), None)

    def unsent(self, run_id: str, task_ids: Sequence[str]) -> list[str]:
        """Tasks of ``task_ids`` that are pending and in the outbox."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return []
            return [
                t
                for t in task_ids
                if (run_id, t) in self._outbox and run.states.get(t) == "pending"
            ]

    def mark_done(
        self,
        run_id: str,
        status: str,
        fields: Mapping[str, Any],
        event: Mapping[str, Any] | None = None,
        notices: NoticeBatch | None = None,
    ) -> None:
        """Set the final status, drop the run from the index and wake waiters (and drop its
        deadline, write its ``notices``)."""
        with self._lock:
            run = self._runs[run_id]
            run.meta.update(fields)
            run.meta["status"] = status
            self._moved.pop(run_id, None)
            self._index.pop(run_id, None)
            self._on_done(run_id, notices)
        run.done.set()

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Wait on the run's event."""
        run = self._runs.get(run_id)
        return run.done.wait(timeout) if run else False
