"""Keeping a running step's lease alive: one heartbeat thread per worker process.

Every step that runs holds a lease in the run store (:mod:`dagflow.stores.base`). While its
workflow runs, this process renews all the leases it holds in one store call every
``lease_s / 3`` seconds, so a live step keeps its lease through two missed beats, and a
step whose process died loses it ``lease_s`` after its last beat. One thread serves every
step of the process (a thread per step would cost a thread start on every hop).

A lease that could not be renewed because another delivery took over is marked ``lost``:
the workflow cannot be interrupted safely from here, so it runs on, and its ``finish`` is
refused by the store (fencing).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagflow.stores import RunStore

logger = logging.getLogger(__name__)


@dataclass
class HeldLease:
    """A lease this process holds while a step runs.

    Attributes:
        lost: Set when a renewal found that another delivery holds the step now.
    """

    run_id: str
    task_id: str
    fence: int
    lost: bool = False


@dataclass
class Heartbeat:
    """Renews the leases of the steps running in this process.

    Args:
        store: The run store holding the leases.
        lease_s: Seconds a lease lasts; renewed every third of it.
    """

    store: RunStore
    lease_s: float
    _held: dict[tuple[str, str], HeldLease] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _pid: int = 0

    @contextmanager
    def hold(self, run_id: str, task_id: str, fence: int) -> Iterator[HeldLease]:
        """Keep ``(run_id, task_id)``'s lease alive for the duration of the block."""
        held = HeldLease(run_id, task_id, fence)
        with self._lock:
            self._ensure_thread()
            self._held[(run_id, task_id)] = held
        try:
            yield held
        finally:
            with self._lock:
                if self._held.get((run_id, task_id)) is held:
                    del self._held[(run_id, task_id)]

    def _ensure_thread(self) -> None:
        # A forked pool process inherits the parent's object but not its thread.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._held = {}
            threading.Thread(target=self._run, name="dagflow-heartbeat", daemon=True).start()

    def beat(self) -> None:
        """Renew every held lease now (one store call)."""
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        renewed = self.store.renew([(h.run_id, h.task_id, h.fence) for h in held], self.lease_s)
        for lease, ok in zip(held, renewed, strict=True):
            if not ok and not lease.lost:
                lease.lost = True
                logger.warning(
                    "dagflow: step %s/%s lost its lease (fence %d): another delivery runs it; "
                    "this attempt's result will be discarded",
                    lease.run_id,
                    lease.task_id,
                    lease.fence,
                )

    def _run(self) -> None:
        pid = os.getpid()
        while pid == self._pid:
            self._wake.wait(self.lease_s / 3)
            try:
                self.beat()
            except Exception as exc:  # the store is down: the next beat tries again
                logger.warning("dagflow: lease heartbeat failed: %s", exc)
