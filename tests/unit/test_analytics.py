"""Analytics tables from hand-built event lists: windows, runs, tenants, schedules, input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagflow.analytics.tables import (
    for_tenant,
    parse_timestamp,
    per_tenant_load,
    schedule_by_run,
    summarize,
    summarize_dags,
    summarize_schedules,
    summarize_tasks,
)
from dagflow.analytics.timeline import run_timeline
from dagflow.clock import isoformat

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ev(kind: str, minutes_ago: float, run: str = "r1", **fields: Any) -> dict[str, Any]:
    """One event ``minutes_ago`` before NOW, in the log's format."""
    base = {
        "timestamp": isoformat(NOW - timedelta(minutes=minutes_ago)),
        "event": kind,
        "run_id": run,
        "dag_name": fields.pop("dag", "weekly_ops_chain"),
        "tenant_id": fields.pop("tenant", "acme"),
    }
    return base | fields


@pytest.fixture
def failed_run() -> list[dict[str, Any]]:
    """r1: sweep retries once then succeeds, report fails for good, brief is skipped."""
    return [
        ev("dag_start", 60, tasks=3, edges=[["sweep", "report"], ["report", "brief"]]),
        ev("task_start", 59, task_id="sweep", attempt=1),
        ev("task_retry", 58, task_id="sweep", attempt=1, delay_s=1.0, error="TimeoutError: x"),
        ev("task_start", 57, task_id="sweep", attempt=2),
        ev("task_ok", 56, task_id="sweep", attempt=2, duration_s=2.0),
        ev("task_start", 55, task_id="report", attempt=1),
        ev("task_fail", 54, task_id="report", attempt=1, duration_s=4.0, error="RunnerError: <b>"),
        ev("task_skip", 54, task_id="brief", error="upstream task failed"),
        ev("dag_done", 54, status="failed", tasks=3, tasks_succeeded=1, tasks_failed=1,
           tasks_skipped=1, duration_s=360.0),
    ]  # fmt: skip


@pytest.fixture
def old_run() -> list[dict[str, Any]]:
    """r0 on another tenant, two days ago: outside a 24 h window."""
    return [
        ev("dag_start", 2880, run="r0", tenant="globex", dag="nightly", tasks=1),
        ev("task_start", 2880, run="r0", tenant="globex", dag="nightly", task_id="a", attempt=1),
        ev("task_ok", 2879, run="r0", tenant="globex", dag="nightly", task_id="a", attempt=1,
           duration_s=10.0),
        ev("dag_done", 2879, run="r0", tenant="globex", dag="nightly", status="success", tasks=1,
           tasks_succeeded=1, tasks_failed=0, tasks_skipped=0, duration_s=60.0),
    ]  # fmt: skip


def test_summarize_tasks_counts_only_the_window(
    failed_run: list[dict[str, Any]], old_run: list[dict[str, Any]]
) -> None:
    stats = summarize_tasks(old_run + failed_run, window_hours=24, now=NOW)

    window = stats["last_24h"]
    assert window == stats["window"]
    assert (window["ok"], window["failed"], window["retries"], window["skipped"]) == (1, 1, 1, 1)
    assert window["avg_duration_s"] == pytest.approx(3.0)
    assert window["error_rate"] == pytest.approx(0.5)
    assert stats["all_time"]["ok"] == 2
    assert stats["all_time"]["error_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("window_hours", "key", "ok"),
    [(0.5, "last_0.5h", 0), (1, "last_1h", 1), (72, "last_72h", 2)],
)
def test_summarize_tasks_window_key_follows_hours(
    failed_run: list[dict[str, Any]],
    old_run: list[dict[str, Any]],
    window_hours: float,
    key: str,
    ok: int,
) -> None:
    assert summarize_tasks(old_run + failed_run, window_hours, now=NOW)[key]["ok"] == ok


def test_empty_input_gives_zeros_not_errors() -> None:
    stats = summarize_tasks([], now=NOW)["last_24h"]

    assert stats == {
        "ok": 0, "failed": 0, "retries": 0, "skipped": 0, "total": 0,
        "avg_duration_s": 0.0, "error_rate": 0.0,
    }  # fmt: skip
    assert summarize_dags([]) == []
    assert per_tenant_load([], now=NOW) == []
    assert summarize_schedules([]) == []
    assert summarize([], now=NOW)["run_counts"] == {
        "running": 0, "stale": 0, "success": 0, "failed": 0, "cancelled": 0,
    }  # fmt: skip


def test_summarize_dags_newest_first_with_counts(
    failed_run: list[dict[str, Any]], old_run: list[dict[str, Any]]
) -> None:
    running = [ev("dag_start", 5, run="r2", tasks=3), ev("task_start", 4, run="r2", task_id="a")]

    runs = summarize_dags(old_run + failed_run + running, limit=15, now=NOW)

    assert [r["run_id"] for r in runs] == ["r2", "r1", "r0"]
    r2, r1, r0 = runs
    assert (r2["status"], r2["duration"], r2["end"]) == ("running", 60.0, None)
    assert r1["status"] == "failed"
    assert r1["duration"] == pytest.approx(360.0)
    assert (r1["tasks_ok"], r1["tasks_failed"], r1["tasks_skipped"], r1["retries"]) == (1, 1, 1, 1)
    assert r1["start"] == isoformat(NOW - timedelta(minutes=60))
    assert (r0["dag_name"], r0["tenant"], r0["status"]) == ("nightly", "globex", "success")
    assert summarize_dags(old_run + failed_run + running, limit=1, now=NOW) == [r2]


def test_per_tenant_load_in_window(
    failed_run: list[dict[str, Any]], old_run: list[dict[str, Any]]
) -> None:
    other = [
        ev("dag_start", 30, run="r3", tenant="globex", tasks=1),
        ev("task_ok", 29, run="r3", tenant="globex", task_id="a", attempt=1, duration_s=1.0),
    ]

    rows = per_tenant_load(old_run + failed_run + other, window_hours=24, now=NOW)

    assert rows == [
        {"tenant": "acme", "runs": 1, "tasks": 2, "tasks_failed": 1, "error_rate": 0.5,
         "avg_latency_s": 3.0},
        {"tenant": "globex", "runs": 1, "tasks": 1, "tasks_failed": 0, "error_rate": 0.0,
         "avg_latency_s": 1.0},
    ]  # fmt: skip


def test_series_buckets_runs_and_error_rate(failed_run: list[dict[str, Any]]) -> None:
    series = summarize(failed_run, window_hours=24, now=NOW, buckets=24)["series"]

    assert len(series) == 24
    last = series[-1]  # the run happened in the last hour
    assert (last["runs"], last["runs_failed"], last["tasks_ok"], last["tasks_failed"]) == (
        1, 1, 1, 1,
    )  # fmt: skip
    assert last["error_rate"] == 0.5
    assert sum(row["runs"] for row in series[:-1]) == 0


def test_summarize_schedules_per_schedule() -> None:
    states = [
        {"timestamp": "2026-11-26T10:00:00Z", "event": "schedule_enqueued", "schedule_id": "s1",
         "tenant_id": "acme", "dag": "dags/a.yaml", "run_id": "r1", "scheduled_minute": "x"},
        {"timestamp": "2026-11-26T10:00:01Z", "event": "run_started", "schedule_id": "s1",
         "run_id": "r1"},
        {"timestamp": "2026-11-26T10:00:09Z", "event": "run_finished", "schedule_id": "s1",
         "run_id": "r1", "status": "failed", "duration_s": 8.0},
        {"timestamp": "2026-11-26T10:05:00Z", "event": "schedule_enqueued", "schedule_id": "s1",
         "run_id": "r2"},
        {"timestamp": "2026-11-26T10:05:01Z", "event": "run_started", "schedule_id": "s1",
         "run_id": "r2"},
        {"timestamp": "2026-11-26T10:05:00Z", "event": "schedule_enqueued", "schedule_id": "s0"},
        {"event": "run_finished", "status": "success"},  # the seed's own example line
    ]  # fmt: skip

    rows = summarize_schedules(states)

    assert [r["schedule_id"] for r in rows] == ["s0", "s1", "unknown"]
    s0, s1, unknown = rows
    assert (s0["status"], s0["enqueued"], s0["last_run"]) == ("enqueued", 1, None)
    assert (s1["status"], s1["enqueued"], s1["success"], s1["failed"]) == ("running", 2, 0, 1)
    assert (s1["tenant"], s1["dag"], s1["last_run"]) == (
        "acme",
        "dags/a.yaml",
        states[4]["timestamp"],
    )
    assert s1["last_duration_s"] == 8.0
    assert (s0["last_run_id"], s1["last_run_id"]) == (None, states[4]["run_id"])
    assert (unknown["success"], unknown["status"]) == (1, "success")
    assert schedule_by_run(states) == {"r1": "s1", "r2": "s1"}


def test_old_style_lines_without_ids_are_grouped_not_crashed() -> None:
    # Given the seed's own example lines (no run_id, tenant_id or status)
    lines = [
        {"timestamp": "2025-10-03T10:00:00", "event": "dag_start", "dag_name": "weekly_ops_chain"},
        {"timestamp": "2025-10-03T10:00:01", "event": "task_start", "task_id": "sweep"},
        {"timestamp": "2025-10-03T10:00:02", "event": "task_ok", "task_id": "sweep"},
        {"timestamp": "2025-10-03T10:00:03", "event": "dag_done", "tasks_succeeded": 3},
        {"timestamp": "2025-10-03T11:00:00", "event": "dag_start", "dag_name": "other"},
        {"event": "task_fail", "task_id": "x"},  # no timestamp at all
        {"timestamp": "garbage", "event": "mystery"},
    ]

    runs = summarize_dags(lines, now=datetime(2025, 10, 3, 11, 1, tzinfo=UTC))

    assert [(r["run_id"], r["dag_name"], r["tenant"], r["status"]) for r in runs] == [
        ("legacy-2", "other", "unknown", "running"),
        ("legacy-1", "weekly_ops_chain", "unknown", "success"),
    ]
    assert runs[1]["tasks_ok"] == 3
    assert summarize_tasks(lines, now=NOW)["all_time"]["failed"] == 1
    assert run_timeline(lines, "legacy-1") is not None


@pytest.mark.parametrize(
    "text",
    ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00+00:00", "2026-11-26T10:00:00",
     "2026-11-26T11:00:00+01:00", "2026-11-26T10:00:00.000000Z"],
)  # fmt: skip
def test_parse_timestamp_accepts_utc_forms(text: str) -> None:
    assert parse_timestamp(text) == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, 5, "", "yesterday"])
def test_parse_timestamp_rejects_garbage(value: object) -> None:
    assert parse_timestamp(value) is None


def test_for_tenant_filters_and_unknown() -> None:
    events = [{"tenant_id": "a"}, {"tenant_id": "b"}, {}]
    assert list(for_tenant(events, None)) == events
    assert list(for_tenant(events, "b")) == [{"tenant_id": "b"}]
    assert list(for_tenant(events, "unknown")) == [{}]


def test_run_counts_running_means_alive_and_stalled_runs_are_failed_with_the_reason(
    failed_run: list[dict[str, Any]],
) -> None:
    # Given a run with an event 1 min ago, one silent for 30 min (no dag_done), one ended by
    # the sweeper as stalled, and one that started 3 days ago and still reports
    events = [
        *failed_run,
        ev("dag_start", 5, run="alive"), ev("task_start", 1, run="alive", task_id="a"),
        ev("dag_start", 40, run="silent"), ev("task_start", 30, run="silent", task_id="a"),
        ev("dag_start", 20, run="swept"),
        ev("dag_done", 18, run="swept", status="failed",
           error="stalled: tasks a can never start (their upstream tasks never ended)"),
        ev("dag_start", 3 * 1440, run="long"), ev("task_start", 2, run="long", task_id="a"),
    ]  # fmt: skip

    report = summarize(events, now=NOW)

    # Then only runs with a recent event are running; the silent one is stale
    assert report["run_counts"] == {
        "running": 2, "stale": 1, "success": 0, "failed": 2, "cancelled": 0,
    }  # fmt: skip
    rows = {r["run_id"]: r for r in report["runs"]}
    assert (rows["silent"]["status"], rows["alive"]["status"]) == ("stale", "running")
    # And a stalled run is failed, with the sweeper's reason; a failed task names itself
    assert rows["swept"]["status"] == "failed"
    assert rows["swept"]["error"].startswith("stalled: tasks a can never start")
    assert rows["r1"]["error"] == "report: RunnerError: <b>"
    assert summarize(events, now=NOW, stale_after_s=3600)["run_counts"]["stale"] == 0


def test_summarize_for_one_tenant_keeps_legacy_ids_and_every_tenant_id() -> None:
    # Given old lines without run ids from two tenants
    lines = [
        {"timestamp": "2026-11-26T11:00:00Z", "event": "dag_start", "tenant_id": "a"},
        {"timestamp": "2026-11-26T11:00:01Z", "event": "dag_done", "tenant_id": "a"},
        {"timestamp": "2026-11-26T11:01:00Z", "event": "dag_start", "tenant_id": "b"},
        {"timestamp": "2026-11-26T11:01:01Z", "event": "dag_done", "tenant_id": "b"},
    ]

    report = summarize(lines, now=NOW, tenant="b")

    # Then b's run keeps the id it has without the filter, so its link opens the right run
    assert [r["run_id"] for r in report["runs"]] == ["legacy-2"]
    assert report["tenant_ids"] == ["a", "b"]
