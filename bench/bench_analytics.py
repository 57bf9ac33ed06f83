"""Benchmark the analytics and the dashboard's first render; prints a markdown table.

Not a test: run it by hand (``python bench/bench_analytics.py``) and paste the table into
``bench/README.md``. Targets:

* analytics over a 1,000,000-event log: under 5 s and under 500 MB peak RSS;
* the dashboard's first full render over 100,000 events (layout plus every callback
  computing its outputs, cold cache): under 2 s.

Peak RSS is the process high-water mark (``resource.getrusage``), so the analytics rows run
before the dashboard is imported and include the interpreter itself.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagflow.analytics.tables import (
    per_tenant_load,
    summarize,
    summarize_dags,
    summarize_tasks,
)
from dagflow.clock import isoformat
from dagflow.events.jsonl import ReadStats
from dagflow.events.log import iter_events, load_events

TASKS = ("sweep", "report", "brief")
EDGES = [["sweep", "report"], ["report", "brief"]]


def generate_events(path: Path, n: int, now: datetime, hours: float = 48, seed: int = 7) -> int:
    """Write about ``n`` events of 3-task runs spread over the last ``hours``; returns runs.

    One run in 10 retries a task, one in 20 fails (and skips the rest), and one line in
    10,000 is torn, so every code path of the fold is exercised.
    """
    rng = random.Random(seed)
    written = runs = 0
    span = hours * 3600.0
    with path.open("w", encoding="utf-8") as out:
        while written < n:
            runs += 1
            start = now - timedelta(seconds=span * (1 - written / n))
            base = {
                "run_id": f"run-{runs:08d}",
                "dag_name": f"dag_{runs % 7}",
                "tenant_id": f"tenant-{runs % 5}",
            }
            clock = start
            lines: list[dict[str, Any]] = [
                {"timestamp": isoformat(clock), "event": "dag_start", **base, "tasks": 3}
            ]
            failed = rng.random() < 0.05
            retry_task = rng.choice(TASKS) if rng.random() < 0.1 else None
            lines[0]["edges"] = EDGES
            done = 0
            for index, task in enumerate(TASKS):
                task_base = {**base, "task_id": task, "workflow_ref": f"wf_{task}"}
                if failed and index > 0:
                    lines.append(
                        {"timestamp": isoformat(clock), "event": "task_skip", **task_base}
                        | {"error": "upstream task failed"}
                    )
                    continue
                attempt = 1
                if task == retry_task:
                    lines.append(
                        {"timestamp": isoformat(clock), "event": "task_start", **task_base}
                        | {"attempt": 1}
                    )
                    clock += timedelta(seconds=0.5)
                    lines.append(
                        {"timestamp": isoformat(clock), "event": "task_retry", **task_base}
                        | {"attempt": 1, "delay_s": 1.0, "error": "TimeoutError: slow"}
                    )
                    clock += timedelta(seconds=1)
                    attempt = 2
                lines.append(
                    {"timestamp": isoformat(clock), "event": "task_start", **task_base}
                    | {"attempt": attempt}
                )
                duration = rng.uniform(0.05, 2.0)
                clock += timedelta(seconds=duration)
                kind = "task_fail" if failed else "task_ok"
                end: dict[str, Any] = {"attempt": attempt, "duration_s": round(duration, 4)}
                if failed:
                    end["error"] = "RunnerError: boom"
                else:
                    done += 1
                lines.append({"timestamp": isoformat(clock), "event": kind, **task_base} | end)
            lines.append(
                {"timestamp": isoformat(clock), "event": "dag_done", **base}
                | {
                    "status": "failed" if failed else "success",
                    "tasks": 3,
                    "tasks_succeeded": done,
                    "tasks_failed": int(failed),
                    "tasks_skipped": 2 if failed else 0,
                    "duration_s": round((clock - start).total_seconds(), 4),
                }
            )
            for line in lines:
                text = json.dumps(line, separators=(",", ":"))
                if rng.random() < 0.0001:
                    text = text[: len(text) // 2]  # a torn line
                out.write(text + "\n")
            written += len(lines)
    return runs


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_analytics(path: Path, now: datetime) -> list[tuple[str, float, float, str]]:
    """Time the one-pass fold over the whole log, then the seed's API over its tail."""
    rows: list[tuple[str, float, float, str]] = []
    stats = ReadStats()
    seconds, _ = timed(lambda: summarize(iter_events(path, stats), window_hours=24, now=now))
    rows.append(
        (
            f"`summarize(iter_events(...))`, {stats.lines:,} lines streamed once "
            f"({stats.skipped} torn skipped)",
            seconds,
            peak_rss_mb(),
            "< 5 s, < 500 MB",
        )
    )

    def seed_api() -> None:
        events = load_events(path, limit=5000)
        summarize_tasks(events, window_hours=24, now=now)
        summarize_dags(events, limit=15, now=now)
        per_tenant_load(events, window_hours=24, now=now)

    seconds, _ = timed(seed_api)
    rows.append(
        (
            "`load_events(limit=5000)` over the same file + 3 seed functions",
            seconds,
            peak_rss_mb(),
            "",
        )
    )
    return rows


def bench_dashboard(path: Path, now: datetime) -> tuple[str, float, float, str]:
    """Time the dashboard's first full render: layout plus every callback, cold cache.

    The overview callback reads the log, folds it once and builds every panel (KPIs, both
    charts, the runs, queue, schedules and tenants tables); the route callback then opens
    the newest run's page (Gantt chart and DAG graph).
    """
    from dagflow.dashboard.app import create_app
    from dagflow.dashboard.callbacks import DashboardData, render_overview, render_route
    from dagflow.settings import Settings

    settings = Settings(events_path=path, state_path=path.with_name("state.jsonl"))
    start = time.perf_counter()
    app = create_app(settings)
    layout = app.layout() if callable(app.layout) else app.layout
    data = DashboardData.from_settings(settings, clock=lambda: now)
    overview = render_overview(data, None)
    first_run = overview.runs[0]["run_id"]
    render_route(data, f"/runs/{first_run}")
    seconds = time.perf_counter() - start
    assert layout is not None
    return (
        f"dashboard first render, {path.stat().st_size // 1_000_000} MB log of 100,000 events",
        seconds,
        peak_rss_mb(),
        "< 2 s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the big log")
    parser.add_argument("--dashboard-events", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the logs here")
    args = parser.parse_args(argv)
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        big, small = folder / "events_big.jsonl", folder / "events_small.jsonl"
        generate_events(big, args.events, now)
        generate_events(small, args.dashboard_events, now)
        rows = bench_analytics(big, now)
        rows.append(bench_dashboard(small, now))
    print("| benchmark | time (s) | peak RSS (MB) | target |")
    print("|---|---:|---:|---|")
    for name, seconds, rss, target in rows:
        print(f"| {name} | {seconds:.2f} | {rss:.0f} | {target} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
