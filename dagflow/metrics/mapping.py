"""Events to metric updates (pure): what one stream entry adds to the counters.

The exporter turns each entry of the event stream into a few :class:`Update` values and
the store applies them to one Redis hash in the same atomic step that acknowledges the
entry (:mod:`dagflow.stores.metrics`). Every update is an increment or a maximum, so the
order in which entries are applied does not matter, and the hash can be read at any time.

Which event feeds which metric (the README's table says the same):

=========================  ==========================================================
event (log)                updates
=========================  ==========================================================
dag_start                  dagflow_runs_started_total{dag,tenant}
dag_done                   dagflow_runs_finished_total{dag,tenant,status},
                           dagflow_run_duration_seconds{dag,status} (duration_s)
task_start                 dagflow_task_queue_wait_seconds{dag,queue} (queued_s; absent
                           from events of older workers: not observed)
task_ok / task_fail        dagflow_task_attempts_total{outcome=ok|failed},
                           dagflow_task_duration_seconds{dag,task} (duration_s)
task_retry                 dagflow_task_attempts_total{outcome=retry},
                           dagflow_task_duration_seconds{dag,task} (duration_s)
task_lease_lost            dagflow_task_attempts_total{outcome=lease_lost}
task_cancel                dagflow_task_attempts_total{outcome=cancelled}
task_skip                  dagflow_tasks_skipped_total{dag,task}
task_reused                nothing (the task did not run in this run)
dag_deadline_missed        dagflow_deadlines_missed_total{dag}
notification_sent/_failed  dagflow_notifications_total{kind,outcome=sent|failed}
hook_failed                dagflow_notifications_total{kind,outcome=failed}
sweep (state)              dagflow_sweeper_actions_total{action} (+ each count)
run_finished (state)       dagflow_schedule_last_success_timestamp_seconds{schedule}
                           (status success: the latest end time)
=========================  ==========================================================

A ``task_cancel`` counts as a cancelled attempt even when the task never started (its run
was cancelled before): the counter says how many task executions ended cancelled.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from dagflow.metrics import catalog as c

#: ``c``: add an integer; ``f``: add a float; ``m``: keep the larger value.
Op = Literal["c", "f", "m"]

#: task_* events and the outcome label of their attempt.
OUTCOMES = {
    "task_ok": "ok",
    "task_fail": "failed",
    "task_retry": "retry",
    "task_lease_lost": "lease_lost",
    "task_cancel": "cancelled",
}
NOTIFICATION_OUTCOMES = {
    "notification_sent": "sent",
    "notification_failed": "failed",
    "hook_failed": "failed",
}
#: The counts of a ``sweep`` state line, by the action label they are counted under.
SWEEP_ACTIONS = ("expired", "resent", "finalized", "requeued", "stalled", "slots_freed", "admitted")


@dataclass(frozen=True)
class Update:
    """One change to the metrics hash.

    Attributes:
        op: How ``amount`` is applied (see :data:`Op`).
        field: The hash field (:func:`field`).
        amount: What is added, or the candidate maximum.
    """

    op: Op
    field: str
    amount: float


@dataclass(frozen=True)
class Buckets:
    """Histogram bucket bounds per histogram, in seconds, ascending."""

    run: tuple[float, ...] = c.RUN_BUCKETS
    task: tuple[float, ...] = c.TASK_BUCKETS
    wait: tuple[float, ...] = c.WAIT_BUCKETS

    def of(self, metric: c.Metric) -> tuple[float, ...]:
        """The bounds of a histogram of the catalog."""
        if metric is c.RUN_DURATION:
            return self.run
        return self.wait if metric is c.QUEUE_WAIT else self.task


def field(name: str, *values: str) -> str:
    """The hash field of one series: ``["name", "value", ...]`` as compact JSON (label values
    are free text: JSON keeps any of them apart)."""
    return json.dumps([name, *values], separators=(",", ":"), ensure_ascii=False)


def parse_field(raw: str) -> tuple[str, tuple[str, ...]]:
    """Inverse of :func:`field`: ``(name, values)``."""
    name, *values = json.loads(raw)
    return str(name), tuple(str(v) for v in values)


def bound_text(bound: float) -> str:
    """A bucket bound as its ``le`` label (``+Inf`` past the last)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def count(metric: c.Metric, *values: str, by: int = 1) -> Update:
    """Add ``by`` to a counter series."""
    return Update("c", field(metric.name, *values), by)


def observe(metric: c.Metric, bounds: Sequence[float], value: float, *values: str) -> list[Update]:
    """Record one observation of a histogram series: its bucket (the smallest bound at or
    above it; the exporter makes the buckets cumulative when it is scraped), sum and count."""
    value = max(float(value), 0.0)
    i = bisect.bisect_left(bounds, value)
    bound = bounds[i] if i < len(bounds) else float("inf")
    return [
        Update("c", field(metric.name + "_bucket", bound_text(bound), *values), 1),
        Update("f", field(metric.name + "_sum", *values), value),
        Update("c", field(metric.name + "_count", *values), 1),
    ]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _epoch(timestamp: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def updates(log: str, record: Mapping[str, Any], buckets: Buckets | None = None) -> list[Update]:
    """What one stream entry adds to the metrics (an empty list for the others).

    Args:
        log: The entry's ``log`` field: ``events`` (run events) or ``state`` (scheduler and
            sweeper lines).
        record: The entry's JSON line.
        buckets: Histogram bounds (the defaults if None).
    """
    buckets = buckets or Buckets()
    name = str(record.get("event", ""))
    if log == "state":
        return _state_updates(name, record)
    dag, tenant = str(record.get("dag_name", "")), str(record.get("tenant_id", ""))
    task = task_label(record)
    duration = _number(record.get("duration_s"))
    if name == "dag_start":
        return [count(c.RUNS_STARTED, dag, tenant)]
    if name == "dag_done":
        status = str(record.get("status", ""))
        out = [count(c.RUNS_FINISHED, dag, tenant, status)]
        if duration is not None:
            out += observe(c.RUN_DURATION, buckets.run, duration, dag, status)
        return out
    if name == "task_start":
        waited, queue = _number(record.get("queued_s")), record.get("queue")
        if waited is None or not queue:
            return []
        return observe(c.QUEUE_WAIT, buckets.wait, waited, dag, str(queue))
    if name in OUTCOMES:
        out = [count(c.TASK_ATTEMPTS, dag, task, OUTCOMES[name])]
        if name in ("task_ok", "task_fail", "task_retry") and duration is not None:
            out += observe(c.TASK_DURATION, buckets.task, duration, dag, task)
        return out
    if name == "task_skip":
        return [count(c.TASKS_SKIPPED, dag, task)]
    if name == "dag_deadline_missed":
        return [count(c.DEADLINES_MISSED, dag)]
    if name in NOTIFICATION_OUTCOMES:
        kind = str(record.get("kind") or ("hook" if name == "hook_failed" else "webhook"))
        return [count(c.NOTIFICATIONS, kind, NOTIFICATION_OUTCOMES[name])]
    return []


def task_label(record: Mapping[str, Any]) -> str:
    """The ``task`` label of a task event (mapped instances under their task's name)."""
    return c.task_label(str(record.get("task_id") or ""))


def _state_updates(name: str, record: Mapping[str, Any]) -> list[Update]:
    if name == "sweep":
        actions = record.get("actions")
        if not isinstance(actions, Mapping):
            return []
        out = []
        for action in SWEEP_ACTIONS:
            n = _number(actions.get(action))
            if n:
                out.append(count(c.SWEEPER_ACTIONS, action, by=int(n)))
        return out
    if name == "run_finished" and record.get("status") == "success":
        schedule, when = record.get("schedule_id"), _epoch(record.get("timestamp"))
        if schedule and when is not None:
            return [Update("m", field(c.SCHEDULE_LAST_SUCCESS.name, str(schedule)), when)]
    return []
