"""Which runs have objects in the output store, and when they may be deleted.

The output store is not Redis: nothing in it expires by itself. So each run that writes an
object is tracked here with the time its state expires (``DAGFLOW_RUN_TTL_S`` from the
write, which is never before the run's own keys expire, since they were set when the run
started). The sweeper's output hook (:func:`dagflow.execution.outputs.sweep_outputs`) takes
the runs that are due, deletes their folder and drops them from the index, so the store
does not grow forever. On Redis, a due run whose ``meta`` key still exists is re-armed to
that key's own expiry instead (a TTL changed between the run's start and the write).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, cast

import redis

from dagflow.keys import OUTPUTS, run_key
from dagflow.redis_url import DEFAULT_MASTER_NAME, redis_client


class OutputIndex(Protocol):
    """Runs with objects in the output store, by deletion time."""

    def track(self, run_id: str, ttl_s: float) -> None:
        """Keep run ``run_id``'s objects at least ``ttl_s`` seconds from now."""

    def due(self, limit: int) -> list[str]:
        """Up to ``limit`` runs whose objects may be deleted now (their state is gone)."""

    def forget(self, run_id: str) -> None:
        """Drop a run whose objects were deleted."""

    def runs(self) -> list[str]:
        """Every tracked run (the embedded runner deletes them when it closes)."""


class MemoryOutputIndex:
    """The index of one process (the embedded mode, whose runs die with it).

    Args:
        clock: Seconds (wall clock by default).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._due: dict[str, float] = {}

    def track(self, run_id: str, ttl_s: float) -> None:
        """Keep the later of the current and the new deletion time."""
        with self._lock:
            at = self._clock() + ttl_s
            self._due[run_id] = max(at, self._due.get(run_id, at))

    def due(self, limit: int) -> list[str]:
        """Runs whose time has come, oldest first."""
        now = self._clock()
        with self._lock:
            ready = sorted((at, r) for r, at in self._due.items() if at <= now)
        return [r for _, r in ready[:limit]]

    def forget(self, run_id: str) -> None:
        """Drop ``run_id``."""
        with self._lock:
            self._due.pop(run_id, None)

    def runs(self) -> list[str]:
        """Every tracked run."""
        with self._lock:
            return list(self._due)


class RedisOutputIndex:
    """The index in the sorted set :data:`~dagflow.keys.OUTPUTS` (server time, in ms).

    Args:
        url: The run store's Redis URL.
        master_name: The Sentinel primary's name, for ``sentinel://`` URLs.
    """

    def __init__(self, url: str, *, master_name: str = DEFAULT_MASTER_NAME) -> None:
        self.client: redis.Redis = redis_client(url, master_name=master_name, decode_responses=True)

    def _now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def track(self, run_id: str, ttl_s: float) -> None:
        """ZADD GT: a later write never shortens the run's objects' life."""
        self.client.zadd(OUTPUTS, {run_id: self._now_ms() + int(ttl_s * 1000)}, gt=True)

    def due(self, limit: int) -> list[str]:
        """Due runs whose ``meta`` key is gone; a due run whose state still exists is
        re-armed to that state's expiry."""
        now = self._now_ms()
        found = cast(list[str], self.client.zrangebyscore(OUTPUTS, "-inf", now, 0, limit))
        if not found:
            return []
        pipe = self.client.pipeline(transaction=False)
        for run_id in found:
            pipe.pttl(run_key(run_id, "meta"))
        ready: list[str] = []
        for run_id, pttl in zip(found, pipe.execute(), strict=True):
            if int(pttl) == -2:  # no such key: the run's state expired (or was deleted)
                ready.append(run_id)
            else:  # still there (no expiry: -1, kept one more TTL-free minute)
                later = now + (int(pttl) if int(pttl) > 0 else 60_000)
                self.client.zadd(OUTPUTS, {run_id: later}, gt=True)
        return ready

    def forget(self, run_id: str) -> None:
        """ZREM ``run_id``."""
        self.client.zrem(OUTPUTS, run_id)

    def runs(self) -> list[str]:
        """Every tracked run."""
        return cast(list[str], self.client.zrange(OUTPUTS, 0, -1))


__all__ = ["MemoryOutputIndex", "OutputIndex", "RedisOutputIndex"]
