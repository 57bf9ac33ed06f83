"""Pools in process memory: the embedded twin of :mod:`dagflow.stores.redis_pools`.

It shares the :class:`~dagflow.stores.memory.MemoryRunStore`'s lock, so each operation sees
the step's state and lease and changes the pool in one atomic step, as the Lua scripts do.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from dataclasses import dataclass, field

from dagflow.stores.base import TERMINAL
from dagflow.stores.memory import MemoryRunStore
from dagflow.stores.pools import PoolGrant, PoolSweep, PoolUse, Step

#: Parked steps one wake looks at and drops at most (as the Lua script's budget).
WAKE_BUDGET = 1000


@dataclass
class _Pool:
    size: int = 0
    holders: dict[Step, float] = field(default_factory=dict)
    woken: set[Step] = field(default_factory=set)
    parked: dict[Step, str] = field(default_factory=dict)
    queues: dict[str, deque[Step]] = field(default_factory=dict)
    tenants: deque[str] = field(default_factory=deque)


class MemoryPools:
    """A :class:`~dagflow.stores.pools.PoolStore` beside a :class:`MemoryRunStore`.

    Args:
        store: The run store whose steps take the slots (its lock and clock are used).
    """

    def __init__(self, store: MemoryRunStore) -> None:
        self.store = store
        self._pools: dict[str, _Pool] = {}

    def _state(self, step: Step) -> tuple[str, bool]:
        """The step's state (``over``: ended, or run gone or done) and whether its run is
        cancelled (lock held)."""
        run = self.store._runs.get(step[0])
        state = run.states.get(step[1]) if run else None
        if run is None or state is None or state in TERMINAL or "status" in run.meta:
            return "over", False
        return state, run.cancelled

    def _lease_live(self, step: Step, now: float) -> bool:
        run = self.store._runs.get(step[0])
        lease = run.leases.get(step[1]) if run else None
        return lease is not None and bool(lease.token) and lease.expires > now

    def _wake(self, pool: _Pool, now: float) -> list[Step]:
        """Give free slots to parked steps, tenants in turn (lock held)."""
        out: list[Step] = []
        budget = WAKE_BUDGET
        while len(pool.holders) < pool.size and budget > 0 and pool.tenants:
            moved = False
            for tenant in list(pool.tenants):
                if len(pool.holders) >= pool.size:
                    break
                queue = pool.queues.get(tenant, deque())
                got = None
                while budget > 0 and queue:
                    step = queue.popleft()
                    budget -= 1
                    pool.parked.pop(step, None)
                    state, cancelled = self._state(step)
                    if state != "over" and not cancelled:
                        got = step
                        break
                pool.tenants.remove(tenant)
                if queue:
                    pool.tenants.append(tenant)
                else:
                    pool.queues.pop(tenant, None)
                if got is not None:
                    pool.holders[got] = now
                    pool.woken.add(got)
                    out.append(got)
                    moved = True
            if not moved:
                break
        return out

    def acquire(self, pool: str, size: int, run_id: str, task_id: str, tenant: str) -> PoolGrant:
        """Take a slot, or park the step (see the contract)."""
        step = (run_id, task_id)
        with self.store._lock:
            now = self.store._clock()
            p = self._pools.setdefault(pool, _Pool())
            p.size = size
            state, cancelled = self._state(step)
            if state == "over" or cancelled:
                return PoolGrant("pass")
            if step in p.holders:
                p.woken.discard(step)
                p.holders[step] = now
                return PoolGrant("granted")
            if step in p.parked:
                return PoolGrant("parked")
            woken = self._wake(p, now) if len(p.holders) < size and p.parked else []
            if len(p.holders) < size and not p.parked:
                p.holders[step] = now
                return PoolGrant("granted", tuple(woken))
            p.parked[step] = tenant
            p.queues.setdefault(tenant, deque()).append(step)
            if tenant not in p.tenants:
                p.tenants.append(tenant)
            return PoolGrant("parked", tuple(woken))

    def release(self, pool: str, run_id: str, task_id: str) -> tuple[Step, ...]:
        """Free the step's slot unless another delivery runs it; return the steps woken."""
        step = (run_id, task_id)
        with self.store._lock:
            p = self._pools.get(pool)
            if p is None or self._state(step)[0] == "running":
                return ()
            p.holders.pop(step, None)
            p.woken.discard(step)
            return tuple(self._wake(p, self.store._clock()))

    def sweep(self, stale_s: float) -> PoolSweep:
        """Free dead holders' slots, wake parked steps, re-send woken ones that are late."""
        freed, woken, resent = 0, [], []
        with self.store._lock:
            now = self.store._clock()
            for p in self._pools.values():
                for step, since in list(p.holders.items()):
                    state, cancelled = self._state(step)
                    free = False
                    if state == "over":
                        free = True
                    elif state == "running":
                        free = not self._lease_live(step, now)
                    elif cancelled:
                        free = True
                    elif since <= now - stale_s:
                        if step in p.woken:
                            p.holders[step] = now
                            resent.append(step)
                        else:
                            free = True
                    if free:
                        del p.holders[step]
                        p.woken.discard(step)
                        freed += 1
                woken += self._wake(p, now)
        return PoolSweep(freed, tuple(woken), tuple(resent))

    def usage(self) -> dict[str, PoolUse]:
        """Each pool's size, slots in use and parked steps."""
        with self.store._lock:
            return {
                name: PoolUse(p.size, len(p.holders), len(p.parked))
                for name, p in sorted(self._pools.items())
            }

    def parked(self, pool: str, run_id: str, task_ids: list[str]) -> list[str]:
        """Those of ``task_ids`` parked for a slot of ``pool``."""
        with self.store._lock:
            p = self._pools.get(pool)
            return [t for t in task_ids if p is not None and (run_id, t) in p.parked]


_of_store: weakref.WeakKeyDictionary[MemoryRunStore, MemoryPools] = weakref.WeakKeyDictionary()
_of_store_lock = threading.Lock()


def memory_pools(store: MemoryRunStore) -> MemoryPools:
    """The one :class:`MemoryPools` of ``store`` (made on first use): its pools live as long
    as the store, and every part of the process that has the store sees the same ones."""
    with _of_store_lock:
        found = _of_store.get(store)
        if found is None:
            found = _of_store[store] = MemoryPools(store)
        return found
