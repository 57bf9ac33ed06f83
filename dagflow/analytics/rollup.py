"""The one-pass fold behind :mod:`dagflow.analytics.tables`: events in, counters out.

An :class:`EventRollup` sees each event once and keeps only counters and one small record per
run, so a million-line log can be streamed through it in bounded memory. The window is
``(now - window_hours, now]``; ``now`` is passed in, never read from a clock, so the same events
always give the same tables.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dagflow.clock import isoformat

Record = Mapping[str, Any]

#: Seconds without any event after which a run that has no ``dag_done`` is shown as
#: ``stale`` instead of ``running``. The sweeper ends a run nothing can move within two lease
#: periods (60 s by default), so a run this quiet is most likely one whose workers and sweeper
#: are all gone; it may also be one long step (a step's heartbeat writes no event).
STALE_AFTER_S = 600.0

#: Index of each counter in a task-stats list: ok, failed, retries, skipped, sum of
#: durations (seconds) and number of durations.
OK, FAILED, RETRIES, SKIPPED, DUR_SUM, DUR_N = range(6)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an ISO 8601 timestamp (``Z``, ``+00:00`` or naive, read as UTC); None if unusable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _iso(moment: datetime | None) -> str | None:
    return isoformat(moment) if moment is not None else None


def _task_stats(counts: list[float]) -> dict[str, Any]:
    ok, failed = int(counts[OK]), int(counts[FAILED])
    total = ok + failed
    return {
        "ok": ok,
        "failed": failed,
        "retries": int(counts[RETRIES]),
        "skipped": int(counts[SKIPPED]),
        "total": total,
        "avg_duration_s": counts[DUR_SUM] / counts[DUR_N] if counts[DUR_N] else 0.0,
        "error_rate": failed / total if total else 0.0,
    }


class RunIds:
    """Give every event a run id, including lines of the original product that have none.

    The original product ran one DAG at a time in one process, so a line without a ``run_id``
    belongs to the latest ``dag_start`` without one; each such run is named ``legacy-<n>``.
    """

    def __init__(self) -> None:
        self._count = 0
        self._open: str | None = None

    def resolve(self, event: Record) -> str:
        """Return the event's run id (a ``legacy-<n>`` id when the line has none)."""
        run_id = event.get("run_id")
        if run_id:
            return str(run_id)
        kind = event.get("event")
        if kind == "dag_start" or self._open is None:
            self._count += 1
            self._open = f"legacy-{self._count}"
        current = self._open
        if kind == "dag_done":
            self._open = None
        return current


class _Run:
    """What the rollup remembers about one run (slots: there may be 100,000s of them)."""

    __slots__ = (
        "dag_name",
        "duration",
        "end",
        "error",
        "failed",
        "first",
        "last",
        "ok",
        "retries",
        "run_id",
        "skipped",
        "start",
        "status",
        "tasks",
        "tenant",
    )

    def __init__(self, run_id: str, dag_name: str, tenant: str, seen: datetime | None) -> None:
        self.run_id, self.dag_name, self.tenant = run_id, dag_name, tenant
        self.first = self.last = seen
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.status = "running"
        self.error: str | None = None
        self.duration: float | None = None
        self.tasks: int | None = None
        self.ok = self.failed = self.skipped = self.retries = 0

    def current_status(self, now: datetime, stale_after_s: float) -> str:
        """The status, with a run that has no ``dag_done`` and no recent event as ``stale``."""
        quiet = self.last is not None and (now - self.last).total_seconds() > stale_after_s
        return "stale" if self.status == "running" and quiet else self.status

    def as_dict(self, now: datetime, stale_after_s: float) -> dict[str, Any]:
        start = self.start or self.first
        duration = self.duration
        if duration is None:
            until = self.end or self.last
            duration = (until - start).total_seconds() if until and start else 0.0
        return {
            "run_id": self.run_id,
            "dag_name": self.dag_name,
            "tenant": self.tenant,
            "status": self.current_status(now, stale_after_s),
            "error": self.error,
            "start": _iso(start),
            "end": _iso(self.end),
            "last_event": _iso(self.last),
            "duration": duration,
            "tasks": self.tasks,
            "tasks_ok": self.ok,
            "tasks_failed": self.failed,
            "tasks_skipped": self.skipped,
            "retries": self.retries,
        }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class EventRollup:
    """Fold events into task, run, tenant and time-series counters.

    Args:
        now: The end of the window (aware datetime).
        window_hours: The window's length in hours.
        buckets: How many equal time buckets :meth:`series` splits the window into.
        stale_after_s: Seconds without an event after which a run with no ``dag_done`` is
            ``stale`` rather than ``running``.
        tenant: Fold only this tenant's events (None: all). Run ids are given first, so a
            ``legacy-<n>`` id names the same run with or without the filter.
    """

    def __init__(
        self,
        now: datetime,
        window_hours: float = 24,
        buckets: int = 24,
        stale_after_s: float = STALE_AFTER_S,
        tenant: str | None = None,
    ) -> None:
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self.stale_after_s = stale_after_s
        self.tenant = tenant or None
        self.window_hours = window_hours
        self.cutoff = self.now - timedelta(hours=window_hours)
        self.buckets = max(buckets, 1)
        self._bucket_s = max(timedelta(hours=window_hours).total_seconds() / self.buckets, 1e-6)
        self.window: list[float] = [0.0] * 6
        self.all_time: list[float] = [0.0] * 6
        self.tenant_ids: set[str] = set()
        self._tenants: dict[str, list[float]] = {}
        self._runs: dict[str, _Run] = {}
        # Per bucket: runs started, runs succeeded, runs failed, tasks ok, tasks failed.
        self._series = [[0, 0, 0, 0, 0] for _ in range(self.buckets)]
        self._run_ids = RunIds()

    def add(self, event: Record) -> None:
        """Fold one event in. Unknown events and unusable fields are ignored, never raised."""
        # The hot path of a million-line read: keep lookups few and task_start cheap.
        kind = event.get("event")
        raw_id = event.get("run_id")
        run_id = str(raw_id) if raw_id else self._run_ids.resolve(event)
        if self.tenant is not None:
            tenant = str(event.get("tenant_id") or "unknown")
            if tenant != self.tenant:
                self.tenant_ids.add(tenant)
                return
        try:
            ts: datetime | None = datetime.fromisoformat(event["timestamp"])
        except (KeyError, TypeError, ValueError):
            ts = None
        else:
            if ts is not None and ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
        run = self._runs.get(run_id)
        if run is None:
            tenant = str(event.get("tenant_id") or "unknown")
            self.tenant_ids.add(tenant)
            run = _Run(run_id, str(event.get("dag_name") or "unknown"), tenant, ts)
            self._runs[run_id] = run
        elif ts is not None and (run.last is None or ts > run.last):
            run.last = ts
        if kind == "task_start":
            return
        in_window = ts is not None and self.cutoff < ts <= self.now
        if kind in ("task_ok", "task_fail"):
            self._task_end(run, event, kind == "task_fail", ts if in_window else None)
            if kind == "task_fail" and run.error is None and event.get("error"):
                run.error = f"{event.get('task_id')}: {event['error']}"
        elif kind == "task_retry":
            run.retries += 1
            self.all_time[RETRIES] += 1
            self.window[RETRIES] += in_window
        elif kind == "task_skip":
            run.skipped += 1
            self.all_time[SKIPPED] += 1
            self.window[SKIPPED] += in_window
        elif kind == "dag_start":
            run.start = ts
            tasks = event.get("tasks")
            run.tasks = tasks if isinstance(tasks, int) else None
            if run.dag_name == "unknown" and event.get("dag_name"):
                run.dag_name = str(event["dag_name"])
            if in_window and ts is not None:
                self._tenant(run.tenant)[0] += 1
                self._series[self._bucket(ts)][0] += 1
        elif kind == "dag_done":
            self._done(run, event, ts)
            if in_window and ts is not None:
                self._series[self._bucket(ts)][1 if run.status == "success" else 2] += 1

    def _task_end(self, run: _Run, event: Record, failed: bool, ts: datetime | None) -> None:
        """Count a ``task_ok``/``task_fail``; ``ts`` is None when it is outside the window."""
        duration = _number(event.get("duration_s"))
        if failed:
            run.failed += 1
        else:
            run.ok += 1
        self._count(self.all_time, failed, duration)
        if ts is None:
            return
        self._count(self.window, failed, duration)
        row = self._tenant(str(event.get("tenant_id") or run.tenant))
        row[1] += 1
        row[2] += failed
        if duration is not None:
            row[3] += duration
            row[4] += 1
        self._series[self._bucket(ts)][4 if failed else 3] += 1

    def _done(self, run: _Run, event: Record, ts: datetime | None) -> None:
        run.end = ts
        run.duration = _number(event.get("duration_s"))
        for field, attr in (("tasks_succeeded", "ok"), ("tasks_failed", "failed")):
            value = _number(event.get(field))
            if value is not None:  # dag_done's counts are the runner's own, so they win
                setattr(run, attr, int(value))
        status = event.get("status")
        if status not in ("success", "failed", "cancelled"):  # the original product wrote none
            status = "failed" if run.failed else "success"
        run.status = str(status)
        if event.get("error"):  # e.g. the sweeper's "stalled: ..." wins over a task's error
            run.error = str(event["error"])
        skipped = _number(event.get("tasks_skipped"))
        if skipped is not None:
            run.skipped = int(skipped)
        if run.tasks is None and _number(event.get("tasks")) is not None:
            run.tasks = int(event["tasks"])

    @staticmethod
    def _count(counts: list[float], failed: bool, duration: float | None) -> None:
        counts[FAILED if failed else OK] += 1
        if duration is not None:
            counts[DUR_SUM] += duration
            counts[DUR_N] += 1

    def _tenant(self, tenant: str) -> list[float]:
        row = self._tenants.get(tenant)
        if row is None:
            row = self._tenants[tenant] = [0.0] * 5  # runs, tasks, failed, dur sum, dur n
        return row

    def _bucket(self, ts: datetime) -> int:
        index = int((ts - self.cutoff).total_seconds() // self._bucket_s)
        return min(max(index, 0), self.buckets - 1)

    def task_summary(self) -> dict[str, Any]:
        """Return the task stats of the window (``last_<N>h`` and ``window``) and all time."""
        window = _task_stats(self.window)
        return {
            f"last_{self.window_hours:g}h": window,
            "window": window,
            "all_time": _task_stats(self.all_time),
            "window_hours": self.window_hours,
        }

    def runs(self, limit: int) -> list[dict[str, Any]]:
        """Return the ``limit`` most recently started runs, newest first."""
        floor = datetime.min.replace(tzinfo=UTC)
        newest = heapq.nlargest(
            max(limit, 0), self._runs.values(), key=lambda r: r.start or r.first or floor
        )
        return [run.as_dict(self.now, self.stale_after_s) for run in newest]

    def run_counts(self) -> dict[str, int]:
        """Count runs by status.

        ``running``: runs without a ``dag_done`` whose last event is at most ``stale_after_s``
        old, whenever they started. ``stale``: runs without a ``dag_done`` whose last event is
        older than that but in the window. ``success``, ``failed`` and ``cancelled``: runs whose
        ``dag_done`` is in the window (as in the runs chart).
        """
        counts = {"running": 0, "stale": 0, "success": 0, "failed": 0, "cancelled": 0}
        for run in self._runs.values():
            status = run.current_status(self.now, self.stale_after_s)
            if status == "running":
                counts[status] += 1
            elif status == "stale":
                counts[status] += run.last is not None and self.cutoff < run.last
            elif run.end is not None and self.cutoff < run.end <= self.now:
                counts[status] = counts.get(status, 0) + 1
        return counts

    def tenants(self) -> list[dict[str, Any]]:
        """Return per-tenant load in the window, busiest (most runs, then tasks) first."""
        rows = [
            {
                "tenant": tenant,
                "runs": int(row[0]),
                "tasks": int(row[1]),
                "tasks_failed": int(row[2]),
                "error_rate": row[2] / row[1] if row[1] else 0.0,
                "avg_latency_s": row[3] / row[4] if row[4] else 0.0,
            }
            for tenant, row in self._tenants.items()
        ]
        return sorted(rows, key=lambda r: (-r["runs"], -r["tasks"], r["tenant"]))

    def series(self) -> list[dict[str, Any]]:
        """Return one row per bucket: ``start`` (ISO), ``runs``, ``runs_ok``, ``runs_failed``,
        ``tasks_ok``, ``tasks_failed`` and ``error_rate`` of the tasks finished in it."""
        step = timedelta(seconds=self._bucket_s)
        rows = []
        for index, (runs, runs_ok, runs_failed, ok, failed) in enumerate(self._series):
            rows.append(
                {
                    "start": isoformat(self.cutoff + step * index),
                    "runs": runs,
                    "runs_ok": runs_ok,
                    "runs_failed": runs_failed,
                    "tasks_ok": ok,
                    "tasks_failed": failed,
                    "error_rate": failed / (ok + failed) if ok + failed else 0.0,
                }
            )
        return rows
