"""Pure functions from events to the dashboard's tables.

The API the original product had, with the same keys::

    from dagflow.analytics.tables import summarize_tasks, summarize_dags, per_tenant_load
    from dagflow.events.log import load_events

    events = load_events("logs/orchestrator_events.jsonl", limit=5000)
    stats = summarize_tasks(events, window_hours=24)
    print(f"Error rate: {stats['last_24h']['error_rate'] * 100:.1f}%")
    for run in summarize_dags(events, limit=10):
        print(f"{run['dag_name']}: {run['status']} ({run['duration']:.1f}s)")

No function here reads a file: reading the log is :mod:`dagflow.events.log`' job
(``load_events``, ``iter_events``). Every function takes events and returns plain dicts and
lists, with the end of the time window passed in as ``now`` (it defaults to the clock only so
the calls above keep working). Each function makes one pass over ``events``, so a caller that
needs every table from a huge log can stream it once (``summarize(iter_events(path))``)
instead of holding it in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from dagflow.analytics.rollup import STALE_AFTER_S, EventRollup, parse_timestamp
from dagflow.clock import utc_now

__all__ = [
    "for_tenant",
    "parse_timestamp",
    "per_tenant_load",
    "schedule_by_run",
    "summarize",
    "summarize_dags",
    "summarize_schedules",
    "summarize_tasks",
]

Record = Mapping[str, Any]


def for_tenant(events: Iterable[Record], tenant: str | None) -> Iterator[Record]:
    """Yield the events of ``tenant`` (all events when ``tenant`` is None or empty).

    Lines without a ``tenant_id`` belong to the tenant ``"unknown"``, as in every table.
    """
    if not tenant:
        yield from events
        return
    for event in events:
        if (event.get("tenant_id") or "unknown") == tenant:
            yield event


def _fold(
    events: Iterable[Record],
    window_hours: float,
    now: datetime | None,
    buckets: int = 24,
    stale_after_s: float = STALE_AFTER_S,
    tenant: str | None = None,
) -> EventRollup:
    fold = EventRollup(
        now=now or utc_now(),
        window_hours=window_hours,
        buckets=buckets,
        stale_after_s=stale_after_s,
        tenant=tenant,
    )
    for event in events:
        fold.add(event)
    return fold


def summarize_tasks(
    events: Iterable[Record], window_hours: float = 24, now: datetime | None = None
) -> dict[str, Any]:
    """Count finished tasks in the window ``(now - window_hours, now]`` and over all events.

    Returns:
        ``{"last_24h": stats, "window": stats, "all_time": stats, "window_hours": 24}``, where
        the ``last_<N>h`` key follows ``window_hours`` and each ``stats`` has ``ok``, ``failed``,
        ``retries``, ``skipped``, ``total`` (ok + failed), ``avg_duration_s`` (over ok and
        failed attempts, ``0.0`` when none) and ``error_rate`` (failed / total, 0..1).
    """
    return _fold(events, window_hours, now).task_summary()


def summarize_dags(
    events: Iterable[Record], limit: int = 15, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Return the ``limit`` most recently started runs, newest first.

    Each run has ``run_id``, ``dag_name``, ``tenant``, ``status``, ``error``, ``start`` and
    ``end`` (ISO 8601 UTC or None), ``last_event`` (the newest event's time), ``duration``
    (seconds; for a running run, up to its last event), ``tasks``, ``tasks_ok``,
    ``tasks_failed``, ``tasks_skipped`` and ``retries``. ``status`` is the ``dag_done``'s
    (``success``, ``failed``, ``cancelled``); without one, ``running``, or ``stale`` when the
    run's last event is more than ``STALE_AFTER_S`` (600 s) before ``now``. ``error`` is the
    ``dag_done``'s (the sweeper's ``stalled: ...``), else the first failed task's
    (``task: error``), else None. Lines from the original product that lack a ``run_id`` are
    grouped into ``legacy-<n>`` runs, one per ``dag_start``.
    """
    return _fold(events, 24, now).runs(limit)


def per_tenant_load(
    events: Iterable[Record], window_hours: float = 24, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Return the load of each tenant in the window, busiest first.

    Each row has ``tenant``, ``runs`` (started in the window), ``tasks`` (finished in the
    window), ``tasks_failed``, ``error_rate`` (0..1) and ``avg_latency_s`` (mean task duration).
    """
    return _fold(events, window_hours, now).tenants()


def summarize(
    events: Iterable[Record],
    window_hours: float = 24,
    now: datetime | None = None,
    runs_limit: int = 15,
    buckets: int = 24,
    tenant: str | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> dict[str, Any]:
    """Compute every table the dashboard shows in one pass over ``events``.

    Args:
        events: Any events.
        window_hours: The window ``(now - window_hours, now]``.
        now: The end of the window (default: the clock).
        runs_limit: Rows in ``runs``.
        buckets: Rows in ``series``.
        tenant: Only this tenant's events (None: all); ``tenant_ids`` still lists every one.
        stale_after_s: Seconds of silence after which a run without ``dag_done`` is stale.

    Returns:
        ``tasks`` (as :func:`summarize_tasks`), ``runs`` (as :func:`summarize_dags`),
        ``tenants`` (as :func:`per_tenant_load`), ``run_counts`` (see
        :meth:`EventRollup.run_counts`: ``running`` now, ``stale``, and ``success``,
        ``failed``, ``cancelled`` finished in the window), ``series`` (``buckets`` rows of runs
        and task errors over the window, see :meth:`EventRollup.series`) and ``tenant_ids``
        (every tenant seen, sorted).
    """
    fold = _fold(events, window_hours, now, buckets, stale_after_s, tenant)
    return {
        "tasks": fold.task_summary(),
        "runs": fold.runs(runs_limit),
        "tenants": fold.tenants(),
        "run_counts": fold.run_counts(),
        "series": fold.series(),
        "tenant_ids": sorted(fold.tenant_ids),
    }


def summarize_schedules(state_events: Iterable[Record]) -> list[dict[str, Any]]:
    """Return one row per schedule from the scheduler's state store, sorted by id.

    Each row has ``schedule_id``, ``tenant``, ``dag``, ``last_run`` (timestamp of the latest
    ``run_started`` or ``run_finished``, or None), ``last_run_id`` (that record's run),
    ``status`` (of the latest run: ``success``,
    ``failed``, ``running``; ``enqueued`` if it never ran), ``last_duration_s``, and the counts
    ``enqueued``, ``success`` and ``failed``. Records without a ``schedule_id`` are counted
    under ``"unknown"``.
    """
    rows: dict[str, dict[str, Any]] = {}
    for record in state_events:
        kind = record.get("event")
        if kind not in ("schedule_enqueued", "run_started", "run_finished"):
            continue
        schedule_id = str(record.get("schedule_id") or "unknown")
        row = rows.get(schedule_id)
        if row is None:
            row = rows[schedule_id] = {
                "schedule_id": schedule_id,
                "tenant": "unknown",
                "dag": "",
                "last_run": None,
                "last_run_id": None,
                "status": "enqueued",
                "last_duration_s": None,
                "enqueued": 0,
                "success": 0,
                "failed": 0,
            }
        if record.get("tenant_id"):
            row["tenant"] = str(record["tenant_id"])
        if record.get("dag"):
            row["dag"] = str(record["dag"])
        if kind == "schedule_enqueued":
            row["enqueued"] += 1
            continue
        row["last_run"] = record.get("timestamp", row["last_run"])
        row["last_run_id"] = record.get("run_id") or row["last_run_id"]
        if kind == "run_started":
            row["status"] = "running"
            continue
        status = "success" if record.get("status") == "success" else "failed"
        row["status"] = status
        row[status] += 1
        duration = record.get("duration_s")
        row["last_duration_s"] = float(duration) if isinstance(duration, int | float) else None
    return [rows[key] for key in sorted(rows)]


def schedule_by_run(state_events: Iterable[Record]) -> dict[str, str]:
    """Map each ``run_id`` in the state store to the ``schedule_id`` that enqueued it."""
    return {
        str(record["run_id"]): str(record["schedule_id"])
        for record in state_events
        if record.get("run_id") and record.get("schedule_id")
    }
