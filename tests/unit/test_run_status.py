"""A run's status as ``dagflow status`` and ``dagflow runs`` show it, from store values."""

from __future__ import annotations

from typing import Any

import pytest

from dagflow.client.status import RunResult, RunStatus, failure_line, ordered
from dagflow.stores.base import AttemptEnd, RunSnapshot, TaskInfo

ORDER = ("sweep", "report", "brief")
COUNTS = {"ok": 1, "failed": 1, "skipped": 1, "cancelled": 0, "total": 3}


def snapshot(status: str = "failed", **meta: Any) -> RunSnapshot:
    base = {
        "dag_name": "weekly_ops_chain",
        "tenant_id": "acme",
        "started_at": 100,
        "finished_at": 103.5,
        "duration_s": 3.5,
        "labels": {"schedule_id": "s1"},
    }
    return RunSnapshot(status, COUNTS, None, base | meta, "run-1")


@pytest.fixture
def tasks() -> list[TaskInfo]:
    """The README's failed run, in store order (not plan order)."""
    return [
        TaskInfo("brief", "skipped"),
        TaskInfo(
            "report",
            "failed",
            attempts=2,
            worker="celery@host-b",
            fence=2,
            last=AttemptEnd(0.01, "RunnerError: Task 'report' failed after 2 attempts: E", "tb"),
        ),
        TaskInfo("sweep", "ok", 1, "celery@host-a", 1, AttemptEnd(0.002)),
    ]


@pytest.mark.parametrize(
    ("attempts", "line"),
    [
        (1, "RunnerError: Task 'x' failed after 1 attempt"),
        (3, "RunnerError: Task 'x' failed after 3 attempts"),
        (0, "RunnerError: Task 'x' failed after 0 attempts"),
    ],
)
def test_failure_line_without_a_stored_error_is_built_from_the_attempts(
    attempts: int, line: str
) -> None:
    assert failure_line(TaskInfo("x", "failed", attempts=attempts)) == line


def test_failure_line_is_the_stored_error_when_there_is_one() -> None:
    task = TaskInfo("x", "failed", 2, last=AttemptEnd(error="RunnerError: Task 'x' failed ..."))
    assert failure_line(task) == "RunnerError: Task 'x' failed ..."


def test_ordered_follows_the_plan_and_puts_unknown_tasks_last_by_id() -> None:
    found = [TaskInfo(t, "ok") for t in ("zz", "brief", "aa", "sweep", "report")]
    assert [t.task_id for t in ordered(found, ORDER)] == ["sweep", "report", "brief", "aa", "zz"]
    assert [t.task_id for t in ordered(found, ())] == ["aa", "brief", "report", "sweep", "zz"]


def test_from_store_reads_the_metadata(tasks: list[TaskInfo]) -> None:
    status = RunStatus.from_store(snapshot(), tasks, ORDER)
    assert (status.run_id, status.dag_name, status.tenant_id, status.status) == (
        "run-1",
        "weekly_ops_chain",
        "acme",
        "failed",
    )
    assert (status.started_at, status.finished_at, status.duration_s) == (100.0, 103.5, 3.5)
    assert isinstance(status.started_at, float)
    assert status.counts == COUNTS
    assert status.labels == {"schedule_id": "s1"}
    assert [t.task_id for t in status.tasks] == list(ORDER)
    assert (status.error, status.waiting_for) == (None, None)


def test_a_running_run_has_no_end_yet() -> None:
    status = RunStatus.from_store(snapshot("running", finished_at=None, duration_s=None))
    assert (status.finished_at, status.duration_s, status.tasks) == (None, None, ())


@pytest.mark.parametrize(
    ("meta", "field", "expected"),
    [
        ({"started_at": "100"}, "started_at", None),  # not a number: unknown, not a crash
        ({"labels": "schedule_id=s1"}, "labels", {}),
        ({"labels": None}, "labels", {}),
        ({"error": ""}, "error", None),
        (
            {"error": "stalled: tasks b can never start"},
            "error",
            "stalled: tasks b can never start",
        ),
    ],
)
def test_odd_metadata_is_read_without_raising(
    meta: dict[str, Any], field: str, expected: Any
) -> None:
    assert getattr(RunStatus.from_store(snapshot(**meta)), field) == expected


def test_metadata_missing_entirely_gives_empty_names() -> None:
    status = RunStatus.from_store(RunSnapshot("running", {}, None, {}, "r"))
    assert (status.dag_name, status.tenant_id, status.started_at, status.labels) == (
        "",
        "",
        None,
        {},
    )


def test_a_pending_run_says_what_it_waits_for_and_has_not_started() -> None:
    # Given a run held back by two limits (its metadata has a submit time as started_at)
    snap = snapshot(
        "pending",
        finished_at=None,
        duration_s=None,
        slots=[["dag:nightly", 1], ["tenant:acme", 4]],
    )
    # When its status is read
    status = RunStatus.from_store(snap)
    # Then it has not started, and says which limits it waits for (the README's line)
    assert status.started_at is None
    assert status.waiting_for == (
        "waiting for a slot: dag nightly (1 at once), tenant acme (4 at once)"
    )
    assert status.to_dict()["waiting_for"] == status.waiting_for


def test_a_run_that_started_waits_for_nothing_even_with_slots() -> None:
    status = RunStatus.from_store(snapshot("running", slots=[["dag:nightly", 1]]))
    assert status.waiting_for is None and status.started_at == 100.0


def test_failures_are_one_line_per_failed_task_in_plan_order() -> None:
    found = [
        TaskInfo("brief", "failed", 1),
        TaskInfo("sweep", "ok", 1),
        TaskInfo("report", "failed", 2, last=AttemptEnd(error="RunnerError: report broke")),
    ]
    status = RunStatus.from_store(snapshot(), found, ORDER)
    assert status.failures == [
        "RunnerError: report broke",
        "RunnerError: Task 'brief' failed after 1 attempt",
    ]


def test_to_dict_has_every_documented_field(tasks: list[TaskInfo]) -> None:
    data = RunStatus.from_store(snapshot(), tasks, ORDER).to_dict()
    assert list(data) == [
        "run_id", "dag_name", "tenant_id", "status", "started_at", "finished_at",
        "duration_s", "counts", "labels", "error", "waiting_for", "tasks",
    ]  # fmt: skip
    assert data["tasks"][1] == {
        "task_id": "report",
        "state": "failed",
        "attempts": 2,
        "worker": "celery@host-b",
        "duration_s": 0.01,
        "error": "RunnerError: Task 'report' failed after 2 attempts: E",
        "waiting_for": None,
        "traceback": "tb",
    }
    # a task that never ran has no worker: null, not ""
    assert data["tasks"][2]["worker"] is None


def test_to_dict_without_tracebacks_leaves_the_key_out(tasks: list[TaskInfo]) -> None:
    data = RunStatus.from_store(snapshot(), tasks, ORDER).to_dict(tracebacks=False)
    assert all("traceback" not in t for t in data["tasks"])


def test_a_listing_has_no_tasks_key() -> None:
    assert "tasks" not in RunStatus.from_store(snapshot()).to_dict()


@pytest.mark.parametrize(
    ("status", "ok"), [("success", True), ("failed", False), ("cancelled", False)]
)
def test_run_result_is_ok_only_when_it_succeeded(status: str, ok: bool) -> None:
    result = RunResult("r", "d", status, tasks=1, succeeded=1, failed=0, skipped=0, duration_s=1.0)
    assert result.ok is ok
    assert (result.failures, result.cancelled) == ((), 0)


def test_odd_metadata_reads_as_absent_not_as_text_or_numbers() -> None:
    # Given metadata with a boolean where a time belongs and a null name
    snap = RunSnapshot(
        "pending", {}, None, {"dag_name": None, "tenant_id": None, "finished_at": True}, "r1"
    )
    status = RunStatus.from_store(snap)
    # Then nothing is made up: no "None" name, no 1.0 time, no dangling colon
    assert (status.dag_name, status.tenant_id, status.finished_at) == ("", "", None)
    assert status.waiting_for == "waiting for a slot"
