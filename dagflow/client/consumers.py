"""Which queues the live workers consume: what ``dagflow run`` checks before it waits.

A step sent to a queue no worker consumes waits there, silently, until one does: the run
looks stuck. Celery's remote control can tell which queues each live worker consumes
(``inspect().active_queues()``); a worker that does not answer within the timeout (busy,
partitioned, or started with remote control off) counts as absent, so the answer is a
warning, never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from dagflow.execution.publish import default_queue

if TYPE_CHECKING:
    from celery import Celery

    from dagflow.dag.spec import DagSpec

logger = logging.getLogger(__name__)

#: Seconds to wait for workers to say which queues they consume (it is the command's delay).
INSPECT_TIMEOUT_S = 1.0


def needed_queues(app: Celery, spec: DagSpec) -> set[str]:
    """Every queue the steps of ``spec`` are sent to (the default one for a task without)."""
    queues = spec.queues
    needed = set(queues.values())
    if len(queues) < len(spec.tasks):
        needed.add(default_queue(app))
    return needed


def live_queues(app: Celery, timeout: float = INSPECT_TIMEOUT_S) -> set[str] | None:
    """The queues the workers that answer within ``timeout`` consume; None if the broker
    cannot be asked."""
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # the broker is down or refuses broadcasts: say nothing
        logger.debug("dagflow: cannot ask workers for their queues: %s", exc)
        return None
    return {str(q["name"]) for queues in replies.values() for q in queues or () if "name" in q}


def unconsumed(
    app: Celery, queues: Collection[str], timeout: float = INSPECT_TIMEOUT_S
) -> list[str]:
    """The ``queues`` no live worker consumes, sorted (empty when the broker cannot say)."""
    consumed = live_queues(app, timeout)
    if consumed is None:
        return []
    return sorted(set(queues) - consumed)
