"""The pool store contract: slots of named pools, held by steps, shared by every worker.

A task with ``pool: warehouse`` takes one slot of the pool ``warehouse`` for each attempt
(each mapped instance its own: a holder is the step's full task id). At most the pool's
size of its steps hold a slot at once, across every worker. A step that finds the pool
full is **parked**: it waits in the store, not in a worker (its Celery message is acked and
dropped), in its tenant's line. When a slot frees, the store gives it to the next parked
step, **tenants in turn** (round robin; each tenant's steps oldest first): that step is
**woken** (it holds the slot already) and the caller sends its message again.

Every operation is atomic in the store (one Lua script on Redis, one lock in memory) and
reads the run store's own state of the step, so:

* :meth:`PoolStore.acquire` takes no slot for a step that has ended, whose run is gone,
  done or cancelled (``pass``: the claim handles it); a step that holds its slot already
  (a redelivery, a woken step arriving) keeps it; a step already parked stays parked.
* :meth:`PoolStore.release` frees the slot only when the step is not running under
  another delivery (its end, or its retry, was committed), so it is safe to call after a
  lost lease, and twice.
* :meth:`PoolStore.sweep` frees the slots whose holder can no longer use them (its task
  ended, its run is gone, done or cancelled, its lease expired, or it took the slot more
  than a lease period ago and never claimed the step) and re-sends woken steps whose
  message did not arrive within a lease period.

A parked step stays in the run store's outbox: should the pool store lose it, the
sweeper's outbox re-send parks it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

#: A step: ``(run_id, task_id)``.
Step = tuple[str, str]


@dataclass(frozen=True)
class PoolGrant:
    """What :meth:`PoolStore.acquire` said.

    Attributes:
        state: ``granted`` (run it: the step holds a slot), ``parked`` (drop the message:
            the step waits in the store) or ``pass`` (no slot is needed: the step ended, or
            its run is gone, done or cancelled; the claim says which).
        woken: Steps this call gave a slot to: send them.
    """

    state: Literal["granted", "parked", "pass"]
    woken: tuple[Step, ...] = ()


@dataclass(frozen=True)
class PoolSweep:
    """What one :meth:`PoolStore.sweep` did.

    Attributes:
        freed: Slots freed because their holder could no longer use them.
        woken: Steps given a freed slot: send them.
        resent: Woken steps whose message did not arrive: send them again.
    """

    freed: int = 0
    woken: tuple[Step, ...] = ()
    resent: tuple[Step, ...] = ()


@dataclass(frozen=True)
class PoolUse:
    """One pool's use, as the dashboard and ``dagflow status`` show it.

    Attributes:
        size: Steps that may hold a slot at once (as last recorded by a worker).
        in_use: Steps holding a slot (running, or woken and on their way).
        waiting: Steps parked for a slot.
    """

    size: int
    in_use: int
    waiting: int

    def describe(self, pool: str) -> str:
        """``waiting for pool 'warehouse' (4/4 in use, 3 waiting)``."""
        use = f"{self.in_use}/{self.size} in use, {self.waiting} waiting"
        return f"waiting for pool {pool!r} ({use})"


class PoolStore(Protocol):
    """Slots of named pools. See the module docstring for the guarantees."""

    def acquire(self, pool: str, size: int, run_id: str, task_id: str, tenant: str) -> PoolGrant:
        """Give the step a slot of ``pool`` if one is free and no step waits for it, else
        park it in ``tenant``'s line; record ``size`` as the pool's size."""

    def release(self, pool: str, run_id: str, task_id: str) -> tuple[Step, ...]:
        """Free the step's slot unless another delivery runs the step; give freed slots to
        parked steps. Returns the steps woken (send them)."""

    def sweep(self, stale_s: float) -> PoolSweep:
        """Free the slots of holders that can no longer use them, give free slots to
        parked steps, and return woken steps whose message is older than ``stale_s``."""

    def usage(self) -> dict[str, PoolUse]:
        """Every pool that has a recorded size, with its use."""

    def parked(self, pool: str, run_id: str, task_ids: list[str]) -> list[str]:
        """Those of ``task_ids`` parked for a slot of ``pool``."""
