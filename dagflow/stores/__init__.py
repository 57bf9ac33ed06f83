"""Where a run's plan, task states and outputs live while it runs.

Two implementations of one :class:`~dagflow.stores.base.RunStore` contract:
:class:`~dagflow.stores.redis.RedisRunStore` for workers sharing a Redis server, and
:class:`~dagflow.stores.memory.MemoryRunStore` for the embedded, in-process mode. Both pass
the same contract tests (``tests/integration/test_run_store_contract.py``).
"""

from __future__ import annotations

from dagflow.stores.base import TERMINAL, Claim, FinishResult, RunSnapshot, RunStore
from dagflow.stores.memory import MemoryRunStore
from dagflow.stores.redis import RedisRunStore

__all__ = [
    "TERMINAL",
    "Claim",
    "FinishResult",
    "MemoryRunStore",
    "RedisRunStore",
    "RunSnapshot",
    "RunStore",
]
