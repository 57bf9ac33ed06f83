"""Run store in process memory, for the embedded mode (one process, worker threads).

The same contract as :class:`~dagflow.stores.redis.RedisRunStore`, kept atomic by one lock
instead of Lua scripts. Nothing survives the process: this twin is for ``dagflow run``
with no broker and for tests, not for production.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from dagflow.stores.base import TERMINAL, Claim, ClaimResult, FinishResult, RunSnapshot


@dataclass
class _Run:
    plan: str
    meta: dict[str, Any]
    states: dict[str, str]
    claims: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    arrivals: dict[str, set[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "skipped": 0})
    complete: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class MemoryRunStore:
    """A :class:`~dagflow.stores.base.RunStore` in a dict, guarded by one lock."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def create_run(
        self, run_id: str, plan: str, meta: Mapping[str, Any], task_ids: Sequence[str]
    ) -> None:
        """Store a new run."""
        with self._lock:
            self._runs[run_id] = _Run(plan, dict(meta), dict.fromkeys(task_ids, "pending"))

    def load_plan(self, run_id: str) -> str | None:
        """Return the plan JSON, or None."""
        run = self._runs.get(run_id)
        return run.plan if run else None

    def claim(self, run_id: str, task_id: str, token: str, parents: Sequence[str] = ()) -> Claim:
        """Claim ``task_id`` for ``token`` and read its parents' outputs."""
        with self._lock:
            run = self._runs[run_id]
            state = run.states.get(task_id)
            if state == "ok" or state == "failed" or state == "skipped":
                return Claim(cast(ClaimResult, state))
            holder = run.claims.get(task_id)
            if holder is not None and holder != token:
                return Claim("duplicate")
            run.claims[task_id] = token
            run.states[task_id] = "running"
            return Claim("run", {p: run.outputs[p] for p in parents if p in run.outputs})

    def set_state(self, run_id: str, task_id: str, state: str) -> None:
        """Set a display state."""
        with self._lock:
            self._runs[run_id].states[task_id] = state

    def outputs(self, run_id: str, task_ids: Sequence[str]) -> dict[str, str]:
        """Return stored outputs."""
        with self._lock:
            out = self._runs[run_id].outputs
            return {t: out[t] for t in task_ids if t in out}

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
        """Record the final state once, skip descendants, record join arrivals."""
        with self._lock:
            run = self._runs[run_id]
            if run.states.get(task_id) not in TERMINAL:
                run.states[task_id] = state
                if output is not None:
                    run.outputs[task_id] = output
                run.counts[state] += 1
            newly = []
            for node in skip:
                if run.states.get(node) not in TERMINAL:
                    run.states[node] = "skipped"
                    run.counts["skipped"] += 1
                    newly.append(node)
            complete = False
            if sum(run.counts.values()) >= total and not run.complete:
                run.complete = complete = True
            ready = []
            if state == "ok":
                for child, need in joins:
                    arrived = run.arrivals.setdefault(child, set())
                    added = task_id not in arrived
                    arrived.add(task_id)
                    if len(arrived) >= need and (added or force):
                        ready.append(child)
            return FinishResult(complete, tuple(newly), dict(run.counts), tuple(ready))

    def mark_done(self, run_id: str, status: str, fields: Mapping[str, Any]) -> None:
        """Set the final status and wake waiters."""
        with self._lock:
            run = self._runs[run_id]
            run.meta.update(fields)
            run.meta["status"] = status
        run.done.set()

    def snapshot(self, run_id: str, with_states: bool = False) -> RunSnapshot | None:
        """Return a copy of the run's progress."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            counts = dict(run.counts, total=len(run.states))
            states = dict(run.states) if with_states else None
            status = str(run.meta.get("status", "running"))
            return RunSnapshot(status=status, counts=counts, states=states, meta=dict(run.meta))

    def wait_done(self, run_id: str, timeout: float) -> bool:
        """Wait on the run's event."""
        run = self._runs.get(run_id)
        return run.done.wait(timeout) if run else False
