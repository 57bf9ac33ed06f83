"""Pools on the step's side: take a slot before the claim, give it back after the end.

A task with ``pool: NAME`` runs only while its step holds one of the pool's slots
(``DAGFLOW_POOLS=NAME=SIZE``; the rules are in :mod:`dagflow.stores.pools`). The step calls:

* :func:`gate` before its claim: the step takes a slot and runs, or it is **parked** in the
  store and its message is dropped (acked): a waiting step holds no worker process;
* :func:`release` after its end, retry or failure is committed: the slot goes to the next
  parked step (tenants in turn), whose message is sent again here, at the head of its
  queue (it already waited its turn);
* :func:`sweep_pools` at every sweep (a runtime sweep hook): slots of holders that died or
  ended without giving them back are freed, and woken steps whose message was lost are
  sent again.

A task without a pool costs one dictionary lookup and no store call. A mapped instance
(``process[3]``) takes a slot of its own and finds its pool under its task's id
(:func:`base_task_id`).

Which size is enforced: the worker's ``DAGFLOW_POOLS``. Each acquire passes the size the
worker running the step has, and records it in Redis, where releases and the sweeper read
it; the client's ``DAGFLOW_POOLS`` only validates DAG files. Set the same value on every
worker. A worker that has no size for a step's pool does not run the step: it logs an
error and drops the message, and the step stays in the outbox, re-sent by the sweeper until
a worker with the size takes it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagflow.dag.mapping import base_task_id
from dagflow.dag.plan import RunPlan
from dagflow.execution.publish import send_steps
from dagflow.execution.runtime import Runtime
from dagflow.execution.store_retry import with_store
from dagflow.stores.base import TaskInfo
from dagflow.stores.pools import PoolStore, PoolSweep, Step
from dagflow.stores.transport import BACKEND_ERRORS

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)


def pool_of(plan: RunPlan, task_id: str) -> str | None:
    """The pool of ``task_id``'s task (an instance's task's), or None."""
    task = plan.tasks.get(base_task_id(task_id))
    return task.pool if task is not None else None


def gate(app: Celery, rt: Runtime, plan: RunPlan, run_id: str, task_id: str) -> bool:
    """Take a slot of the step's pool; True: run the step (it holds a slot, or needs none).

    False: drop the message. The step is parked (a release sends it again), or this worker
    has no size for its pool (logged; the outbox re-sends it).
    """
    pool = pool_of(plan, task_id)
    if pool is None or rt.pools is None:
        return True
    size = rt.settings.pool_size(pool)
    if size is None:
        logger.error(
            "dagflow: step %s/%s needs pool %r, which this worker's DAGFLOW_POOLS does not "
            "size; not running it (a worker with DAGFLOW_POOLS=%s=N will)",
            run_id, task_id, pool, pool,
        )  # fmt: skip
        return False
    pools = rt.pools
    grant = with_store(
        rt, "pool", lambda: pools.acquire(pool, size, run_id, task_id, plan.tenant_id)
    )
    send_woken(app, rt, grant.woken)
    if grant.state == "parked":
        logger.info("dagflow: step %s/%s waits for a slot of pool %r", run_id, task_id, pool)
        return False
    return True


def release(app: Celery | None, rt: Runtime, plan: RunPlan, run_id: str, task_id: str) -> None:
    """Give back the step's slot (after its end or retry was committed) and send the step
    it goes to. Never raises for the store: the sweeper frees a slot left behind."""
    pool = pool_of(plan, task_id)
    if pool is None or rt.pools is None:
        return
    try:
        woken = rt.pools.release(pool, run_id, task_id)
    except BACKEND_ERRORS as exc:
        logger.warning(
            "dagflow: slot of pool %r held by %s/%s is left to the sweeper: %s",
            pool, run_id, task_id, exc,
        )  # fmt: skip
        return
    if app is not None:
        send_woken(app, rt, woken)


def send_woken(app: Celery, rt: Runtime, steps: Sequence[Step]) -> None:
    """Send steps given a slot, each to the head of its task's queue (they waited their
    turn in the pool already). A step whose message is lost is re-sent by the sweeper."""
    by_run: dict[str, list[str]] = defaultdict(list)
    for run_id, task_id in steps:
        by_run[run_id].append(task_id)
    for run_id, task_ids in by_run.items():
        plan = rt.plan(run_id)
        if plan is None:
            continue  # the run is gone: the sweeper frees the slot
        queues = {t: q for t in task_ids if (q := plan.queues.get(base_task_id(t)))}
        send_steps(app, run_id, task_ids, plan.dag_name, queues=queues, front=True)


def sweep_pools(app: Celery, rt: Runtime) -> PoolSweep | None:
    """The sweep hook: free dead holders' slots, send the steps woken for them and the
    woken steps whose message did not arrive within a lease period."""
    if rt.pools is None:
        return None
    found = rt.pools.sweep(rt.settings.lease_s)
    if found.freed:
        logger.warning("dagflow: freed %d pool slots whose holders ended or died", found.freed)
    if found.resent:
        logger.warning("dagflow: %d steps given a pool slot never arrived; sending them again",
                       len(found.resent))  # fmt: skip
    send_woken(app, rt, [*found.woken, *found.resent])
    return found


def waiting_lines(
    pools: PoolStore, plan: RunPlan, run_id: str, tasks: Sequence[TaskInfo]
) -> dict[str, str]:
    """For ``dagflow status``: each of the run's steps parked for a pool slot, and a line
    such as ``waiting for pool 'warehouse' (4/4 in use, 3 waiting)``."""
    by_pool: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        pool = pool_of(plan, task.task_id)
        if pool is not None and task.state in ("pending", "retry"):
            by_pool[pool].append(task.task_id)
    if not by_pool:
        return {}
    usage = pools.usage()
    lines: dict[str, str] = {}
    for pool, task_ids in by_pool.items():
        use = usage.get(pool)
        for task_id in pools.parked(pool, run_id, task_ids):
            lines[task_id] = use.describe(pool) if use else f"waiting for pool {pool!r}"
    return lines
