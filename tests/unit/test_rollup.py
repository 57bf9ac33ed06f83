"""The one-pass fold behind the analytics tables: window edges, stale runs, run records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagflow.analytics.rollup import STALE_AFTER_S, EventRollup, RunIds
from dagflow.clock import isoformat

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ev(kind: str, seconds_ago: float, run: str = "r1", **fields: Any) -> dict[str, Any]:
    """One event ``seconds_ago`` before NOW, in the log's format."""
    return {
        "timestamp": isoformat(NOW - timedelta(seconds=seconds_ago)),
        "event": kind,
        "run_id": run,
        "dag_name": fields.pop("dag", "nightly"),
        "tenant_id": fields.pop("tenant", "acme"),
    } | fields


def fold(events: list[dict[str, Any]], **options: Any) -> EventRollup:
    rollup = EventRollup(NOW, **options)
    for event in events:
        rollup.add(event)
    return rollup


HOUR = 3600.0


@pytest.mark.parametrize(
    ("seconds_ago", "in_window"),
    [
        (0, True),  # the window is (now - window, now]: now is in it
        (1, True),
        (24 * HOUR - 1, True),
        (24 * HOUR, False),  # the cutoff itself is not
        (25 * HOUR, False),
        (-60, False),  # a clock ahead of `now`: after the window
    ],
)
def test_window_is_half_open_at_the_cutoff(seconds_ago: float, in_window: bool) -> None:
    rollup = fold([ev("task_ok", seconds_ago, task_id="a", duration_s=1.0)], window_hours=24)
    summary = rollup.task_summary()
    assert summary["window"]["ok"] == int(in_window)
    assert summary["all_time"]["ok"] == 1


def test_a_naive_now_is_read_as_utc() -> None:
    naive = EventRollup(NOW.replace(tzinfo=None))
    assert naive.now == NOW
    naive.add(ev("task_ok", 0, task_id="a"))
    assert naive.task_summary()["window"]["ok"] == 1


def test_task_stats_average_only_the_durations_given() -> None:
    rollup = fold(
        [
            ev("task_ok", 10, task_id="a", duration_s=2.0),
            ev("task_ok", 10, task_id="b", duration_s=4),
            ev("task_ok", 10, task_id="c"),  # no duration: counted, not averaged
            ev("task_fail", 10, task_id="d", duration_s="slow"),  # unusable: likewise
            ev("task_ok", 10, task_id="e", duration_s=True),  # a bool is not a duration
            ev("task_retry", 10, task_id="d"),
            ev("task_skip", 10, task_id="f"),
        ]
    )
    assert rollup.task_summary()["window"] == {
        "ok": 4,
        "failed": 1,
        "retries": 1,
        "skipped": 1,
        "total": 5,
        "avg_duration_s": 3.0,
        "error_rate": 0.2,
    }


@pytest.mark.parametrize(
    ("hours", "key"), [(24, "last_24h"), (1.5, "last_1.5h"), (168, "last_168h")]
)
def test_task_summary_names_its_window(hours: float, key: str) -> None:
    summary = EventRollup(NOW, window_hours=hours).task_summary()
    assert summary[key] is summary["window"]
    assert summary["window_hours"] == hours


@pytest.mark.parametrize(
    ("silent_s", "status"),
    [(0, "running"), (STALE_AFTER_S, "running"), (STALE_AFTER_S + 1, "stale")],
)
def test_a_run_without_dag_done_goes_stale_after_its_silence(silent_s: float, status: str) -> None:
    rollup = fold([ev("dag_start", silent_s + 5), ev("task_start", silent_s, task_id="a")])
    assert rollup.runs(1)[0]["status"] == status
    assert rollup.run_counts()[status] == 1


def test_an_ended_run_is_never_stale_and_stale_after_s_is_a_parameter() -> None:
    events = [
        ev("dag_start", 5000),
        ev("dag_done", 4000, status="success"),
        ev("dag_start", 90, run="r2"),
    ]
    assert [r["status"] for r in fold(events).runs(5)] == ["running", "success"]
    assert [r["status"] for r in fold(events, stale_after_s=60).runs(5)] == ["stale", "success"]


CLOSE = {
    # name: (dag_done fields, task events before it, expected status)
    "stated success": ({"status": "success"}, [], "success"),
    "stated cancelled": ({"status": "cancelled"}, [], "cancelled"),
    "no status, no failure": ({}, ["task_ok"], "success"),
    "no status, a failure": ({}, ["task_ok", "task_fail"], "failed"),
    "unknown status is derived": ({"status": "weird"}, ["task_fail"], "failed"),
    "stated counts win": ({"tasks_failed": 0}, ["task_fail"], "success"),
}


@pytest.mark.parametrize(("done", "before", "status"), CLOSE.values(), ids=CLOSE.keys())
def test_dag_done_status(done: dict[str, Any], before: list[str], status: str) -> None:
    # The original product wrote dag_done without a status: it is derived from the tasks.
    events = [ev(kind, 20, task_id=f"t{i}") for i, kind in enumerate(before)]
    assert fold([*events, ev("dag_done", 10, **done)]).runs(1)[0]["status"] == status


def test_a_run_record_from_start_to_dag_done() -> None:
    # Given a run whose first task retried, second failed and third was skipped
    events = [
        ev("dag_start", 100, tasks=3),
        ev("task_retry", 90, task_id="a", error="x"),
        ev("task_ok", 80, task_id="a"),
        ev("task_fail", 70, task_id="b", error="ValueError: one"),
        ev("task_fail", 60, task_id="c", error="ValueError: two"),
        ev("dag_done", 50, status="failed", tasks_succeeded=1, tasks_failed=1, tasks_skipped=1,
           duration_s=50.5),
    ]  # fmt: skip
    # When they are folded
    run = fold(events).runs(1)[0]
    # Then the record takes dag_done's counts and duration, and the first failure's error
    assert run == {
        "run_id": "r1",
        "dag_name": "nightly",
        "tenant": "acme",
        "status": "failed",
        "error": "b: ValueError: one",
        "start": events[0]["timestamp"],
        "end": events[-1]["timestamp"],
        "last_event": events[-1]["timestamp"],
        "duration": 50.5,
        "tasks": 3,
        "tasks_ok": 1,
        "tasks_failed": 1,
        "tasks_skipped": 1,
        "retries": 1,
    }


def test_the_sweepers_error_wins_over_a_tasks() -> None:
    events = [
        ev("task_fail", 70, task_id="b", error="ValueError: one"),
        ev("dag_done", 50, status="failed", error="stalled: tasks c can never start"),
    ]
    assert fold(events).runs(1)[0]["error"] == "stalled: tasks c can never start"


def test_an_open_runs_duration_reaches_its_last_event() -> None:
    run = fold([ev("dag_start", 100), ev("task_start", 40, task_id="a")]).runs(1)[0]
    assert (run["duration"], run["end"]) == (60.0, None)


def test_runs_are_the_newest_started_first_up_to_the_limit() -> None:
    rollup = fold([ev("dag_start", 300, run="old"), ev("dag_start", 100, run="new"),
                   ev("dag_start", 200, run="mid")])  # fmt: skip
    assert [r["run_id"] for r in rollup.runs(2)] == ["new", "mid"]
    assert rollup.runs(0) == [] and rollup.runs(-1) == []


def test_run_counts_count_ended_runs_by_their_dag_done_in_the_window() -> None:
    day = 24 * HOUR
    events = [
        ev("dag_start", day + 100, run="ended-before"),
        ev("dag_done", day + 50, run="ended-before", status="success"),
        ev("dag_start", day + 100, run="ended-inside"),
        ev("dag_done", 50, run="ended-inside", status="success"),
        ev("dag_done", 40, run="cancelled", status="cancelled"),
        ev("dag_start", day + 100, run="silent-before"),  # stale, silent since before the window
        ev("dag_start", 2 * STALE_AFTER_S, run="silent-inside"),
    ]
    assert fold(events).run_counts() == {
        "running": 0, "stale": 1, "success": 1, "failed": 0, "cancelled": 1,
    }  # fmt: skip


def test_tenants_busiest_first_then_by_name() -> None:
    events = [
        ev("dag_start", 10, run="a1", tenant="a"),
        ev("dag_start", 10, run="b1", tenant="b"),
        ev("dag_start", 10, run="b2", tenant="b"),
        ev("dag_start", 10, run="c1", tenant="c"),
        ev("task_ok", 5, run="c1", tenant="c", task_id="x", duration_s=3.0),
        ev("task_fail", 5, run="c1", tenant="c", task_id="y", duration_s=1.0),
    ]
    rows = fold(events).tenants()
    assert [r["tenant"] for r in rows] == ["b", "c", "a"]
    assert rows[1] == {
        "tenant": "c",
        "runs": 1,
        "tasks": 2,
        "tasks_failed": 1,
        "error_rate": 0.5,
        "avg_latency_s": 2.0,
    }


def test_series_splits_the_window_into_equal_buckets() -> None:
    events = [
        ev("dag_start", 24 * HOUR - 1),  # just after the cutoff: the first bucket
        ev("task_fail", 1800, task_id="a"),
        ev("dag_done", 0, status="failed"),  # at now: the last bucket
    ]
    series = fold(events, window_hours=24, buckets=4).series()
    assert [row["start"] for row in series] == [
        isoformat(NOW - timedelta(hours=h)) for h in (24, 18, 12, 6)
    ]
    assert [(r["runs"], r["runs_failed"], r["tasks_failed"]) for r in series] == [
        (1, 0, 0), (0, 0, 0), (0, 0, 0), (0, 1, 1),
    ]  # fmt: skip
    assert series[3]["error_rate"] == 1.0


def test_zero_buckets_is_one() -> None:
    assert len(EventRollup(NOW, buckets=0).series()) == 1


def test_a_tenant_filter_folds_only_that_tenant_but_sees_every_tenant_id() -> None:
    rollup = fold(
        [ev("task_ok", 5, run="a1", tenant="a", task_id="x"),
         ev("task_ok", 5, run="b1", tenant="b", task_id="x"),
         ev("task_ok", 5, run="n1", tenant=None, task_id="x")],
        tenant="b",
    )  # fmt: skip
    assert rollup.task_summary()["all_time"]["ok"] == 1
    assert [r["run_id"] for r in rollup.runs(10)] == ["b1"]
    assert rollup.tenant_ids == {"a", "b", "unknown"}


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"event": "task_ok", "timestamp": 5},
        {"event": "task_ok", "timestamp": "yesterday", "duration_s": "x"},
        {"event": "dag_start", "timestamp": None, "tasks": "3"},
        {"event": "dag_done", "tasks_succeeded": "one", "tasks_skipped": None, "tasks": [1]},
        {"event": "mystery", "run_id": 7},
    ],
)
def test_unusable_events_are_folded_without_raising(event: dict[str, Any]) -> None:
    rollup = fold([event])
    assert len(rollup.runs(10)) == 1
    assert rollup.task_summary()["window"]["total"] == 0


LEGACY = {
    # name: (events as (kind, run_id), expected ids)
    "two old runs": (
        [("dag_start", None), ("task_ok", None), ("dag_done", None), ("dag_start", None)],
        ["legacy-1", "legacy-1", "legacy-1", "legacy-2"],
    ),
    "a line before any dag_start": ([("task_ok", None), ("task_ok", None)], ["legacy-1"] * 2),
    "a line after dag_done opens a run": (
        [("dag_done", None), ("task_ok", None)],
        ["legacy-1", "legacy-2"],
    ),
    "ids given are kept": (
        [("dag_start", None), ("task_ok", "r9"), ("task_ok", None)],
        ["legacy-1", "r9", "legacy-1"],
    ),
}


@pytest.mark.parametrize(("lines", "ids"), LEGACY.values(), ids=LEGACY.keys())
def test_run_ids_for_lines_of_the_original_product(
    lines: list[tuple[str, str | None]], ids: list[str]
) -> None:
    resolver = RunIds()
    given = [{"event": kind, **({"run_id": rid} if rid else {})} for kind, rid in lines]
    assert [resolver.resolve(line) for line in given] == ids
