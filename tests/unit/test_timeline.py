"""One run's timeline for the run page: a bar per attempt, task states, edges, and its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagflow.analytics.rollup import STALE_AFTER_S
from dagflow.analytics.timeline import run_timeline
from dagflow.clock import isoformat

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def at(seconds_ago: float) -> str:
    return isoformat(NOW - timedelta(seconds=seconds_ago))


def ev(kind: str, seconds_ago: float, run: str = "r1", **fields: Any) -> dict[str, Any]:
    """One event ``seconds_ago`` before NOW, in the log's format."""
    base = {"timestamp": at(seconds_ago), "event": kind, "run_id": run}
    return base | {"dag_name": "nightly", "tenant_id": "acme"} | fields


@pytest.fixture
def taken_over() -> list[dict[str, Any]]:
    """r1: a's first delivery loses its lease to a second one (same attempt, new fence); b is
    cancelled while it runs, c before it starts; another run's events are mixed in."""
    return [
        ev("dag_start", 100, tasks=3, edges=[["a", "b"], ["a", "c"]]),
        ev("task_start", 90, task_id="a", attempt=1, fence=1, worker="w1", workflow_ref="wf.a"),
        ev("dag_start", 85, run="other"),
        ev("task_start", 60, task_id="a", attempt=1, fence=2, worker="w2", workflow_ref="wf.a"),
        ev("task_lease_lost", 55, task_id="a", attempt=1, fence=1, worker="w1"),
        ev("task_ok", 50, task_id="a", attempt=1, fence=2, duration_s=10.0),
        ev("task_start", 40, task_id="b", attempt=1, fence=3, worker="w2"),
        ev("task_cancel", 30, task_id="b", attempt=1, fence=3, error="cancelled: interrupted"),
        ev("task_cancel", 30, task_id="c", error="cancelled: before it started"),
        ev("task_start", 20, run="other", task_id="a", attempt=1),
    ]


def test_a_run_with_no_event_is_none(taken_over: list[dict[str, Any]]) -> None:
    assert run_timeline(taken_over, "nope", now=NOW) is None
    assert run_timeline([], "r1") is None


def test_each_delivery_is_a_bar_of_its_own(taken_over: list[dict[str, Any]]) -> None:
    # Given a step taken over after its worker lost the lease
    timeline = run_timeline(taken_over, "r1", now=NOW)
    assert timeline is not None
    # Then each delivery (lease fence) of attempt 1 is drawn apart, in start order
    bars = [(a["task_id"], a["attempt"], a["fence"], a["worker"], a["status"])
            for a in timeline["attempts"]]  # fmt: skip
    assert bars == [
        ("a", 1, 1, "w1", "lease lost"),
        ("a", 1, 2, "w2", "ok"),
        ("b", 1, 3, "w2", "cancelled"),
    ]
    first, second, _ = timeline["attempts"]
    assert (first["start"], first["end"], first["duration_s"]) == (at(90), at(55), 35.0)
    assert (second["start"], second["end"], second["duration_s"]) == (at(60), at(50), 10.0)
    assert second["workflow_ref"] == "wf.a"


def test_task_rows_with_the_tasks_that_never_ran_last(taken_over: list[dict[str, Any]]) -> None:
    timeline = run_timeline(taken_over, "r1", now=NOW)
    assert timeline is not None
    assert timeline["tasks"] == [
        {"task_id": "a", "state": "success", "attempts": 2, "start": at(90), "error": None,
         "end": None},
        {"task_id": "b", "state": "cancelled", "attempts": 1, "start": at(40),
         "error": "cancelled: interrupted", "end": None},
        {"task_id": "c", "state": "cancelled", "attempts": 0, "start": None,
         "error": "cancelled: before it started", "end": at(30)},
    ]  # fmt: skip


ENDS = {
    # name: (how each attempt ended, None: still running), bar statuses, task state
    "ok": (["task_ok"], ["ok"], "success"),
    "retried then ok": (["task_retry", "task_ok"], ["retry", "ok"], "success"),
    "waiting to retry": (["task_retry"], ["retry"], "running"),
    "retried then failed": (["task_retry", "task_fail"], ["retry", "failed"], "failed"),
    "running": ([None], ["running"], "running"),
    "retried, running again": (["task_retry", None], ["retry", "running"], "running"),
}


@pytest.mark.parametrize(("ends", "bars", "state"), ENDS.values(), ids=ENDS.keys())
def test_task_state_is_its_last_attempts(
    ends: list[str | None], bars: list[str], state: str
) -> None:
    events = [ev("dag_start", 100)]
    for n, end in enumerate(ends, start=1):
        events.append(ev("task_start", 90 - 10 * n, task_id="a", attempt=n))
        if end:
            events.append(ev(end, 85 - 10 * n, task_id="a", attempt=n, error=f"E{n}"))
    timeline = run_timeline(events, "r1", now=NOW)
    assert timeline is not None
    assert [a["status"] for a in timeline["attempts"]] == bars
    assert [a["attempt"] for a in timeline["attempts"]] == list(range(1, len(ends) + 1))
    assert timeline["tasks"][0]["state"] == state


def test_a_skipped_task_has_no_attempt_and_ends_where_it_was_given_up() -> None:
    events = [
        ev("task_fail", 50, task_id="a", error="boom"),
        ev("task_skip", 49, task_id="b", error="upstream task a failed"),
    ]
    timeline = run_timeline(events, "r1")
    assert timeline is not None
    assert timeline["tasks"][1] == {
        "task_id": "b",
        "state": "skipped",
        "attempts": 0,
        "start": None,
        "end": at(49),
        "error": "upstream task a failed",
    }
    assert [a["task_id"] for a in timeline["attempts"]] == ["a"]


def test_an_attempt_whose_start_is_missing_starts_its_duration_before_its_end() -> None:
    # Given only the end of an attempt (its task_start line was lost)
    events = [
        ev("task_fail", 50, task_id="a", duration_s=4.5, error="E", traceback="tb", worker="w")
    ]
    timeline = run_timeline(events, "r1")
    assert timeline is not None
    (bar,) = timeline["attempts"]
    assert (bar["start"], bar["end"], bar["duration_s"]) == (at(54.5), at(50), 4.5)
    assert (bar["error"], bar["traceback"], bar["worker"]) == ("E", "tb", "w")


def test_an_end_without_a_duration_is_measured_from_the_start() -> None:
    events = [ev("task_start", 50, task_id="a"), ev("task_ok", 47.5, task_id="a")]
    timeline = run_timeline(events, "r1")
    assert timeline is not None
    assert timeline["attempts"][0]["duration_s"] == 2.5


def test_attempts_are_in_start_order_whatever_the_log_order() -> None:
    events = [
        ev("task_start", 10, task_id="late"),
        ev("task_start", 30, task_id="early"),
        ev("task_start", 20, task_id="middle"),
    ]
    timeline = run_timeline(events, "r1")
    assert timeline is not None
    assert [a["task_id"] for a in timeline["attempts"]] == ["early", "middle", "late"]


@pytest.mark.parametrize(
    "edges",
    [None, "a->b", [["a"], ["a", "b", "c"], "ab", [1, 2], ["a", 2]]],
    ids=["absent", "not a list", "malformed pairs"],
)
def test_malformed_edges_are_dropped(edges: object) -> None:
    timeline = run_timeline([ev("dag_start", 10, edges=edges)], "r1")
    assert timeline is not None
    assert timeline["edges"] == []


def test_edges_come_from_dag_start_as_pairs() -> None:
    good = [["a", "b"], ("b", "c")]
    timeline = run_timeline([ev("dag_start", 10, edges=[*good, ["x"]])], "r1")
    assert timeline is not None
    assert timeline["edges"] == [("a", "b"), ("b", "c")]


UNTIL = {
    # name: (ended with dag_done, now given, expected until); the last event is 20 s ago
    "open run is drawn up to now": (False, NOW, NOW),
    "ended run stops at its last event": (True, NOW, NOW - timedelta(seconds=20)),
    "open run without now stops at its last event": (False, None, NOW - timedelta(seconds=20)),
    "a now before the last event is ignored": (
        False,
        NOW - timedelta(hours=1),
        NOW - timedelta(seconds=20),
    ),
}


@pytest.mark.parametrize(("done", "now", "until"), UNTIL.values(), ids=UNTIL.keys())
def test_until(done: bool, now: datetime | None, until: datetime) -> None:
    events = [ev("dag_start", 60), ev("task_start", 40 if done else 20, task_id="a")]
    if done:
        events.append(ev("dag_done", 20, status="success"))
    timeline = run_timeline(events, "r1", now=now)
    assert timeline is not None
    assert timeline["until"] == isoformat(until)


@pytest.mark.parametrize(("silent_s", "status"), [(60, "running"), (STALE_AFTER_S + 60, "stale")])
def test_the_run_row_is_stale_after_a_long_silence(silent_s: float, status: str) -> None:
    timeline = run_timeline([ev("dag_start", silent_s)], "r1", now=NOW)
    assert timeline is not None
    assert timeline["run"]["status"] == status
    assert timeline["until"] == isoformat(NOW)


def test_the_run_row_is_the_runs_record() -> None:
    events = [
        ev("dag_start", 60, tasks=1),
        ev("task_fail", 50, task_id="a", error="ValueError: x"),
        ev("dag_done", 40, status="failed", tasks_failed=1, duration_s=20.0),
    ]
    timeline = run_timeline(events, "r1", now=NOW)
    assert timeline is not None
    row = timeline["run"]
    assert (row["run_id"], row["dag_name"], row["tenant"], row["status"]) == (
        "r1",
        "nightly",
        "acme",
        "failed",
    )
    assert (row["error"], row["duration"], row["tasks_failed"]) == ("a: ValueError: x", 20.0, 1)


def test_a_legacy_run_is_found_by_its_number() -> None:
    # Given two runs of the original product, without run ids
    lines = [
        {"timestamp": at(100), "event": "dag_start", "dag_name": "first"},
        {"timestamp": at(90), "event": "dag_done"},
        {"timestamp": at(80), "event": "dag_start", "dag_name": "second"},
        {"timestamp": at(70), "event": "task_ok", "task_id": "x"},
    ]
    # When the second is drawn
    timeline = run_timeline(lines, "legacy-2")
    # Then it holds only its own lines, under the id asked for
    assert timeline is not None
    assert (timeline["run"]["run_id"], timeline["run"]["dag_name"]) == ("legacy-2", "second")
    assert [t["task_id"] for t in timeline["tasks"]] == ["x"]


def test_a_task_held_by_a_dead_worker_when_its_run_is_cancelled_shows_cancelled() -> None:
    # Given a step whose worker died mid-attempt, in a run then cancelled: the cancel ends
    # it and writes task_cancel as dagflow.execution.cancel.cancel_run does (no attempt, no fence)
    events = [
        ev("dag_start", 100, tasks=1),
        ev("task_start", 90, task_id="a", attempt=1, fence=1, worker="w1"),
        ev("task_cancel", 20, task_id="a", workflow_ref="wf.a", error="cancelled: ..."),
        ev("dag_done", 19, status="cancelled", tasks_cancelled=1),
    ]
    timeline = run_timeline(events, "r1", now=NOW)
    assert timeline is not None
    # Then the task is cancelled, not running, in a run that has ended
    assert timeline["run"]["status"] == "cancelled"
    assert timeline["tasks"][0]["state"] == "cancelled"
