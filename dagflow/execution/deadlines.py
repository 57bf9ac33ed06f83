"""Run deadlines: when a run is late, and the sweep that says so exactly once.

A DAG's ``deadline_s`` counts from the run's start (its submission, for a run that waits for
a slot); a schedule entry's counts from the scheduled minute. A run with both is late at
the earlier of the two times. The time (``deadline_at``) and the seconds that made it
(``deadline_s``) go into the run's meta, and the run store indexes it
(:mod:`dagflow.stores.notifications`).

At every sweep, :func:`sweep_deadlines` looks at the runs whose deadline has passed and
claims each in one atomic store step: only one claim per run wins, however many sweepers
run, and that step writes the run's ``dag_deadline_missed`` event (a store that writes
events) and its ``on_deadline_missed`` and webhook notices. The run keeps running.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dagflow.dag.alerts import Alerts
from dagflow.execution.notify import deliver_all, end_notices
from dagflow.stores.notifications import Notice, NoticeBatch

if TYPE_CHECKING:
    from dagflow.execution.runtime import Runtime

logger = logging.getLogger(__name__)

#: Late runs one sweep handles at most (the next sweep takes the rest).
DEADLINE_BATCH = 100
#: The format of a scheduled run's ``scheduled_minute`` label.
MINUTE_FORMAT = "%Y-%m-%dT%H:%M:00Z"


def deadline_fields(
    started_at: float,
    dag: Alerts,
    schedule: Alerts | None = None,
    scheduled_minute: str | None = None,
) -> dict[str, float]:
    """The meta fields of a run's deadline: ``deadline_at`` (epoch seconds) and the
    ``deadline_s`` it came from; empty without a deadline (pure).

    Args:
        started_at: When the run starts (epoch seconds).
        dag: The DAG's alerts (its ``deadline_s`` counts from ``started_at``).
        schedule: The schedule entry's alerts (its ``deadline_s`` counts from the minute).
        scheduled_minute: The scheduled run's minute, ``2026-11-26T10:05:00Z``.
    """
    found: list[tuple[float, float]] = []
    if dag.deadline_s is not None:
        found.append((started_at + dag.deadline_s, dag.deadline_s))
    if schedule is not None and schedule.deadline_s is not None:
        base = started_at
        if scheduled_minute:
            try:
                minute = datetime.strptime(scheduled_minute, MINUTE_FORMAT).replace(tzinfo=UTC)
                base = minute.timestamp()
            except ValueError:
                pass
        found.append((base + schedule.deadline_s, schedule.deadline_s))
    if not found:
        return {}
    at, seconds = min(found)
    return {"deadline_at": at, "deadline_s": seconds}


def sweep_deadlines(app: Any, rt: Runtime) -> int:
    """A sweep hook: claim the missed deadlines, write their events, tell their hooks and
    webhooks. Returns how many runs this call found late (0 when another sweeper won)."""
    missed = 0
    for run_id in rt.store.due_deadlines(DEADLINE_BATCH):
        plan = rt.plan(run_id)
        if plan is None:  # its state is gone: the claim only drops the entry
            rt.store.miss_deadline(run_id, NoticeBatch(()))
            continue
        snap = rt.store.snapshot(run_id)
        meta = snap.meta if snap else {}
        started = meta.get("started_at")
        elapsed = round(time.time() - float(started), 3) if started is not None else None
        deadline_s = meta.get("deadline_s", plan.alerts.deadline_s)
        event = rt.event(
            "dag_deadline_missed", run_id, plan, deadline_s=deadline_s, duration_s=elapsed
        )
        ids = end_notices(plan, "deadline_missed")
        if not rt.store.miss_deadline(
            run_id, NoticeBatch(ids, rt.settings.lease_s), event.to_record()
        ):
            continue
        missed += 1
        rt.emit_with_commit(event)
        logger.warning(
            "dagflow: run %s of %s missed its deadline (%s s); it keeps running",
            run_id, plan.dag_name, deadline_s,
        )  # fmt: skip
        deliver_all(rt, [Notice(run_id, i) for i in ids], plan)
    return missed
