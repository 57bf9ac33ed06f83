"""One run's timeline: its task attempts, task states and edges, folded from its events.

This is what the dashboard's run page draws (a Gantt bar per attempt, so retries show, and
the DAG coloured by task state). Pure: events in, plain dicts out; "now" is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dagflow.analytics.rollup import EventRollup, RunIds, parse_timestamp
from dagflow.clock import isoformat

Record = Mapping[str, Any]

#: Attempt outcome for each event that ends an attempt.
_ENDS = {
    "task_ok": "ok",
    "task_retry": "retry",
    "task_fail": "failed",
    "task_lease_lost": "lease lost",
    "task_cancel": "cancelled",
}
#: Task state for each event that ends a task without running it.
_NOT_RUN = {"task_skip": "skipped", "task_cancel": "cancelled"}


def _edges(value: object) -> list[tuple[str, str]]:
    """Read ``dag_start.edges`` (``[[parent, child], ...]``), ignoring malformed pairs."""
    if not isinstance(value, list):
        return []
    return [
        (pair[0], pair[1])
        for pair in value
        if isinstance(pair, list | tuple)
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], str)
    ]


def _attempt(
    attempts: dict[tuple[str, int, int], dict[str, Any]], task: str, n: int, event: Record
) -> dict[str, Any]:
    # One bar per delivery: an attempt taken over after its worker died (a new lease
    # fence) is drawn apart from the one that lost it.
    fence = event.get("fence")
    key = (task, n, fence if isinstance(fence, int) else 0)
    if key not in attempts:
        attempts[key] = {
            "task_id": task,
            "attempt": n,
            "worker": event.get("worker"),
            "fence": fence,
            "workflow_ref": None,
            "start": None,
            "end": None,
            "status": "running",
            "duration_s": None,
            "error": None,
            "traceback": None,
        }
    return attempts[key]


def _close(attempt: dict[str, Any], event: Record, ts: datetime | None, status: str) -> None:
    attempt["status"] = status
    attempt["end"] = ts
    attempt["error"] = event.get("error")
    attempt["traceback"] = event.get("traceback")
    attempt["worker"] = attempt["worker"] or event.get("worker")
    duration = event.get("duration_s")
    if isinstance(duration, int | float):
        attempt["duration_s"] = float(duration)
        if attempt["start"] is None and ts is not None:
            attempt["start"] = ts - timedelta(seconds=float(duration))
    if attempt["start"] is None:
        attempt["start"] = ts
    if attempt["duration_s"] is None and attempt["start"] is not None and ts is not None:
        attempt["duration_s"] = (ts - attempt["start"]).total_seconds()


def _open_attempt(
    attempts: dict[tuple[str, int, int], dict[str, Any]], task: str
) -> dict[str, Any] | None:
    """The task's latest attempt still drawn as running (a retry pending counts), if any."""
    found = [
        a for (t, _, _), a in attempts.items() if t == task and a["status"] in ("running", "retry")
    ]
    return found[-1] if found else None


def _task_state(attempts: list[dict[str, Any]]) -> str:
    last = str(attempts[-1]["status"])
    # A task whose last attempt failed with a retry pending is still running.
    return {"ok": "success", "failed": "failed", "retry": "running"}.get(last, last)


def run_timeline(
    events: Iterable[Record], run_id: str, now: datetime | None = None
) -> dict[str, Any] | None:
    """Fold the events of run ``run_id`` into what the run page shows.

    Args:
        events: Any events; only those of ``run_id`` are used.
        run_id: The run (``legacy-<n>`` for lines of the original product without run ids).
        now: The current time. A run that has not ended is drawn up to ``now``, and is
            ``stale`` when it has been silent for ``STALE_AFTER_S``; None: up to its last event.

    Returns:
        None if no event belongs to the run; else ``run`` (the run's row, as
        :func:`dagflow.analytics.tables.summarize_dags` gives it), ``attempts`` (one per task
        attempt, in start order: ``task_id``, ``attempt``, ``worker``, ``fence``,
        ``start``/``end`` as ISO strings, ``status`` of ``ok``/``retry``/``failed``/
        ``lease lost``/``cancelled``/``running``, ``duration_s``, ``error``, ``traceback``),
        ``tasks`` (one per task: ``task_id``, ``state`` of ``success``/``failed``/
        ``running``/``skipped``/``cancelled``, ``attempts``, ``start``, ``end`` (when a task
        that never ran was skipped or cancelled), ``error``), ``edges`` (``(parent, child)``
        pairs from ``dag_start.edges``, empty when the log has none) and ``until`` (ISO: the
        end of the drawing, where a running attempt's bar stops: ``now`` for a run that has
        not ended, else its last event).
    """
    ids = RunIds()
    mine = [event for event in events if ids.resolve(event) == run_id]
    if not mine:
        return None
    stamps = [t for t in (parse_timestamp(e.get("timestamp")) for e in mine) if t is not None]
    last_ts = max(stamps, default=datetime(1970, 1, 1, tzinfo=UTC))
    rollup = EventRollup(now=max(now, last_ts) if now else last_ts, window_hours=1)
    attempts: dict[tuple[str, int, int], dict[str, Any]] = {}
    not_run: dict[str, tuple[str, datetime | None, str | None]] = {}
    edges: list[tuple[str, str]] = []
    for event in mine:
        rollup.add(event)
        kind, task = event.get("event"), event.get("task_id")
        if kind == "dag_start":
            edges = _edges(event.get("edges"))
        if not isinstance(task, str):
            continue
        ts = parse_timestamp(event.get("timestamp"))
        number = event.get("attempt")
        n = number if isinstance(number, int) else 1
        fence = event.get("fence")
        started = (task, n, fence if isinstance(fence, int) else 0) in attempts
        if kind == "task_cancel" and not started and (open_ := _open_attempt(attempts, task)):
            # A cancel that ended an attempt a dead worker left open names no attempt.
            _close(open_, event, ts, "cancelled")
            continue
        if kind in _NOT_RUN and not (kind == "task_cancel" and started):
            # Cancelled before it started (or skipped): a task with no attempt.
            not_run[task] = (_NOT_RUN[str(kind)], ts, event.get("error"))
            continue
        if kind == "task_start":
            attempt = _attempt(attempts, task, n, event)
            attempt["start"] = ts
            attempt["workflow_ref"] = event.get("workflow_ref")
        elif kind in _ENDS:
            attempt = _attempt(attempts, task, n, event)
            attempt["workflow_ref"] = attempt["workflow_ref"] or event.get("workflow_ref")
            _close(attempt, event, ts, _ENDS[str(kind)])
    ordered = sorted(attempts.values(), key=lambda a: (a["start"] or last_ts, a["attempt"]))
    by_task: dict[str, list[dict[str, Any]]] = {}
    for attempt in ordered:
        by_task.setdefault(attempt["task_id"], []).append(attempt)
    tasks = [
        {
            "task_id": task,
            "state": _task_state(tries),
            "attempts": len(tries),
            "start": isoformat(tries[0]["start"]) if tries[0]["start"] else None,
            "error": tries[-1]["error"],
        }
        for task, tries in by_task.items()
    ]
    for task in tasks:
        task["end"] = None
    tasks += [
        {
            "task_id": task,
            "state": state,
            "attempts": 0,
            "start": None,
            "end": isoformat(ts) if ts else None,
            "error": why,
        }
        for task, (state, ts, why) in not_run.items()
        if task not in by_task
    ]
    for attempt in ordered:
        for key in ("start", "end"):
            attempt[key] = isoformat(attempt[key]) if attempt[key] else None
    run = rollup.runs(1)[0]
    run["run_id"] = run_id  # the inner rollup numbers legacy runs from 1
    open_run = run["status"] in ("running", "stale")
    until = max(now, last_ts) if now and open_run else last_ts
    return {
        "run": run,
        "attempts": ordered,
        "tasks": tasks,
        "edges": edges,
        "until": isoformat(until),
    }
