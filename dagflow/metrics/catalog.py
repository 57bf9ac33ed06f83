"""Every metric ``dagflow metrics`` exports: name, type, labels, meaning and source (pure).

This table is the exporter's interface: the README's metric table, the Grafana dashboard
and the alert rules are checked against it (``tests/unit/test_metrics_mapping.py``). Names
follow Prometheus' conventions: the ``dagflow_`` prefix, base units (seconds), ``_total``
on counters. No label ever holds a run id, a job id or a fence: their values are bounded by
the DAGs, tasks, tenants, queues and schedules that exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dagflow.env import RUN_BUCKETS_S, TASK_BUCKETS_S, WAIT_BUCKETS_S

Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True)
class Metric:
    """One exported metric family.

    Attributes:
        name: The family's name as scraped (counters end in ``_total``).
        kind: ``counter``, ``histogram`` or ``gauge``.
        labels: Its label names, in order.
        help: The ``# HELP`` line.
        source: Where its values come from (events, or what is read from Redis at scrape).
    """

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    source: str


RUNS_STARTED = Metric(
    "dagflow_runs_started_total", "counter", ("dag", "tenant"),
    "Runs started (admitted runs count when they start, not when submitted).", "dag_start",
)  # fmt: skip
RUNS_FINISHED = Metric(
    "dagflow_runs_finished_total", "counter", ("dag", "tenant", "status"),
    "Runs ended, by status (success, failed, cancelled).", "dag_done",
)  # fmt: skip
RUN_DURATION = Metric(
    "dagflow_run_duration_seconds", "histogram", ("dag", "status"),
    "Seconds from a run's start to its end.", "dag_done duration_s",
)  # fmt: skip
TASK_ATTEMPTS = Metric(
    "dagflow_task_attempts_total", "counter", ("dag", "task", "outcome"),
    "Task attempts by how they ended (ok, failed, retry, lease_lost, cancelled).",
    "task_ok, task_fail, task_retry, task_lease_lost, task_cancel",
)  # fmt: skip
TASKS_SKIPPED = Metric(
    "dagflow_tasks_skipped_total", "counter", ("dag", "task"),
    "Tasks not run because of their trigger rule or an unchosen branch.", "task_skip",
)  # fmt: skip
TASK_DURATION = Metric(
    "dagflow_task_duration_seconds", "histogram", ("dag", "task"),
    "Seconds one attempt of a task ran (ended ok, failed or for a retry).",
    "task_ok, task_fail, task_retry duration_s",
)  # fmt: skip
QUEUE_WAIT = Metric(
    "dagflow_task_queue_wait_seconds", "histogram", ("dag", "queue"),
    "Seconds from a step's message being sent (it became ready, or its retry fell due) "
    "to a worker claiming it.",
    "task_start queued_s, queue",
)  # fmt: skip
DEADLINES_MISSED = Metric(
    "dagflow_deadlines_missed_total", "counter", ("dag",),
    "Runs not ended by their deadline.", "dag_deadline_missed",
)  # fmt: skip
NOTIFICATIONS = Metric(
    "dagflow_notifications_total", "counter", ("kind", "outcome"),
    "Notifications and run hooks, by kind and outcome (sent, failed).",
    "notification_sent, notification_failed, hook_failed",
)  # fmt: skip
SWEEPER_ACTIONS = Metric(
    "dagflow_sweeper_actions_total", "counter", ("action",),
    "What the sweeper did (expired, resent, finalized, requeued, stalled, slots_freed, "
    "admitted).",
    "sweep (state line)",
)  # fmt: skip
SCHEDULE_LAST_SUCCESS = Metric(
    "dagflow_schedule_last_success_timestamp_seconds", "gauge", ("schedule",),
    "Unix time at which the schedule's latest successful run ended.",
    "run_finished (state line) with status success",
)  # fmt: skip
RUNS_ACTIVE = Metric(
    "dagflow_runs_active", "gauge", ("tenant",), "Runs started and not ended.",
    "Redis at scrape: dagflow:runs:index",
)  # fmt: skip
RUNS_PENDING = Metric(
    "dagflow_runs_pending", "gauge", ("tenant", "reason"),
    "Runs waiting for a max_active_runs slot; reason is the kind of the first full slot "
    "(global, tenant, dag), or queued (behind an older waiting run).",
    "Redis at scrape: dagflow:pending:*",
)  # fmt: skip
SLOTS_IN_USE = Metric(
    "dagflow_slots_in_use", "gauge", ("kind", "name"), "Runs holding a slot of the scope.",
    "Redis at scrape: dagflow:slots:*",
)  # fmt: skip
SLOTS_LIMIT = Metric(
    "dagflow_slots_limit", "gauge", ("kind", "name"),
    "Runs of the scope that may run at once (known while a run holds or waits for it).",
    "Redis at scrape: the holders' and waiters' slot records",
)  # fmt: skip
JOBS = Metric(
    "dagflow_jobs", "gauge", ("status",), "Scheduled jobs kept in Redis, by status.",
    "Redis at scrape: dagflow:jobs, dagflow:job:*",
)  # fmt: skip
STREAM_LENGTH = Metric(
    "dagflow_event_stream_length", "gauge", (), "Entries the event stream holds.",
    "Redis at scrape: XLEN dagflow:events",
)  # fmt: skip
COLLECTOR_LAG = Metric(
    "dagflow_collector_lag_seconds", "gauge", (),
    "Age of the oldest event the collectors have not written to the log (0: caught up).",
    "Redis at scrape: the collectors group",
)  # fmt: skip
BUILD_INFO = Metric(
    "dagflow_build_info", "gauge", ("version",), "Always 1; the dagflow version.", "constant"
)

#: Every metric, in the order the endpoint serves them.
METRICS: tuple[Metric, ...] = (
    RUNS_STARTED, RUNS_FINISHED, RUN_DURATION, TASK_ATTEMPTS, TASKS_SKIPPED, TASK_DURATION,
    QUEUE_WAIT, DEADLINES_MISSED, NOTIFICATIONS, SWEEPER_ACTIONS, SCHEDULE_LAST_SUCCESS,
    RUNS_ACTIVE, RUNS_PENDING, SLOTS_IN_USE, SLOTS_LIMIT, JOBS, STREAM_LENGTH, COLLECTOR_LAG,
    BUILD_INFO,
)  # fmt: skip
BY_NAME = {m.name: m for m in METRICS}

#: Default histogram buckets, in seconds (DAGFLOW_METRICS_*_BUCKETS override them): run
#: durations reach a day, task durations an hour, queue waits ten minutes.
RUN_BUCKETS = RUN_BUCKETS_S
TASK_BUCKETS = TASK_BUCKETS_S
WAIT_BUCKETS = WAIT_BUCKETS_S

_INSTANCE = re.compile(r"\[\d+\]$")


def task_label(task_id: str) -> str:
    """The ``task`` label of a task id: a mapped instance (``process[3]``) counts as its
    task (``process``), so the label's values stay bounded by the DAG's tasks."""
    return _INSTANCE.sub("", task_id)


# Slot scopes (``dagflow:slots:<scope>``, and ``pool:<name>`` for a pool's step slots) to the
# (kind, name) labels of the slot gauges. A new kind of slot is one more entry here.
SlotKind = Callable[[str], "tuple[str, str] | None"]


def prefixed(kind: str) -> SlotKind:
    """The scope ``<kind>:<name>`` as ``(kind, name)``."""

    def parse(scope: str) -> tuple[str, str] | None:
        head, sep, name = scope.partition(":")
        return (kind, name) if sep and head == kind else None

    return parse


def global_scope(scope: str) -> tuple[str, str] | None:
    """``scheduled`` (SCHED_MAX_PARALLEL, shared by every scheduled run) as ``global``."""
    return ("global", "scheduled") if scope == "scheduled" else None


SLOT_KINDS: tuple[SlotKind, ...] = (
    global_scope,
    prefixed("tenant"),
    prefixed("dag"),
    prefixed("pool"),
)


def slot_labels(scope: str, kinds: Sequence[SlotKind] = SLOT_KINDS) -> tuple[str, str]:
    """``(kind, name)`` of a slot scope; an unknown scope keeps its own text as the kind."""
    for kind in kinds:
        found = kind(scope)
        if found is not None:
            return found
    head, _, name = scope.partition(":")
    return head, name
