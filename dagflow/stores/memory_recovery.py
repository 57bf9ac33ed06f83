"""The sweeper's side of the in-memory run store: expired leases, due outbox entries, idle
runs, and the small writes the sweeper makes (touch, forget, requeue, a lock).

:class:`~dagflow.stores.memory.MemoryRunStore` inherits them; the Redis twin is
:class:`~dagflow.stores.redis_recovery.RedisRecovery`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from dagflow.stores.base import TERMINAL, SweepResult
from dagflow.stores.memory_views import MemoryRun


class MemoryRecovery:
    """Sweep and the sweeper's writes, under the store's lock."""

    _runs: dict[str, MemoryRun]
    _lock: threading.Lock
    _clock: Callable[[], float]
    _leases: dict[tuple[str, str], float]
    _outbox: dict[tuple[str, str], float]
    _resends: dict[tuple[str, str], int]
    _moved: dict[str, float]
    _index: dict[str, tuple[str, str]]
    _locks: dict[str, float]

    def sweep(self, limit: int, grace_s: float, idle_s: float) -> SweepResult:
        """Expired leases, due outbox entries (re-armed with backoff) and idle runs."""
        now = self._clock()
        expired: list[tuple[str, str, str, int]] = []
        due: list[tuple[str, str]] = []
        cancelled: set[str] = set()
        with self._lock:
            for key, until in sorted(self._leases.items(), key=lambda kv: kv[1])[:limit]:
                if until > now:
                    break
                del self._leases[key]
                run = self._runs.get(key[0])
                lease = run.leases.get(key[1]) if run else None
                if (
                    run
                    and lease
                    and lease.token
                    and 0 < lease.expires <= now
                    and run.states.get(key[1]) == "running"
                ):
                    if run.cancelled:
                        cancelled.add(key[0])
                        continue
                    self._outbox[key] = now
                    expired.append((key[0], key[1], lease.worker, lease.fence))
            for key, when in sorted(self._outbox.items(), key=lambda kv: kv[1])[:limit]:
                if when > now:
                    break
                run = self._runs.get(key[0])
                state = run.states.get(key[1]) if run else None
                lease = run.leases.get(key[1]) if run else None
                live = state == "running" and lease is not None and lease.expires > now
                stop = run is not None and run.cancelled
                if stop:
                    cancelled.add(key[0])
                if state is None or state in TERMINAL or live or stop:
                    self._outbox.pop(key, None)
                    self._resends.pop(key, None)
                    continue
                n = self._resends[key] = self._resends.get(key, 0) + 1
                self._outbox[key] = now + grace_s * 2 ** min(n - 1, 5)
                due.append(key)
            idle = [r for r, t in self._moved.items() if t <= now - idle_s][:limit]
        return SweepResult(
            expired=tuple(expired),
            due=tuple(due),
            idle_runs=tuple(idle),
            cancelled_runs=tuple(sorted(cancelled)),
        )

    def touch(self, run_id: str) -> None:
        """Mark the run as moved now."""
        with self._lock:
            if run_id in self._moved:
                self._moved[run_id] = self._clock()

    def forget(self, run_id: str) -> None:
        """Drop a run from the sweeper's index."""
        with self._lock:
            self._moved.pop(run_id, None)
            self._index.pop(run_id, None)

    def requeue(self, run_id: str, task_ids: Sequence[str]) -> None:
        """Put ``task_ids`` in the outbox, due now."""
        now = self._clock()
        with self._lock:
            for task_id in task_ids:
                self._outbox[(run_id, task_id)] = now
            if run_id in self._moved:
                self._moved[run_id] = now

    def try_lock(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take ``name`` unless it is held and not expired."""
        now = self._clock()
        with self._lock:
            if self._locks.get(name, 0.0) > now:
                return False
            self._locks[name] = now + ttl_s
            return True
