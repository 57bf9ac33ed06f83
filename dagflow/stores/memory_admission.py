"""Admission in process memory: the embedded twin of :mod:`dagflow.stores.redis_admission`."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagflow.execution.admission import Slot
from dagflow.stores.memory_views import MemoryRun

#: Waiting runs a promotion looks at per tenant.
SCAN_DEPTH = 50


class MemoryAdmission:
    """The admission half of :class:`~dagflow.stores.memory.MemoryRunStore` (one lock)."""

    _runs: dict[str, MemoryRun]
    _lock: threading.Lock
    _clock: Callable[[], float]

    #: The store's own (declared here so this half type-checks; a stub method here would
    #: shadow a sibling half's real one in the store's MRO).
    _start: Callable[[str, MemoryRun, Sequence[str], float], None]

    def _init_admission(self) -> None:
        self._slots: dict[str, dict[str, float]] = {}
        self._waiting: dict[str, int] = {}
        self._pending: dict[str, list[Slot]] = {}
        self._queues: dict[str, deque[str]] = {}
        self._tenants: deque[str] = deque()

    def _is_waiting(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        return run is not None and bool(run.meta.get("pending")) and "status" not in run.meta

    def admit(self, run_id: str, tenant_id: str, slots: Sequence[Slot]) -> bool:
        """Take a slot of each scope now, or queue the run (False) behind its tenant's."""
        now = self._clock()
        with self._lock:
            held = [self._slots.setdefault(s.key, {}) for s in slots]
            if any(run_id in h for h in held):
                return True
            if all(
                len(h) < s.limit and not self._waiting.get(s.key)
                for s, h in zip(slots, held, strict=True)
            ):
                for h in held:
                    h[run_id] = now
                return True
            if run_id not in self._pending:
                self._pending[run_id] = list(slots)
                for slot in slots:
                    self._waiting[slot.key] = self._waiting.get(slot.key, 0) + 1
                self._queues.setdefault(tenant_id, deque()).append(run_id)
                if tenant_id not in self._tenants:
                    self._tenants.append(tenant_id)
            return False

    def promote(self, limit: int) -> list[str]:
        """Give free slots to waiting runs, tenants in turn; return the runs admitted."""
        now = self._clock()
        promoted: list[str] = []
        with self._lock:
            moved = True
            while moved and len(promoted) < limit:
                moved = False
                # A tenant that gets a slot goes to the back; the others keep their place.
                for tenant in list(self._tenants):
                    if len(promoted) >= limit:
                        break
                    queue = self._queues.get(tenant, deque())
                    served = self._serve(queue, now)
                    if served:
                        promoted.append(served)
                        moved = True
                    if not queue:
                        self._tenants.remove(tenant)
                        self._queues.pop(tenant, None)
                    elif served:
                        self._tenants.remove(tenant)
                        self._tenants.append(tenant)
        return promoted

    def _serve(self, queue: deque[str], now: float) -> str | None:
        """Admit the oldest run of ``queue`` whose scopes have room (dropping cancelled
        ones on the way); None if none can start."""
        for run_id in list(queue)[:SCAN_DEPTH]:
            slots = self._pending.get(run_id, [])
            alive = run_id in self._pending and self._is_waiting(run_id)
            go = alive and all(len(self._slots.setdefault(s.key, {})) < s.limit for s in slots)
            if go or not alive:
                queue.remove(run_id)
                self._pending.pop(run_id, None)
                for slot in slots:
                    self._waiting[slot.key] = self._waiting.get(slot.key, 1) - 1
                    if go:
                        self._slots[slot.key][run_id] = now
            if go:
                return run_id
        return None

    def release_slots(self, run_id: str, slots: Sequence[Slot]) -> None:
        """Give back the slots of an ended run."""
        with self._lock:
            for slot in slots:
                self._slots.get(slot.key, {}).pop(run_id, None)

    def audit_slots(self, stale_s: float) -> tuple[int, list[str]]:
        """Free slots of ended or vanished runs; return (freed, admitted runs never started)."""
        now = self._clock()
        released, stuck = 0, []
        with self._lock:
            for held in self._slots.values():
                for run_id, since in list(held.items()):
                    run = self._runs.get(run_id)
                    if run is None or "status" in run.meta:
                        del held[run_id]
                        released += 1
                    elif self._is_waiting(run_id) and since <= now - stale_s:
                        held[run_id] = now
                        stuck.append(run_id)
        return released, stuck

    def activate(
        self,
        run_id: str,
        index: str,
        started_at: float,
        roots: Sequence[str],
        grace_s: float,
        event: Mapping[str, Any] | None = None,
    ) -> bool:
        """Start an admitted run (False if it was not waiting: started or cancelled)."""
        with self._lock:
            if not self._is_waiting(run_id):
                return False
            run = self._runs[run_id]
            run.meta.pop("pending", None)
            run.meta["started_at"] = started_at
            self._start(run_id, run, roots, self._clock() + grace_s)
            return True

    def waiting_runs(self) -> dict[str, int]:
        """Waiting runs per tenant."""
        with self._lock:
            return {t: len(self._queues.get(t, ())) for t in self._tenants}
